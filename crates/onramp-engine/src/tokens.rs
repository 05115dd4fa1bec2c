//! API tokens: generation and hashing. Only the SHA-256 of a token is stored, so a database
//! leak does not leak usable tokens; lookups are by hash, so no secret is ever compared
//! byte by byte.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// The prefix of every token onramp generates (easy to spot in secret scanners).
pub const TOKEN_PREFIX: &str = "onr_";

/// A fresh random token: `onr_` and 64 hex digits (256 bits).
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{TOKEN_PREFIX}{hex}")
}

/// The stored form of a token.
pub fn hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_hash_stably() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == 68);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
    }
}
