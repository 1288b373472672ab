//! API tokens: generated once, shown once, stored only as a hash.
//!
//! Tokens are 256 random bits, so a plain SHA-256 is the right hash: there
//! is nothing to brute-force, and lookups by hash stay one indexed query.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Prefix that makes a leaked token easy to recognise (secret scanners).
pub const TOKEN_PREFIX: &str = "ansim_";

/// A new random bearer token.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// The hash under which a token is stored (hex SHA-256).
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_hash_stably() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
        assert!(!hash_token(&a).contains(&a[TOKEN_PREFIX.len()..]));
    }
}
