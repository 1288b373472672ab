//! Standard Webhooks signatures: `v1,` + base64 HMAC-SHA256 over
//! `id.timestamp.body`, with the secret in its `whsec_<base64>` form (or,
//! without the prefix, the file's bytes as they are).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The signing secret. Its bytes never appear in `Debug` or errors.
pub struct Secret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// Why a secret file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Empty after trimming.
    #[error("the webhook secret is empty")]
    Empty,
    /// `whsec_` followed by something that is not base64.
    #[error("the webhook secret starts with whsec_ but the rest is not base64")]
    NotBase64,
    /// Fewer than 16 bytes: too easy to guess.
    #[error("the webhook secret is shorter than 16 bytes")]
    TooShort,
}

impl Secret {
    /// The secret from a file's text (surrounding whitespace ignored).
    pub fn parse(text: &[u8]) -> Result<Secret, SecretError> {
        let text = text.trim_ascii();
        if text.is_empty() {
            return Err(SecretError::Empty);
        }
        let bytes = match text.strip_prefix(b"whsec_") {
            Some(b64) => STANDARD.decode(b64).map_err(|_| SecretError::NotBase64)?,
            None => text.to_vec(),
        };
        if bytes.len() < 16 {
            return Err(SecretError::TooShort);
        }
        Ok(Secret(Zeroizing::new(bytes)))
    }

    /// The `webhook-signature` value for message `id` sent at `timestamp`
    /// (Unix seconds) with `body`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks reference libraries.
    #[test]
    fn signs_like_the_reference_implementation() {
        let s = Secret::parse(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            s.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn raw_secrets_work_and_bad_ones_are_refused() {
        let raw = Secret::parse(b"0123456789abcdef").unwrap();
        assert_ne!(raw.sign("a", 1, b"x"), raw.sign("a", 2, b"x"));
        assert!(matches!(Secret::parse(b" \n"), Err(SecretError::Empty)));
        assert!(matches!(
            Secret::parse(b"whsec_!!"),
            Err(SecretError::NotBase64)
        ));
        assert!(matches!(
            Secret::parse(b"short"),
            Err(SecretError::TooShort)
        ));
        assert_eq!(format!("{raw:?}"), "Secret(redacted)");
    }
}
