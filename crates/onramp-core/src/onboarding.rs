//! The onboarding state machine (SPEC §3).
//!
//! ```text
//! pending -> running -> completed
//! running <-> waiting            (current step is human / signal / delay)
//! running|waiting -> failed      (a step dead-lettered or timed out)
//! failed -> running              (retry or dead-letter replay)
//! pending|running|waiting|failed -> cancelling -> cancelled
//! ```
//! [`transition`] is the only way to compute a new status; storage backends call it before
//! writing a status column.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where an onboarding is in its life.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnboardingStatus {
    /// Created; its first step has not started.
    Pending,
    /// A step is queued or being worked on.
    Running,
    /// The current step waits for a person, a signal or a time.
    Waiting,
    /// A step dead-lettered; an operator may retry.
    Failed,
    /// Cancel requested; compensations are running.
    Cancelling,
    /// Every step succeeded. Terminal.
    Completed,
    /// Cancelled. Terminal.
    Cancelled,
}

/// What happens when a step of an onboarding dead-letters (a template's `on_failure`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Stay `failed` until an operator retries, replays or cancels.
    #[default]
    Hold,
    /// Cancel at once, running the compensations of the steps that succeeded.
    Compensate,
}

impl FailurePolicy {
    /// The snake_case name used in config and storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hold => "hold",
            Self::Compensate => "compensate",
        }
    }
}

impl FromStr for FailurePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "hold" => Ok(Self::Hold),
            "compensate" => Ok(Self::Compensate),
            other => Err(format!(
                "unknown on_failure `{other}`: use `hold` or `compensate`"
            )),
        }
    }
}

/// What happens to an onboarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnboardingEvent {
    /// Its first step started.
    Start,
    /// The current step began waiting (human, signal, delay).
    Wait,
    /// The waiting step is done or work resumed.
    Resume,
    /// The last step succeeded.
    Complete,
    /// A step dead-lettered or timed out.
    Fail,
    /// An operator retried, or a dead letter was replayed.
    Retry,
    /// Cancel was requested.
    Cancel,
    /// All compensations finished.
    FinishCancel,
}

/// A transition the state machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an onboarding that is {from} cannot {event}")]
pub struct InvalidTransition {
    /// The current status.
    pub from: OnboardingStatus,
    /// What was attempted, in words.
    pub event: &'static str,
}

impl OnboardingStatus {
    /// Every status, for tables and tests.
    pub const ALL: [OnboardingStatus; 7] = [
        Self::Pending,
        Self::Running,
        Self::Waiting,
        Self::Failed,
        Self::Cancelling,
        Self::Completed,
        Self::Cancelled,
    ];

    /// The snake_case name used in JSON and storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Waiting => "waiting",
            Self::Failed => "failed",
            Self::Cancelling => "cancelling",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }

    /// `completed` and `cancelled` never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled)
    }
}

impl OnboardingEvent {
    /// Every event, for tables and tests.
    pub const ALL: [OnboardingEvent; 8] = [
        Self::Start,
        Self::Wait,
        Self::Resume,
        Self::Complete,
        Self::Fail,
        Self::Retry,
        Self::Cancel,
        Self::FinishCancel,
    ];

    fn verb(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Wait => "wait",
            Self::Resume => "resume",
            Self::Complete => "complete",
            Self::Fail => "fail",
            Self::Retry => "be retried",
            Self::Cancel => "be cancelled",
            Self::FinishCancel => "finish cancelling",
        }
    }
}

impl fmt::Display for OnboardingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OnboardingStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown onboarding status `{s}`"))
    }
}

/// The one function that moves an onboarding from one status to the next.
pub fn transition(
    from: OnboardingStatus,
    event: OnboardingEvent,
) -> Result<OnboardingStatus, InvalidTransition> {
    use OnboardingEvent as E;
    use OnboardingStatus as S;
    let to = match (from, event) {
        (S::Pending, E::Start) => S::Running,
        (S::Running, E::Wait) => S::Waiting,
        (S::Waiting, E::Resume) => S::Running,
        (S::Running, E::Complete) => S::Completed,
        (S::Running | S::Waiting, E::Fail) => S::Failed,
        (S::Failed, E::Retry) => S::Running,
        (S::Pending | S::Running | S::Waiting | S::Failed, E::Cancel) => S::Cancelling,
        (S::Cancelling, E::FinishCancel) => S::Cancelled,
        _ => {
            return Err(InvalidTransition {
                from,
                event: event.verb(),
            });
        }
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use OnboardingEvent as E;
    use OnboardingStatus as S;
    use proptest::prelude::*;

    /// The SPEC §3 diagram as a table: every allowed (from, event, to).
    const ALLOWED: &[(S, E, S)] = &[
        (S::Pending, E::Start, S::Running),
        (S::Running, E::Wait, S::Waiting),
        (S::Waiting, E::Resume, S::Running),
        (S::Running, E::Complete, S::Completed),
        (S::Running, E::Fail, S::Failed),
        (S::Waiting, E::Fail, S::Failed),
        (S::Failed, E::Retry, S::Running),
        (S::Pending, E::Cancel, S::Cancelling),
        (S::Running, E::Cancel, S::Cancelling),
        (S::Waiting, E::Cancel, S::Cancelling),
        (S::Failed, E::Cancel, S::Cancelling),
        (S::Cancelling, E::FinishCancel, S::Cancelled),
    ];

    #[test]
    fn every_state_event_pair_matches_the_spec_table() {
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
    fn terminal_states_accept_nothing() {
        for event in E::ALL {
            assert!(transition(S::Completed, event).is_err());
            assert!(transition(S::Cancelled, event).is_err());
        }
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in S::ALL {
            assert_eq!(s.as_str().parse::<S>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    proptest! {
        /// Random event sequences: refused events leave the state as it was, accepted ones
        /// land in a state of the table, and nothing ever leaves a terminal state.
        #[test]
        fn random_event_sequences_never_reach_an_invalid_state(
            events in proptest::collection::vec(0usize..E::ALL.len(), 0..60)
        ) {
            let mut state = S::Pending;
            for i in events {
                let event = E::ALL[i];
                match transition(state, event) {
                    Ok(next) => {
                        prop_assert!(!state.is_terminal());
                        prop_assert!(ALLOWED.contains(&(state, event, next)));
                        state = next;
                    }
                    Err(err) => prop_assert_eq!(err.from, state),
                }
            }
        }
    }
}
