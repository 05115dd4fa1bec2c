//! Timestamps as stored: milliseconds since the Unix epoch, UTC.
//!
//! Both backends store times as integers so that comparisons in SQL are exact and cheap;
//! the API renders them as RFC 3339.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A point in time, milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Millis(pub i64);

impl Millis {
    /// The instant `d` after this one (saturating).
    pub fn plus(self, d: Duration) -> Millis {
        Millis(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// The instant `d` before this one (saturating).
    pub fn minus(self, d: Duration) -> Millis {
        Millis(
            self.0
                .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// How long after `earlier` this is; zero when it is not later.
    pub fn since(self, earlier: Millis) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-22T10:00:00.123Z`.
    pub fn to_rfc3339(self) -> String {
        match jiff::Timestamp::from_millisecond(self.0) {
            Ok(ts) => format!("{ts:.3}"),
            Err(_) => String::from("invalid-time"),
        }
    }

    /// Parses an RFC 3339 timestamp.
    pub fn parse_rfc3339(s: &str) -> Option<Millis> {
        s.parse::<jiff::Timestamp>()
            .ok()
            .map(|t| Millis(t.as_millisecond()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc3339_utc_with_millis() {
        assert_eq!(Millis(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Millis(1_500).to_rfc3339(), "1970-01-01T00:00:01.500Z");
    }

    #[test]
    fn parses_what_it_renders() {
        let t = Millis(1_795_000_000_123);
        assert_eq!(Millis::parse_rfc3339(&t.to_rfc3339()), Some(t));
    }
}
