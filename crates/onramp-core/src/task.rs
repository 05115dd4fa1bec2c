//! The human task state machine (SPEC §7 task statuses).
//!
//! ```text
//! unassigned -> assigned          (a CSR with the skill, capacity and a free slot was found)
//! assigned -> assigned            (reassigned by an operator)
//! unassigned|assigned -> done     (completed; the onboarding moves on)
//! unassigned|assigned -> cancelled (its onboarding was cancelled)
//! ```
//! Being overdue is not a status: a task past its `due_by` keeps its status and is flagged
//! (`overdue_at`) once, by the scheduler. [`transition`] is the only way to compute a new
//! task status.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where a human task is.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// No CSR could take it yet.
    Unassigned,
    /// A CSR has it, with a scheduled slot.
    Assigned,
    /// Done.
    Done,
    /// Its onboarding was cancelled.
    Cancelled,
}

/// What happens to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskEvent {
    /// Given to a CSR (automatically or by an operator).
    Assign,
    /// Marked done.
    Complete,
    /// Its onboarding was cancelled.
    Cancel,
}

/// A transition the task state machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a task that is {from} cannot take event {event:?}")]
pub struct InvalidTaskTransition {
    /// The current status.
    pub from: TaskStatus,
    /// The refused event.
    pub event: TaskEvent,
}

impl TaskStatus {
    /// Every status.
    pub const ALL: [TaskStatus; 4] = [
        Self::Unassigned,
        Self::Assigned,
        Self::Done,
        Self::Cancelled,
    ];

    /// The status's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unassigned => "unassigned",
            Self::Assigned => "assigned",
            Self::Done => "done",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the task still needs doing.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Unassigned | Self::Assigned)
    }
}

impl TaskEvent {
    /// Every event.
    pub const ALL: [TaskEvent; 3] = [Self::Assign, Self::Complete, Self::Cancel];
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown task status `{s}`"))
    }
}

/// The task state machine.
pub fn transition(from: TaskStatus, event: TaskEvent) -> Result<TaskStatus, InvalidTaskTransition> {
    use TaskEvent as E;
    use TaskStatus as S;
    match (from, event) {
        (S::Unassigned | S::Assigned, E::Assign) => Ok(S::Assigned),
        (S::Unassigned | S::Assigned, E::Complete) => Ok(S::Done),
        (S::Unassigned | S::Assigned, E::Cancel) => Ok(S::Cancelled),
        _ => Err(InvalidTaskTransition { from, event }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskEvent as E;
    use TaskStatus as S;

    const ALLOWED: &[(S, E, S)] = &[
        (S::Unassigned, E::Assign, S::Assigned),
        (S::Assigned, E::Assign, S::Assigned),
        (S::Unassigned, E::Complete, S::Done),
        (S::Assigned, E::Complete, S::Done),
        (S::Unassigned, E::Cancel, S::Cancelled),
        (S::Assigned, E::Cancel, S::Cancelled),
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
        let section = doc.split("## Human task").nth(1).expect("a task section");
        for (from, _, to) in ALLOWED {
            let edge = format!("{} --> {}", from.as_str(), to.as_str());
            assert!(
                section.contains(&edge),
                "docs/state-machines.md lacks `{edge}`"
            );
        }
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in S::ALL {
            assert_eq!(s.as_str().parse::<S>(), Ok(s));
        }
    }
}
