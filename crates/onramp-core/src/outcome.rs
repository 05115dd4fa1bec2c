//! What an attempt at a step produced, and what that means for the step.
//!
//! Executors return a [`StepOutcome`]; [`resolve`] turns it, together with the stage's retry
//! policy and the attempt count, into a [`Resolution`] — the decision the store carries out.
//! HTTP responses are classified by [`classify_http`] (SPEC §5: 2xx success; 408, 429, 5xx
//! retryable honouring `Retry-After`; other 4xx permanent).

use crate::backoff::Backoff;
use crate::time::Millis;
use serde_json::Value;
use std::time::Duration;

/// What one attempt at a step produced.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    /// The work is done; its output is kept on the step.
    Succeeded(Value),
    /// A transient failure; try again, no sooner than `after` when the other side said so.
    Retry {
        /// Why it failed.
        error: String,
        /// A `Retry-After` the other side asked for.
        after: Option<Duration>,
    },
    /// A failure that retrying cannot fix.
    Permanent(String),
    /// Not attempted (e.g. the service's circuit breaker is open); try again at `until`
    /// without charging an attempt.
    Deferred {
        /// Why it was not attempted.
        reason: String,
        /// When to try again.
        until: Millis,
    },
    /// The step now waits for a person, a signal or a time.
    Waiting(WaitFor),
}

/// What a waiting step waits for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WaitFor {
    /// When the wait ends by itself: a delay's end, a signal's timeout.
    pub until: Option<Millis>,
    /// The human task to open (human steps).
    pub task: Option<HumanTask>,
    /// The signal it waits for (signal steps).
    pub signal: Option<String>,
}

/// A human task to open for a waiting step.
#[derive(Debug, Clone, PartialEq)]
pub struct HumanTask {
    /// The skill a CSR needs.
    pub skill: String,
    /// How long the work takes.
    pub duration: Duration,
    /// Its deadline, if any.
    pub due_by: Option<Millis>,
}

/// The decision taken on an outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Record success with this output.
    Succeed(Value),
    /// Requeue for another attempt at `at`.
    ScheduleRetry {
        /// The failure that caused it.
        error: String,
        /// When the step becomes claimable again.
        at: Millis,
    },
    /// Dead-letter the step.
    DeadLetter(String),
    /// Give the claim back without charging the attempt.
    Defer {
        /// Why.
        reason: String,
        /// When the step becomes claimable again.
        until: Millis,
    },
    /// Park the step in `waiting`.
    Wait(WaitFor),
}

/// The retry policy of a stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts before a retryable failure dead-letters (at least 1).
    pub max_attempts: u32,
    /// The backoff between attempts.
    pub backoff: Backoff,
}

/// Decides what an outcome means. `attempts` counts the attempt that produced it.
/// `unit_random` is a uniform random number in `[0, 1)` for the backoff's jitter.
pub fn resolve(
    outcome: StepOutcome,
    attempts: u32,
    policy: &RetryPolicy,
    now: Millis,
    unit_random: f64,
) -> Resolution {
    match outcome {
        StepOutcome::Succeeded(output) => Resolution::Succeed(output),
        StepOutcome::Waiting(wait) => Resolution::Wait(wait),
        StepOutcome::Deferred { reason, until } => Resolution::Defer { reason, until },
        StepOutcome::Permanent(error) => Resolution::DeadLetter(error),
        StepOutcome::Retry { error, after } => {
            if attempts >= policy.max_attempts {
                Resolution::DeadLetter(format!(
                    "{error} (gave up after {attempts} attempt{})",
                    if attempts == 1 { "" } else { "s" }
                ))
            } else {
                let jittered = policy.backoff.delay(attempts, unit_random);
                let delay = after.map_or(jittered, |asked| asked.max(jittered));
                Resolution::ScheduleRetry {
                    error,
                    at: now.plus(delay),
                }
            }
        }
    }
}

/// Classifies an HTTP response status (SPEC §5).
pub fn classify_http(status: u16, retry_after: Option<Duration>, body: Value) -> StepOutcome {
    match status {
        200..=299 => StepOutcome::Succeeded(body),
        408 | 429 | 500..=599 => StepOutcome::Retry {
            error: format!("HTTP {status}{}", body_hint(&body)),
            after: retry_after,
        },
        _ => StepOutcome::Permanent(format!("HTTP {status}{}", body_hint(&body))),
    }
}

fn body_hint(body: &Value) -> String {
    match body {
        Value::Null => String::new(),
        Value::String(s) if s.is_empty() => String::new(),
        Value::String(s) => format!(": {}", truncate(s, 300)),
        other => format!(": {}", truncate(&other.to_string(), 300)),
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max_chars).collect();
        t.push('…');
        t
    }
}

/// Parses a `Retry-After` header: delta seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: Millis) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date = jiff::fmt::strtime::parse("%a, %d %b %Y %H:%M:%S GMT", value)
        .ok()?
        .to_datetime()
        .ok()?;
    let at = date.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    Some(Millis(at.as_millisecond()).since(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn http_statuses_are_classified_as_the_spec_says() {
        let table: &[(u16, &str)] = &[
            (200, "ok"),
            (201, "ok"),
            (204, "ok"),
            (299, "ok"),
            (408, "retry"),
            (429, "retry"),
            (500, "retry"),
            (502, "retry"),
            (503, "retry"),
            (599, "retry"),
            (400, "permanent"),
            (401, "permanent"),
            (404, "permanent"),
            (409, "permanent"),
            (422, "permanent"),
            (301, "permanent"),
        ];
        for (status, want) in table {
            let got = match classify_http(*status, None, Value::Null) {
                StepOutcome::Succeeded(_) => "ok",
                StepOutcome::Retry { .. } => "retry",
                StepOutcome::Permanent(_) => "permanent",
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!(got, *want, "status {status}");
        }
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_http_date() {
        let now = Millis(
            jiff::Timestamp::from_second(1_700_000_000)
                .unwrap()
                .as_millisecond(),
        );
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        let later = "Tue, 14 Nov 2023 22:14:20 GMT"; // 1_700_000_060
        assert_eq!(parse_retry_after(later, now), Some(Duration::from_secs(60)));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(10),
                multiplier: 2.0,
            },
        }
    }

    #[test]
    fn a_retryable_failure_with_attempts_left_is_scheduled_within_the_backoff() {
        let r = resolve(
            StepOutcome::Retry {
                error: "HTTP 503".into(),
                after: None,
            },
            2,
            &policy(5),
            Millis(1_000),
            0.999,
        );
        match r {
            Resolution::ScheduleRetry { at, .. } => assert!(at.0 > 1_000 && at.0 <= 1_200),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retry_after_from_the_service_is_honoured() {
        let r = resolve(
            StepOutcome::Retry {
                error: "HTTP 429".into(),
                after: Some(Duration::from_secs(30)),
            },
            1,
            &policy(5),
            Millis(0),
            0.5,
        );
        assert_eq!(
            r,
            Resolution::ScheduleRetry {
                error: "HTTP 429".into(),
                at: Millis(30_000)
            }
        );
    }

    #[test]
    fn the_last_attempt_dead_letters_and_a_permanent_error_at_once() {
        let r = resolve(
            StepOutcome::Retry {
                error: "boom".into(),
                after: None,
            },
            5,
            &policy(5),
            Millis(0),
            0.1,
        );
        assert!(matches!(r, Resolution::DeadLetter(e) if e.contains("after 5 attempts")));
        let r = resolve(
            StepOutcome::Permanent("HTTP 400".into()),
            1,
            &policy(5),
            Millis(0),
            0.1,
        );
        assert_eq!(r, Resolution::DeadLetter("HTTP 400".into()));
    }

    #[test]
    fn deferral_passes_through_and_success_keeps_output() {
        let r = resolve(
            StepOutcome::Deferred {
                reason: "breaker open".into(),
                until: Millis(9),
            },
            5,
            &policy(5),
            Millis(0),
            0.1,
        );
        assert_eq!(
            r,
            Resolution::Defer {
                reason: "breaker open".into(),
                until: Millis(9)
            }
        );
        let r = resolve(
            StepOutcome::Succeeded(json!({"id": 1})),
            1,
            &policy(1),
            Millis(0),
            0.1,
        );
        assert_eq!(r, Resolution::Succeed(json!({"id": 1})));
    }
}
