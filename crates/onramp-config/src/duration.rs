//! Durations (`"500ms"`, `"30s"`, `"1h30m"`) and rate limits (`"20/s"`, `"10/500ms"`).
//!
//! Every duration in `onramp.toml` is a string with a unit, so that `timeout = 30` (seconds?
//! milliseconds?) cannot be written by accident. Parsing is delegated to `humantime`, which also
//! accepts spaced and long forms such as `"1h 30min"` and `"2 days"`.

use std::time::Duration;

use crate::model::RateLimit;

const DURATION_EXAMPLES: &str =
    r#"use a number and a unit, like "500ms", "30s", "5m", "3d" or "1h30m""#;
const RATE_EXAMPLES: &str = r#"use COUNT/PERIOD, like "20/s", "100/m", "5/h" or "10/500ms""#;

/// Parses a duration written as numbers with units: `ms`, `s`, `m`, `h`, `d` and their long
/// forms, possibly combined.
///
/// ```
/// # use onramp_config::parse_duration;
/// # use std::time::Duration;
/// assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
/// assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
/// assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
/// assert_eq!(parse_duration("3d"), Ok(Duration::from_secs(3 * 86_400)));
/// assert!(parse_duration("30").is_err()); // a unit is required
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Err(format!("empty duration: {DURATION_EXAMPLES}"));
    }
    humantime::parse_duration(trimmed)
        .map_err(|e| format!("invalid duration `{}`: {e}; {DURATION_EXAMPLES}", clip(s)))
}

/// Parses a rate limit written `COUNT/PERIOD`, where a period given as a bare unit means one of
/// it (`"100/m"` is 100 per minute).
///
/// ```
/// # use onramp_config::{parse_rate, RateLimit};
/// # use std::time::Duration;
/// assert_eq!(parse_rate("20/s"), Ok(RateLimit { count: 20, per: Duration::from_secs(1) }));
/// assert_eq!(parse_rate("10/500ms"), Ok(RateLimit { count: 10, per: Duration::from_millis(500) }));
/// assert!(parse_rate("0/s").is_err());
/// ```
pub fn parse_rate(s: &str) -> Result<RateLimit, String> {
    let invalid = |why: &str| format!("invalid rate `{}`: {why}; {RATE_EXAMPLES}", clip(s));
    let (count, period) = s.split_once('/').ok_or_else(|| invalid("missing `/`"))?;
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| invalid("the count must be a whole number"))?;
    if count == 0 {
        return Err(invalid("the count must be at least 1"));
    }
    let period = period.trim();
    let is_bare_unit = !period.is_empty() && period.chars().all(|c| c.is_ascii_alphabetic());
    let per = if is_bare_unit {
        humantime::parse_duration(&format!("1{period}"))
    } else {
        humantime::parse_duration(period)
    }
    .map_err(|e| invalid(&format!("bad period: {e}")))?;
    if per.is_zero() {
        return Err(invalid("the period must be longer than zero"));
    }
    Ok(RateLimit { count, per })
}

/// The input as quoted in an error message, shortened so a pasted blob cannot flood the output.
fn clip(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_units_used_in_the_spec() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(5 * 60)),
            ("1h", Duration::from_secs(3600)),
            ("3d", Duration::from_secs(3 * 86_400)),
            ("14d", Duration::from_secs(14 * 86_400)),
            ("0ms", Duration::ZERO),
            (" 2s ", Duration::from_secs(2)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn refuses_durations_without_a_unit_or_with_an_unknown_one() {
        for text in ["", "30", "5x", "-1s", "s", "1.5.2s"] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains("500ms"), "{text}: {err}");
        }
    }

    #[test]
    fn rates_take_a_bare_unit_as_one_of_it() {
        let per = |count, per| RateLimit { count, per };
        assert_eq!(parse_rate("20/s"), Ok(per(20, Duration::from_secs(1))));
        assert_eq!(parse_rate("100/m"), Ok(per(100, Duration::from_secs(60))));
        assert_eq!(parse_rate("5/h"), Ok(per(5, Duration::from_secs(3600))));
        assert_eq!(parse_rate("5 / min"), Ok(per(5, Duration::from_secs(60))));
        assert_eq!(
            parse_rate("10/500ms"),
            Ok(per(10, Duration::from_millis(500)))
        );
    }

    #[test]
    fn refuses_malformed_rates() {
        for text in [
            "20", "/s", "x/s", "0/s", "-1/s", "20/", "20/0s", "20/xyz", "1/2/3s",
        ] {
            assert!(parse_rate(text).is_err(), "{text}");
        }
    }

    proptest! {
        #[test]
        fn parse_duration_never_panics(s in "\\PC*") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn parse_duration_never_panics_on_duration_like_text(s in "[0-9]{0,25}[a-z ]{0,6}[0-9]{0,5}[a-z]{0,3}") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn parse_rate_never_panics(s in "\\PC*") {
            let _ = parse_rate(&s);
        }

        #[test]
        fn parse_rate_never_panics_on_rate_like_text(s in "[0-9]{0,12}/[0-9]{0,25}[a-z]{0,4}") {
            let _ = parse_rate(&s);
        }

        #[test]
        fn durations_round_trip_in_each_unit(n in 0u64..1_000_000_000) {
            prop_assert_eq!(parse_duration(&format!("{n}ms")), Ok(Duration::from_millis(n)));
            prop_assert_eq!(parse_duration(&format!("{n}s")), Ok(Duration::from_secs(n)));
            prop_assert_eq!(parse_duration(&format!("{n}m")), Ok(Duration::from_secs(n * 60)));
            prop_assert_eq!(parse_duration(&format!("{n}h")), Ok(Duration::from_secs(n * 3600)));
        }

        #[test]
        fn formatted_durations_parse_back(ms in 0u64..10_000_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&humantime::format_duration(d).to_string()), Ok(d));
        }

        #[test]
        fn rates_round_trip_through_display(count in 1u32.., ms in 1u64..100_000_000) {
            let rate = RateLimit { count, per: Duration::from_millis(ms) };
            prop_assert_eq!(parse_rate(&rate.to_string()), Ok(rate));
            prop_assert_eq!(parse_rate(&format!("{count}/{ms}ms")), Ok(rate));
        }
    }
}
