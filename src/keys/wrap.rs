//! AES-256-GCM wrapping of DEKs (and, internally, of KEKs under the master key).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

use super::{Dek, Kek, Key32, KeyError};

/// Version byte of [`WrappedDek`] and of KEK files.
pub(super) const WRAP_VERSION: u8 = 1;
pub(super) const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// version ‖ nonce ‖ 32-byte ciphertext ‖ tag.
pub(super) const WRAPPED_LEN: usize = 1 + NONCE_LEN + 32 + TAG_LEN;
/// Domain-separation label of the DEK binding.
const DEK_LABEL: &[u8] = b"ansim/dek/v1";

/// What a wrapped DEK is bound to (its AES-GCM associated data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DekBinding {
    /// The call the recording belongs to.
    pub call_id: String,
    /// The recording this DEK encrypts.
    pub recording_id: uuid::Uuid,
    /// The retention epoch (or hold) whose KEK wraps the DEK.
    pub epoch_id: String,
}

impl DekBinding {
    /// Canonical encoding: each of label, call id, recording id (16 bytes),
    /// epoch id as `u32 BE length ‖ bytes`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.call_id.len() + self.epoch_id.len());
        for field in [
            DEK_LABEL,
            self.call_id.as_bytes(),
            self.recording_id.as_bytes().as_slice(),
            self.epoch_id.as_bytes(),
        ] {
            // Lengths of Strings always fit in u32 in practice; saturate rather than panic.
            let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(field);
        }
        out
    }
}

/// A DEK wrapped by a KEK: `version (1) ‖ nonce (12) ‖ ciphertext (32) ‖ tag (16)`.
/// Safe to store in the database; useless without the KEK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedDek(pub Vec<u8>);

impl WrappedDek {
    /// The stored bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Seals a 32-byte key under `wrapping` with a fresh random nonce.
pub(super) fn seal_key(wrapping: &Key32, key: &Key32, ad: &[u8]) -> Result<Vec<u8>, KeyError> {
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(wrapping.bytes()));
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: key.bytes(),
                aad: ad,
            },
        )
        .map_err(|_| KeyError::Crypto("AES-GCM seal"))?;
    let mut out = Vec::with_capacity(WRAPPED_LEN);
    out.push(WRAP_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Result of [`open_key`]: structural problems are told apart from
/// authentication failures.
pub(super) enum OpenError {
    /// Wrong length or version.
    Malformed(&'static str),
    /// The tag did not verify.
    Auth,
}

/// Opens bytes produced by [`seal_key`].
pub(super) fn open_key(wrapping: &Key32, wrapped: &[u8], ad: &[u8]) -> Result<Key32, OpenError> {
    if wrapped.len() != WRAPPED_LEN {
        return Err(OpenError::Malformed("wrong length"));
    }
    if wrapped[0] != WRAP_VERSION {
        return Err(OpenError::Malformed("unknown version"));
    }
    let (nonce, ct) = wrapped[1..].split_at(NONCE_LEN);
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(wrapping.bytes()));
    let pt = Zeroizing::new(
        cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: ad })
            .map_err(|_| OpenError::Auth)?,
    );
    let mut arr = Zeroizing::new([0u8; 32]);
    if pt.len() != 32 {
        return Err(OpenError::Malformed("wrong key length"));
    }
    arr.copy_from_slice(&pt);
    Ok(Key32::from_array(&mut arr))
}

/// Wraps `dek` under `kek`, bound to `ad` (AES-256-GCM, random 96-bit nonce).
pub fn wrap_dek(kek: &Kek, dek: &Dek, ad: &DekBinding) -> Result<WrappedDek, KeyError> {
    seal_key(&kek.0, &dek.0, &ad.encode()).map(WrappedDek)
}

/// Unwraps a DEK. Wrong KEK, wrong binding or modified ciphertext →
/// [`KeyError::UnwrapFailed`]; bad length/version → [`KeyError::WrappedDekCorrupt`].
pub fn unwrap_dek(kek: &Kek, wrapped: &WrappedDek, ad: &DekBinding) -> Result<Dek, KeyError> {
    match open_key(&kek.0, &wrapped.0, &ad.encode()) {
        Ok(k) => Ok(Dek(k)),
        Err(OpenError::Auth) => Err(KeyError::UnwrapFailed),
        Err(OpenError::Malformed(detail)) => Err(KeyError::WrappedDekCorrupt { detail }),
    }
}

/// An AES-256-GCM key derived from a DEK (see [`Dek::derive_aead_key`]).
/// The caller supplies unique nonces; the key schedule is zeroized on drop.
pub struct AeadKey(Aes256Gcm);

impl AeadKey {
    pub(super) fn from_bytes(bytes: &[u8; 32]) -> AeadKey {
        AeadKey(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(bytes)))
    }

    /// Encrypts `plaintext`; returns ciphertext ‖ 16-byte tag.
    pub fn seal(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        self.0
            .encrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| KeyError::Crypto("AES-GCM seal"))
    }

    /// Decrypts ciphertext ‖ tag; `None` if authentication fails.
    pub fn open(&self, nonce: &[u8; 12], aad: &[u8], ciphertext: &[u8]) -> Option<Vec<u8>> {
        self.0
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .ok()
    }
}

impl std::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AeadKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding() -> DekBinding {
        DekBinding {
            call_id: "call-1".into(),
            recording_id: uuid::Uuid::from_u128(42),
            epoch_id: "ep-dispute-3y-20581".into(),
        }
    }

    #[test]
    fn round_trip() -> Result<(), KeyError> {
        let kek = Kek::generate();
        let dek = Dek::generate();
        let w = wrap_dek(&kek, &dek, &binding())?;
        assert_eq!(w.as_bytes().len(), WRAPPED_LEN);
        assert_eq!(w.0[0], WRAP_VERSION);
        let back = unwrap_dek(&kek, &w, &binding())?;
        assert_eq!(back.0.bytes(), dek.0.bytes());
        // Fresh nonce each time.
        assert_ne!(wrap_dek(&kek, &dek, &binding())?, w);
        Ok(())
    }

    #[test]
    fn wrong_kek_or_binding_fails() -> Result<(), KeyError> {
        let kek = Kek::generate();
        let w = wrap_dek(&kek, &Dek::generate(), &binding())?;
        let err = unwrap_dek(&Kek::generate(), &w, &binding());
        assert!(matches!(err, Err(KeyError::UnwrapFailed)));
        let mut b = binding();
        b.call_id.push('x');
        assert!(matches!(
            unwrap_dek(&kek, &w, &b),
            Err(KeyError::UnwrapFailed)
        ));
        let mut b = binding();
        b.recording_id = uuid::Uuid::from_u128(43);
        assert!(matches!(
            unwrap_dek(&kek, &w, &b),
            Err(KeyError::UnwrapFailed)
        ));
        let mut b = binding();
        b.epoch_id = "ep-other".into();
        assert!(matches!(
            unwrap_dek(&kek, &w, &b),
            Err(KeyError::UnwrapFailed)
        ));
        let mut tampered = w.clone();
        tampered.0[20] ^= 1;
        assert!(matches!(
            unwrap_dek(&kek, &tampered, &binding()),
            Err(KeyError::UnwrapFailed)
        ));
        Ok(())
    }

    #[test]
    fn corrupt_encoding() -> Result<(), KeyError> {
        let kek = Kek::generate();
        let w = wrap_dek(&kek, &Dek::generate(), &binding())?;
        let mut short = w.clone();
        short.0.pop();
        assert!(matches!(
            unwrap_dek(&kek, &short, &binding()),
            Err(KeyError::WrappedDekCorrupt { .. })
        ));
        let mut v2 = w;
        v2.0[0] = 2;
        assert!(matches!(
            unwrap_dek(&kek, &v2, &binding()),
            Err(KeyError::WrappedDekCorrupt { .. })
        ));
        Ok(())
    }

    #[test]
    fn binding_encoding_is_unambiguous() {
        let a = DekBinding {
            call_id: "ab".into(),
            recording_id: uuid::Uuid::nil(),
            epoch_id: "c".into(),
        };
        let b = DekBinding {
            call_id: "a".into(),
            recording_id: uuid::Uuid::nil(),
            epoch_id: "bc".into(),
        };
        assert_ne!(a.encode(), b.encode());
        assert!(a.encode().starts_with(&[0, 0, 0, 12]));
        assert_eq!(&a.encode()[4..16], DEK_LABEL);
    }

    #[test]
    fn errors_do_not_leak_bytes() -> Result<(), KeyError> {
        let kek = Kek::generate();
        let w = wrap_dek(&kek, &Dek::generate(), &binding())?;
        let e = unwrap_dek(&Kek::generate(), &w, &binding())
            .err()
            .map(|e| format!("{e} {e:?}"))
            .unwrap_or_default();
        assert!(!e.contains(&hex::encode(&w.0[13..21])));
        Ok(())
    }
}
