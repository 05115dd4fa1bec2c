//! The delivery state machine: one outbox event on its way to one destination (a webhook
//! endpoint or the AMQP broker).
//!
//! ```text
//! pending -> sending -> delivered
//!            sending -> retrying -> sending       (backoff, then claimed again)
//!            sending -> sending                   (its lease ran out: another dispatcher takes it)
//!            sending -> dead -> pending           (retry window over; an admin replays it)
//! ```
//! [`transition`] is the only way to compute a new delivery status; [`after_failure`] decides
//! between another attempt and giving up.

use crate::backoff::Backoff;
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Where a delivery is in its life.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its first attempt (or replayed).
    Pending,
    /// Claimed by a dispatcher holding a lease.
    Sending,
    /// An attempt failed; due again at `available_at`.
    Retrying,
    /// The destination acknowledged it (2xx, or the broker's confirm).
    Delivered,
    /// Its retry window ran out; waits for a replay.
    Dead,
}

impl DeliveryStatus {
    /// Every status.
    pub const ALL: [DeliveryStatus; 5] = [
        Self::Pending,
        Self::Sending,
        Self::Retrying,
        Self::Delivered,
        Self::Dead,
    ];

    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Retrying => "retrying",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    /// Whether the delivery still holds back the later events of its onboarding (for the same
    /// destination): everything but `delivered` and `dead` does.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Sending | Self::Retrying)
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                format!("unknown delivery status `{s}`: use pending, sending, retrying, delivered or dead")
            })
    }
}

/// What happens to a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryEvent {
    /// A dispatcher claimed it (due, or its previous holder's lease ran out).
    Claim,
    /// The destination acknowledged it.
    Deliver,
    /// The attempt failed; another follows after a backoff.
    Fail,
    /// The attempt failed and the retry window is over.
    GiveUp,
    /// An admin replayed a dead delivery.
    Replay,
}

/// A transition the delivery state machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a delivery that is {from} cannot take event {event:?}")]
pub struct InvalidDeliveryTransition {
    /// The current status.
    pub from: DeliveryStatus,
    /// The refused event.
    pub event: DeliveryEvent,
}

/// The delivery state machine: the next status, or why not.
///
/// ```
/// # use onramp_core::delivery::{transition, DeliveryEvent, DeliveryStatus};
/// assert_eq!(transition(DeliveryStatus::Pending, DeliveryEvent::Claim), Ok(DeliveryStatus::Sending));
/// assert!(transition(DeliveryStatus::Delivered, DeliveryEvent::Replay).is_err());
/// ```
pub fn transition(
    from: DeliveryStatus,
    event: DeliveryEvent,
) -> Result<DeliveryStatus, InvalidDeliveryTransition> {
    use DeliveryEvent as E;
    use DeliveryStatus as S;
    match (from, event) {
        (S::Pending | S::Retrying | S::Sending, E::Claim) => Ok(S::Sending),
        (S::Sending, E::Deliver) => Ok(S::Delivered),
        (S::Sending, E::Fail) => Ok(S::Retrying),
        (S::Sending, E::GiveUp) => Ok(S::Dead),
        (S::Dead, E::Replay) => Ok(S::Pending),
        _ => Err(InvalidDeliveryTransition { from, event }),
    }
}

/// How failed deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// The delay between attempts.
    pub backoff: Backoff,
    /// How long after its first attempt (or its replay) a delivery is retried before it is
    /// dead; `None` retries for ever (the broker: events wait in the outbox until it is back).
    pub retry_for: Option<Duration>,
}

/// What follows a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again at this time.
    RetryAt(Millis),
    /// The retry window is over.
    GiveUp,
}

impl AfterFailure {
    /// The event this decision applies to the delivery.
    pub fn event(self) -> DeliveryEvent {
        match self {
            AfterFailure::RetryAt(_) => DeliveryEvent::Fail,
            AfterFailure::GiveUp => DeliveryEvent::GiveUp,
        }
    }
}

/// Decides what follows failed attempt number `attempt` (from 1) of a delivery whose retry
/// window opened at `window_start`. The delay is the backoff's cap for the attempt with
/// "equal jitter" (uniform in `[cap/2, cap]`, drawn with `unit` in `[0, 1)`), so that retries
/// of many deliveries spread out but never come back at once; a `retry_after` the receiver
/// asked for is honoured when it is longer. The last attempt falls on the window's end.
///
/// ```
/// # use onramp_core::backoff::Backoff;
/// # use onramp_core::delivery::{after_failure, AfterFailure, RetryPolicy};
/// # use onramp_core::time::Millis;
/// # use std::time::Duration;
/// let policy = RetryPolicy {
///     backoff: Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(60), multiplier: 2.0 },
///     retry_for: Some(Duration::from_secs(10)),
/// };
/// assert_eq!(after_failure(&policy, Millis(0), 1, Millis(0), 1.0, None), AfterFailure::RetryAt(Millis(1000)));
/// assert_eq!(after_failure(&policy, Millis(0), 3, Millis(9_000), 1.0, None), AfterFailure::RetryAt(Millis(10_000)));
/// assert_eq!(after_failure(&policy, Millis(0), 4, Millis(10_000), 0.0, None), AfterFailure::GiveUp);
/// ```
pub fn after_failure(
    policy: &RetryPolicy,
    window_start: Millis,
    attempt: u32,
    now: Millis,
    unit: f64,
    retry_after: Option<Duration>,
) -> AfterFailure {
    let deadline = policy.retry_for.map(|d| window_start.plus(d));
    if deadline.is_some_and(|end| now >= end) {
        return AfterFailure::GiveUp;
    }
    let cap = policy.backoff.cap(attempt);
    let mut delay = cap.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0));
    if let Some(asked) = retry_after {
        delay = delay.max(asked.min(policy.backoff.max));
    }
    let at = now.plus(delay);
    AfterFailure::RetryAt(deadline.map_or(at, |end| at.min(end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_of_status_and_event_matches_the_diagram() {
        use DeliveryEvent as E;
        use DeliveryStatus as S;
        let allowed = [
            (S::Pending, E::Claim, S::Sending),
            (S::Retrying, E::Claim, S::Sending),
            (S::Sending, E::Claim, S::Sending),
            (S::Sending, E::Deliver, S::Delivered),
            (S::Sending, E::Fail, S::Retrying),
            (S::Sending, E::GiveUp, S::Dead),
            (S::Dead, E::Replay, S::Pending),
        ];
        let events = [E::Claim, E::Deliver, E::Fail, E::GiveUp, E::Replay];
        for from in DeliveryStatus::ALL {
            for event in events {
                let expected = allowed
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|(_, _, to)| *to);
                assert_eq!(
                    transition(from, event).ok(),
                    expected,
                    "{from} on {event:?}"
                );
            }
        }
    }

    #[test]
    fn the_state_machine_doc_draws_every_allowed_transition() {
        let doc = include_str!("../../../docs/state-machines.md");
        let section = doc
            .split("## Event delivery")
            .nth(1)
            .expect("docs/state-machines.md has an Event delivery section");
        for from in DeliveryStatus::ALL {
            for event in [
                DeliveryEvent::Claim,
                DeliveryEvent::Deliver,
                DeliveryEvent::Fail,
                DeliveryEvent::GiveUp,
                DeliveryEvent::Replay,
            ] {
                if let Ok(to) = transition(from, event) {
                    let edge = format!("{} --> {}", from.as_str(), to.as_str());
                    assert!(section.contains(&edge), "the doc lacks `{edge}`");
                }
            }
        }
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in DeliveryStatus::ALL {
            assert_eq!(status.as_str().parse::<DeliveryStatus>(), Ok(status));
        }
        assert!("lost".parse::<DeliveryStatus>().is_err());
        assert!(!DeliveryStatus::Dead.is_open());
        assert!(DeliveryStatus::Retrying.is_open());
    }

    #[test]
    fn without_a_window_failures_are_retried_for_ever() {
        let policy = RetryPolicy {
            backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(5),
                multiplier: 2.0,
            },
            retry_for: None,
        };
        let later = Millis(1_000_000_000);
        assert_eq!(
            after_failure(&policy, Millis(0), 500, later, 0.0, None),
            AfterFailure::RetryAt(later.plus(Duration::from_millis(2500)))
        );
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_backoff_maximum() {
        let policy = RetryPolicy {
            backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(5),
                multiplier: 2.0,
            },
            retry_for: Some(Duration::from_secs(3600)),
        };
        assert_eq!(
            after_failure(
                &policy,
                Millis(0),
                1,
                Millis(0),
                0.0,
                Some(Duration::from_secs(2))
            ),
            AfterFailure::RetryAt(Millis(2000))
        );
        assert_eq!(
            after_failure(
                &policy,
                Millis(0),
                1,
                Millis(0),
                0.0,
                Some(Duration::from_secs(99))
            ),
            AfterFailure::RetryAt(Millis(5000))
        );
    }
}
