//! Names chosen by users in config and API: stages, task types, templates, signals.
//!
//! A name is 1–64 characters of ASCII letters, digits, `_` and `-`, so it is safe in URLs,
//! log lines, metric labels and AMQP routing keys.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A name that is empty, too long or has characters outside `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} name `{value}`: use 1-64 letters, digits, '_' or '-'")]
pub struct InvalidName {
    /// What kind of name.
    pub kind: &'static str,
    /// The offending value (truncated).
    pub value: String,
}

fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The name as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidName;
            fn from_str(s: &str) -> Result<Self, InvalidName> {
                if is_valid_name(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(InvalidName { kind: $kind, value: s.chars().take(80).collect() })
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidName;
            fn try_from(s: String) -> Result<Self, InvalidName> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                crate::openapi::pattern_string(
                    crate::openapi::NAME_PATTERN,
                    concat!("A ", $kind, " name: 1-64 ASCII letters, digits, `_` or `-`."),
                )
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A stage: a named queue with its own workers.
    StageName, "stage");
name_type!(
    /// A task type declared in config.
    TaskTypeName, "task");
name_type!(
    /// A template.
    TemplateName, "template");
name_type!(
    /// An external service.
    ServiceName, "service");
name_type!(
    /// A signal an onboarding may wait for.
    SignalName, "signal");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_config_style_names() {
        assert!("verify_identity".parse::<TaskTypeName>().is_ok());
        assert!("stage-1".parse::<StageName>().is_ok());
    }

    #[test]
    fn refuses_empty_long_or_odd_names() {
        assert!("".parse::<StageName>().is_err());
        assert!("a b".parse::<StageName>().is_err());
        assert!("x".repeat(65).parse::<StageName>().is_err());
        assert!("ünïcode".parse::<StageName>().is_err());
    }
}
