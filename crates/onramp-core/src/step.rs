//! The step state machine (SPEC §3 step statuses).
//!
//! ```text
//! pending -> queued -> running -> succeeded
//!                      running -> retrying -> running        (backoff, then claimed again)
//!                      running -> queued                     (deferred: breaker open, lease given back)
//!                      running -> waiting -> succeeded       (human / signal / delay)
//! queued|running|retrying|waiting -> dead -> queued          (dead letter, replay)
//! pending|queued|retrying|waiting -> skipped                 (onboarding cancelled)
//! running|dead -> cancelled                                  (onboarding cancelled mid-step)
//! succeeded|running -> compensating -> compensated           (saga on cancel)
//! compensating -> compensating                               (claimed, retried, deferred)
//! compensating -> dead -> compensating                       (compensation dead-lettered, replayed)
//! ```
//! A compensating step is in its stage's queue while it holds no lease, and being undone
//! while it does: the saga runs through the same claims, leases and retries as the work did.
//! [`transition`] is the only way to compute a new step status.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where a step is in its life.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not reached yet.
    Pending,
    /// In its stage's queue, claimable from `available_at`.
    Queued,
    /// Claimed by a worker holding a lease.
    Running,
    /// An attempt failed; claimable again after the backoff.
    Retrying,
    /// Waits for a person, a signal or a time.
    Waiting,
    /// Done.
    Succeeded,
    /// Dead-lettered.
    Dead,
    /// Never run because the onboarding was cancelled.
    Skipped,
    /// Its compensation is running.
    Compensating,
    /// Its compensation finished.
    Compensated,
    /// Cancelled while it ran or lay dead.
    Cancelled,
}

/// What happens to a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepEvent {
    /// It became the current step and entered its stage's queue.
    Enqueue,
    /// A worker claimed it.
    Claim,
    /// Its work succeeded.
    Succeed,
    /// An attempt failed and will be retried after a backoff.
    ScheduleRetry,
    /// Handed back to the queue without charging the attempt (breaker open, shutdown).
    Defer,
    /// It began waiting for a person, a signal or a time.
    Wait,
    /// Retries exhausted, a permanent error, or a timeout.
    DeadLetter,
    /// An operator replayed its dead letter.
    Replay,
    /// The onboarding was cancelled before the step did anything.
    Skip,
    /// The onboarding was cancelled while the step ran or lay dead.
    Cancel,
    /// Its compensation started.
    Compensate,
    /// Its compensation finished.
    FinishCompensation,
    /// An operator replayed the dead letter of its compensation.
    ReplayCompensation,
}

/// A transition the step state machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a step that is {from} cannot take event {event:?}")]
pub struct InvalidStepTransition {
    /// The current status.
    pub from: StepStatus,
    /// The refused event.
    pub event: StepEvent,
}

impl StepStatus {
    /// Every status, for tables and tests.
    pub const ALL: [StepStatus; 11] = [
        Self::Pending,
        Self::Queued,
        Self::Running,
        Self::Retrying,
        Self::Waiting,
        Self::Succeeded,
        Self::Dead,
        Self::Skipped,
        Self::Compensating,
        Self::Compensated,
        Self::Cancelled,
    ];

    /// The snake_case name used in JSON and storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Waiting => "waiting",
            Self::Succeeded => "succeeded",
            Self::Dead => "dead",
            Self::Skipped => "skipped",
            Self::Compensating => "compensating",
            Self::Compensated => "compensated",
            Self::Cancelled => "cancelled",
        }
    }
}

impl StepStatus {
    /// Whether a step in this status may hold a lease: a running attempt, or a running
    /// compensation. A finish under a lease must find the step still holding it.
    pub fn holds_lease(self) -> bool {
        matches!(self, Self::Running | Self::Compensating)
    }
}

impl StepEvent {
    /// Every event, for tables and tests.
    pub const ALL: [StepEvent; 13] = [
        Self::Enqueue,
        Self::Claim,
        Self::Succeed,
        Self::ScheduleRetry,
        Self::Defer,
        Self::Wait,
        Self::DeadLetter,
        Self::Replay,
        Self::Skip,
        Self::Cancel,
        Self::Compensate,
        Self::FinishCompensation,
        Self::ReplayCompensation,
    ];
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StepStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown step status `{s}`"))
    }
}

/// The one function that moves a step from one status to the next.
pub fn transition(from: StepStatus, event: StepEvent) -> Result<StepStatus, InvalidStepTransition> {
    use StepEvent as E;
    use StepStatus as S;
    let to = match (from, event) {
        (S::Pending, E::Enqueue) => S::Queued,
        (S::Queued | S::Retrying, E::Claim) => S::Running,
        (S::Running | S::Waiting, E::Succeed) => S::Succeeded,
        (S::Running, E::ScheduleRetry) => S::Retrying,
        (S::Running, E::Defer) => S::Queued,
        (S::Running, E::Wait) => S::Waiting,
        (S::Queued | S::Running | S::Retrying | S::Waiting, E::DeadLetter) => S::Dead,
        (S::Dead, E::Replay) => S::Queued,
        (S::Pending | S::Queued | S::Retrying | S::Waiting, E::Skip) => S::Skipped,
        (S::Running | S::Dead, E::Cancel) => S::Cancelled,
        (S::Succeeded | S::Running, E::Compensate) => S::Compensating,
        (S::Compensating, E::Claim | E::ScheduleRetry | E::Defer) => S::Compensating,
        (S::Compensating, E::FinishCompensation) => S::Compensated,
        (S::Compensating, E::DeadLetter) => S::Dead,
        (S::Dead, E::ReplayCompensation) => S::Compensating,
        _ => return Err(InvalidStepTransition { from, event }),
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use StepEvent as E;
    use StepStatus as S;
    use proptest::prelude::*;

    const ALLOWED: &[(S, E, S)] = &[
        (S::Pending, E::Enqueue, S::Queued),
        (S::Queued, E::Claim, S::Running),
        (S::Retrying, E::Claim, S::Running),
        (S::Running, E::Succeed, S::Succeeded),
        (S::Waiting, E::Succeed, S::Succeeded),
        (S::Running, E::ScheduleRetry, S::Retrying),
        (S::Running, E::Defer, S::Queued),
        (S::Running, E::Wait, S::Waiting),
        (S::Queued, E::DeadLetter, S::Dead),
        (S::Running, E::DeadLetter, S::Dead),
        (S::Retrying, E::DeadLetter, S::Dead),
        (S::Waiting, E::DeadLetter, S::Dead),
        (S::Dead, E::Replay, S::Queued),
        (S::Pending, E::Skip, S::Skipped),
        (S::Queued, E::Skip, S::Skipped),
        (S::Retrying, E::Skip, S::Skipped),
        (S::Waiting, E::Skip, S::Skipped),
        (S::Running, E::Cancel, S::Cancelled),
        (S::Dead, E::Cancel, S::Cancelled),
        (S::Succeeded, E::Compensate, S::Compensating),
        (S::Running, E::Compensate, S::Compensating),
        (S::Compensating, E::Claim, S::Compensating),
        (S::Compensating, E::ScheduleRetry, S::Compensating),
        (S::Compensating, E::Defer, S::Compensating),
        (S::Compensating, E::FinishCompensation, S::Compensated),
        (S::Compensating, E::DeadLetter, S::Dead),
        (S::Dead, E::ReplayCompensation, S::Compensating),
    ];

    #[test]
    fn every_state_event_pair_matches_the_table() {
        for from in S::ALL {
            for event in E::ALL {
                let expected = ALLOWED
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|(_, _, to)| *to);
                assert_eq!(
                    transition(from, event).ok(),
                    expected,
                    "{from:?} + {event:?}"
                );
            }
        }
    }

    #[test]
    fn the_state_machine_doc_lists_exactly_the_allowed_transitions() {
        let doc = include_str!("../../../docs/state-machines.md");
        for (from, _, to) in ALLOWED {
            let edge = format!("{} --> {}", from.as_str(), to.as_str());
            assert!(doc.contains(&edge), "docs/state-machines.md lacks `{edge}`");
        }
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in S::ALL {
            assert_eq!(s.as_str().parse::<S>(), Ok(s));
        }
    }

    proptest! {
        #[test]
        fn random_event_sequences_stay_inside_the_table(
            events in proptest::collection::vec(0usize..E::ALL.len(), 0..80)
        ) {
            let mut state = S::Pending;
            for i in events {
                let event = E::ALL[i];
                if let Ok(next) = transition(state, event) {
                    prop_assert!(ALLOWED.contains(&(state, event, next)));
                    state = next;
                }
            }
            prop_assert!(S::ALL.contains(&state));
        }
    }
}
