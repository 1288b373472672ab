//! Key hierarchy: master key → KEKs (in a [`KeyStore`]) → per-recording DEKs.
//!
//! This is the only module that sees unwrapped key bytes. Every key type
//! zeroizes on drop and its `Debug` prints `<redacted>`; no accessor returns
//! the raw bytes. Other modules use keys only through the operations here:
//! [`wrap_dek`] / [`unwrap_dek`], [`Dek::derive_commitment`] and
//! [`Dek::derive_aead_key`] (which hands out an opaque [`AeadKey`]), and
//! [`KeyStore::prf`] for keyed pseudonyms of phone numbers.

mod epoch;
mod error;
mod master;
mod pkcs11;
mod pseudonym;
mod store;
mod wrap;

pub use epoch::{epoch_end, epoch_id};
pub use error::KeyError;
pub use pkcs11::Pkcs11KeyStore;
pub use pseudonym::{PSEUDONYM_KEY_ID, pseudonym};
pub use store::{DirKeyStore, KeyStore, validate_key_id};
pub use wrap::{AeadKey, DekBinding, WrappedDek, unwrap_dek, wrap_dek};

use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// 32 secret bytes. Zeroized on drop; `Debug` is redacted; no `Clone`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Key32([u8; 32]);

impl Key32 {
    /// Fresh random key from the thread-local CSPRNG (seeded by the OS).
    fn random() -> Key32 {
        let mut k = Key32([0u8; 32]);
        rand::rng().fill_bytes(&mut k.0);
        k
    }

    /// Takes ownership of `bytes`, wiping the caller's copy.
    fn from_array(bytes: &mut [u8; 32]) -> Key32 {
        let k = Key32(*bytes);
        bytes.zeroize();
        k
    }

    fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for Key32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key32(<redacted>)")
    }
}

macro_rules! key_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Zeroize, ZeroizeOnDrop)]
        pub struct $name(Key32);

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

key_newtype!(
    /// The 256-bit master key that wraps the local key store's KEK files.
    /// Loaded with [`MasterKey::load`].
    MasterKey
);
key_newtype!(
    /// A key-encryption key (one per retention epoch, or per legal hold).
    Kek
);
key_newtype!(
    /// A data-encryption key: 256 random bits for one recording.
    Dek
);

impl Kek {
    /// A fresh random KEK.
    pub fn generate() -> Kek {
        Kek(Key32::random())
    }

    /// AES-256 (this key) over the two 16-byte blocks of `input`; see
    /// [`KeyStore::prf`].
    pub(crate) fn aes_ecb_32(&self, input: &[u8; 32]) -> [u8; 32] {
        use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
        let cipher = aes::Aes256::new(GenericArray::from_slice(self.0.bytes()));
        let mut out = *input;
        for block in out.chunks_exact_mut(16) {
            cipher.encrypt_block(GenericArray::from_mut_slice(block));
        }
        out
    }
}

impl Dek {
    /// A fresh random DEK.
    pub fn generate() -> Dek {
        Dek(Key32::random())
    }

    /// Builds a DEK from known bytes, wiping `bytes`. Meant for test vectors
    /// and fuzzing; production DEKs come from [`Dek::generate`] or [`unwrap_dek`].
    pub fn from_bytes(bytes: &mut [u8; 32]) -> Dek {
        Dek(Key32::from_array(bytes))
    }

    /// HKDF-SHA256(ikm = DEK, salt, info = concatenation of `info`) → 32 bytes.
    /// The output is meant to be public (a key commitment), so it is returned.
    pub fn derive_commitment(&self, salt: &[u8], info: &[&[u8]]) -> Result<[u8; 32], KeyError> {
        let mut out = [0u8; 32];
        Hkdf::<Sha256>::new(Some(salt), self.0.bytes())
            .expand_multi_info(info, &mut out)
            .map_err(|_| KeyError::Crypto("HKDF expand"))?;
        Ok(out)
    }

    /// HKDF-SHA256(ikm = DEK, salt, info = concatenation of `info`) → an
    /// AES-256-GCM key whose bytes never leave this module.
    pub fn derive_aead_key(&self, salt: &[u8], info: &[&[u8]]) -> Result<AeadKey, KeyError> {
        let mut okm = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(Some(salt), self.0.bytes())
            .expand_multi_info(info, okm.as_mut())
            .map_err(|_| KeyError::Crypto("HKDF expand"))?;
        Ok(AeadKey::from_bytes(&okm))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_redacted(dbg: &str, bytes: &[u8; 32]) {
        assert!(dbg.contains("<redacted>"), "{dbg}");
        let hx = hex::encode(bytes);
        assert!(!dbg.to_lowercase().contains(&hx[..8]), "{dbg}");
        let dec = format!("{:?}", &bytes[..4]);
        assert!(!dbg.contains(dec.trim_end_matches(']')), "{dbg}");
    }

    #[test]
    fn debug_is_redacted() {
        let k = Key32([0xab; 32]);
        assert_redacted(&format!("{k:?}"), &[0xab; 32]);
        let dek = Dek::generate();
        let bytes = *dek.0.bytes();
        assert_redacted(&format!("{dek:?}"), &bytes);
        assert_redacted(&format!("{dek:#?}"), &bytes);
        let kek = Kek::generate();
        let bytes = *kek.0.bytes();
        assert_eq!(format!("{kek:?}"), "Kek(<redacted>)");
        assert_redacted(&format!("{kek:?}"), &bytes);
        let m = MasterKey(Key32::random());
        assert_eq!(format!("{m:?}"), "MasterKey(<redacted>)");
    }

    #[test]
    fn generate_is_random() {
        assert_ne!(Dek::generate().0.bytes(), Dek::generate().0.bytes());
        assert_ne!(Kek::generate().0.bytes(), Kek::generate().0.bytes());
    }

    #[test]
    fn from_bytes_wipes_source() {
        let mut b = [7u8; 32];
        let d = Dek::from_bytes(&mut b);
        assert_eq!(b, [0u8; 32]);
        assert_eq!(d.0.bytes(), &[7u8; 32]);
    }

    #[test]
    fn zeroize_clears() {
        let mut k = Key32([9; 32]);
        k.zeroize();
        assert_eq!(k.0, [0; 32]);
    }

    #[test]
    fn derivations_depend_on_inputs() -> Result<(), KeyError> {
        let d = Dek::from_bytes(&mut [1u8; 32]);
        let a = d.derive_commitment(b"salt", &[b"x", b"y"])?;
        assert_eq!(a, d.derive_commitment(b"salt", &[b"xy"])?);
        assert_ne!(a, d.derive_commitment(b"salt2", &[b"xy"])?);
        assert_ne!(a, d.derive_commitment(b"salt", &[b"xz"])?);
        let k = d.derive_aead_key(b"salt", &[b"xy"])?;
        let ct = k.seal(&[0; 12], b"ad", b"hello")?;
        assert_eq!(k.open(&[0; 12], b"ad", &ct).as_deref(), Some(&b"hello"[..]));
        assert!(k.open(&[1; 12], b"ad", &ct).is_none());
        assert!(format!("{k:?}").contains("redacted"));
        Ok(())
    }
}
