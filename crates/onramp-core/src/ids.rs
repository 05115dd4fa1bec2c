//! Identifiers with a type prefix (`onb_`, `stp_`, `tsk_`, `csr_`, `dlq_`, `whk_`, `evt_`, `dlv_`).
//!
//! An id is the prefix followed by a UUIDv7 in 32 lowercase hex digits, so ids sort by
//! creation time (cursor pagination relies on that). They are built only by [`new`] or
//! parsed with [`std::str::FromStr`], so a function taking an `OnboardingId` never sees a
//! step id or a random string.
//!
//! [`new`]: OnboardingId::new

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An id string that does not have the expected prefix and shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {kind} id: expected `{prefix}` followed by 32 hex digits")]
pub struct InvalidId {
    /// What kind of id was expected.
    pub kind: &'static str,
    /// Its prefix.
    pub prefix: &'static str,
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The prefix that marks this kind of id.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(format!("{}{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            /// The id as a string, prefix included.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                let err = InvalidId { kind: $kind, prefix: $prefix };
                let rest = s.strip_prefix($prefix).ok_or(err.clone())?;
                if rest.len() == 32 && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(err)
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                crate::openapi::pattern_string(
                    concat!("^", $prefix, "[0-9a-f]{32}$"),
                    concat!("A ", $kind, " id: `", $prefix, "` and 32 lowercase hex digits."),
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

prefixed_id!(
    /// An onboarding.
    OnboardingId, "onb_", "onboarding");
prefixed_id!(
    /// A step of an onboarding.
    StepId, "stp_", "step");
prefixed_id!(
    /// A human task.
    TaskId, "tsk_", "task");
prefixed_id!(
    /// A customer-success rep.
    CsrId, "csr_", "CSR");
prefixed_id!(
    /// A dead-letter entry.
    DeadLetterId, "dlq_", "dead letter");
prefixed_id!(
    /// A webhook subscription.
    WebhookId, "whk_", "webhook");
prefixed_id!(
    /// An event in the outbox.
    EventId, "evt_", "event");
prefixed_id!(
    /// One event's delivery to one destination (a webhook endpoint or the broker).
    DeliveryId, "dlv_", "delivery");

/// The position of a step within its onboarding, starting at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StepSeq(pub u32);

impl fmt::Display for StepSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_round_trip_and_sort_by_creation() {
        let a = OnboardingId::new();
        let b = OnboardingId::new();
        assert!(a < b);
        assert_eq!(a.as_str().parse::<OnboardingId>(), Ok(a.clone()));
        assert!(a.as_str().starts_with("onb_"));
    }

    #[test]
    fn ids_of_another_kind_or_shape_are_refused() {
        let step = StepId::new();
        assert!(step.as_str().parse::<OnboardingId>().is_err());
        assert!("onb_123".parse::<OnboardingId>().is_err());
        assert!(
            "onb_0123456789ABCDEF0123456789abcdef"
                .parse::<OnboardingId>()
                .is_err()
        );
    }
}
