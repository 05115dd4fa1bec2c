//! Events for other services (SPEC §10), written to the outbox with the change that caused
//! them.

use crate::ids::{EventId, OnboardingId};
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// The kinds of event onramp emits; the name is also the AMQP routing key.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// An onboarding was created.
    #[serde(rename = "onboarding.created")]
    OnboardingCreated,
    /// An onboarding completed.
    #[serde(rename = "onboarding.completed")]
    OnboardingCompleted,
    /// An onboarding failed.
    #[serde(rename = "onboarding.failed")]
    OnboardingFailed,
    /// An onboarding was cancelled.
    #[serde(rename = "onboarding.cancelled")]
    OnboardingCancelled,
    /// A step succeeded.
    #[serde(rename = "step.succeeded")]
    StepSucceeded,
    /// A step was dead-lettered.
    #[serde(rename = "step.dead_lettered")]
    StepDeadLettered,
    /// A human task was assigned.
    #[serde(rename = "task.assigned")]
    TaskAssigned,
    /// A human task was completed.
    #[serde(rename = "task.completed")]
    TaskCompleted,
    /// A human task passed its due time.
    #[serde(rename = "task.overdue")]
    TaskOverdue,
}

impl EventType {
    /// Every event type.
    pub const ALL: [EventType; 9] = [
        Self::OnboardingCreated,
        Self::OnboardingCompleted,
        Self::OnboardingFailed,
        Self::OnboardingCancelled,
        Self::StepSucceeded,
        Self::StepDeadLettered,
        Self::TaskAssigned,
        Self::TaskCompleted,
        Self::TaskOverdue,
    ];

    /// The event's name, e.g. `onboarding.completed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnboardingCreated => "onboarding.created",
            Self::OnboardingCompleted => "onboarding.completed",
            Self::OnboardingFailed => "onboarding.failed",
            Self::OnboardingCancelled => "onboarding.cancelled",
            Self::StepSucceeded => "step.succeeded",
            Self::StepDeadLettered => "step.dead_lettered",
            Self::TaskAssigned => "task.assigned",
            Self::TaskCompleted => "task.completed",
            Self::TaskOverdue => "task.overdue",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown event type `{s}`"))
    }
}

/// An event to write to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Its id (the `webhook-id` when delivered).
    pub id: EventId,
    /// Its type.
    pub kind: EventType,
    /// The onboarding it is about.
    pub onboarding_id: OnboardingId,
    /// When it happened.
    pub at: Millis,
    /// The event's data.
    pub data: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_round_trip_through_their_names() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(t));
            assert_eq!(serde_json::to_value(t).ok(), Some(Value::from(t.as_str())));
        }
        assert!("onboarding.exploded".parse::<EventType>().is_err());
    }
}
