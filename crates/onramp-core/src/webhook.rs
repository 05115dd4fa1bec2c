//! Webhook signatures per the Standard Webhooks specification (SPEC §10).
//!
//! A receiver gets three headers with each POST: `webhook-id` (the event id),
//! `webhook-timestamp` (unix seconds) and `webhook-signature: v1,<base64 signature>`, where the
//! signature is HMAC-SHA256 over `"<id>.<timestamp>.<body>"` keyed with the bytes that the
//! endpoint's secret `whsec_<base64 key>` encodes. Any Standard Webhooks library verifies them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::str::FromStr;

/// The prefix of every secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Bytes of key in a secret onramp generates.
pub const GENERATED_KEY_BYTES: usize = 32;

/// Shortest and longest key a supplied secret may hold, in bytes.
const KEY_BYTES: std::ops::RangeInclusive<usize> = 16..=128;

/// A secret that is not `whsec_` followed by base64 of 16 to 128 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSecret(String);

/// An endpoint's signing secret (`whsec_<base64 key>`). Its `Debug` hides the key.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl WebhookSecret {
    /// A secret holding `key` (callers pass random bytes; see [`GENERATED_KEY_BYTES`]).
    pub fn from_key(key: [u8; GENERATED_KEY_BYTES]) -> WebhookSecret {
        WebhookSecret { key: key.to_vec() }
    }

    /// The secret as given to receivers: `whsec_<base64 key>`.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", BASE64.encode(&self.key))
    }

    /// The `webhook-signature` header value for a message.
    ///
    /// ```
    /// # use onramp_core::webhook::WebhookSecret;
    /// // The Standard Webhooks specification's own example.
    /// let secret: WebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
    /// let body = r#"{"test": 2432232314}"#;
    /// assert_eq!(
    ///     secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body.as_bytes()),
    ///     "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    /// );
    /// ```
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            unreachable!("HMAC accepts keys of every length")
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(whsec_…)")
    }
}

impl FromStr for WebhookSecret {
    type Err = InvalidSecret;

    fn from_str(s: &str) -> Result<Self, InvalidSecret> {
        let encoded = s.strip_prefix(SECRET_PREFIX).ok_or_else(|| {
            InvalidSecret(format!(
                "must start with `{SECRET_PREFIX}` followed by base64"
            ))
        })?;
        let key = BASE64
            .decode(encoded)
            .map_err(|_| InvalidSecret(format!("must be `{SECRET_PREFIX}` followed by base64")))?;
        if !KEY_BYTES.contains(&key.len()) {
            return Err(InvalidSecret(format!(
                "must encode {} to {} bytes of key (this one has {})",
                KEY_BYTES.start(),
                KEY_BYTES.end(),
                key.len()
            )));
        }
        Ok(WebhookSecret { key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_round_trip() {
        let secret = WebhookSecret::from_key([7; GENERATED_KEY_BYTES]);
        let text = secret.expose();
        assert!(text.starts_with("whsec_"));
        assert_eq!(text.parse::<WebhookSecret>(), Ok(secret));
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert!(
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
                .parse::<WebhookSecret>()
                .is_err()
        );
        assert!("whsec_***".parse::<WebhookSecret>().is_err());
        assert!("whsec_c2hvcnQ=".parse::<WebhookSecret>().is_err());
        assert!(!format!("{:?}", WebhookSecret::from_key([1; 32])).contains("AQEB"));
    }
}
