//! Records of live status, published events, webhook endpoints and event deliveries.

use onramp_core::delivery::{DeliveryEvent, DeliveryStatus};
use onramp_core::events::EventType;
use onramp_core::onboarding::OnboardingStatus;
use onramp_core::time::Millis;
use onramp_core::{DeliveryId, EventId, OnboardingId, StageName, WebhookId};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

/// One visible change of an onboarding's status JSON (status, stage, progress, error, retry),
/// recorded in the transaction of the change. `seq` grows with every change of the onboarding
/// (it is global and not gapless: only its order within one onboarding counts).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    /// Its position; the SSE event id.
    pub seq: i64,
    /// The onboarding.
    pub onboarding_id: OnboardingId,
    /// Its status after the change.
    pub status: OnboardingStatus,
    /// Its current stage.
    pub stage: Option<StageName>,
    /// Steps succeeded.
    pub succeeded_steps: u32,
    /// Steps in all.
    pub total_steps: u32,
    /// Why it failed.
    pub error: Option<String>,
    /// Whether a retry is possible.
    pub retry_available: bool,
    /// When.
    pub at: Millis,
}

/// An outbox event that the dispatcher has published: it has a place in the one order in
/// which events are handed to destinations and shown on `/v1/events`.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedEvent {
    /// Its place in publication order, gapless from 1.
    pub seq: i64,
    /// Its id (the `webhook-id`).
    pub id: EventId,
    /// Its type.
    pub kind: EventType,
    /// The onboarding it is about.
    pub onboarding_id: OnboardingId,
    /// When it happened.
    pub at: Millis,
    /// Its data.
    pub data: Value,
}

/// What [`Store::publish_events`](crate::Store::publish_events) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    /// Events that got their place in publication order.
    pub events: usize,
    /// Deliveries created for them.
    pub deliveries: usize,
}

/// A webhook endpoint to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWebhook {
    /// Its id.
    pub id: WebhookId,
    /// An `http://` or `https://` URL.
    pub url: String,
    /// The event types it receives (at least one).
    pub events: Vec<EventType>,
    /// Its signing secret, `whsec_...`.
    pub secret: String,
    /// When.
    pub now: Millis,
    /// Who adds it (for the audit log).
    pub actor: String,
}

/// A webhook endpoint as stored (with its secret: the dispatcher signs with it; the API shows
/// it only in the create response).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRecord {
    /// Its id.
    pub id: WebhookId,
    /// Where events are POSTed.
    pub url: String,
    /// The event types it receives.
    pub events: Vec<EventType>,
    /// Its signing secret, `whsec_...`.
    pub secret: String,
    /// Created.
    pub created_at: Millis,
}

/// Where a delivery goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeliveryTarget {
    /// A webhook endpoint.
    Webhook(WebhookId),
    /// The AMQP exchange of `[events.amqp]`.
    Amqp,
}

impl DeliveryTarget {
    /// The target as stored: the webhook id, or `amqp`.
    pub fn as_str(&self) -> &str {
        match self {
            DeliveryTarget::Webhook(id) => id.as_str(),
            DeliveryTarget::Amqp => "amqp",
        }
    }
}

impl fmt::Display for DeliveryTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "amqp" {
            return Ok(DeliveryTarget::Amqp);
        }
        s.parse()
            .map(DeliveryTarget::Webhook)
            .map_err(|e: onramp_core::InvalidId| e.to_string())
    }
}

/// A delivery a dispatcher claimed, with its event.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedDelivery {
    /// The delivery.
    pub id: DeliveryId,
    /// The lease to present when finishing.
    pub lease: crate::LeaseId,
    /// This attempt's number (from 1).
    pub attempt: u32,
    /// When its retry window opened (first claim, or replay).
    pub window_start: Millis,
    /// The event.
    pub event: PublishedEvent,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    /// Acknowledged.
    Delivered,
    /// Failed; try again at `at`.
    Retry {
        /// When.
        at: Millis,
        /// Why it failed.
        error: String,
    },
    /// Failed, and the retry window is over.
    Dead {
        /// Why it failed last.
        error: String,
    },
}

impl DeliveryOutcome {
    /// The state machine's event for this outcome.
    pub fn event(&self) -> DeliveryEvent {
        match self {
            DeliveryOutcome::Delivered => DeliveryEvent::Deliver,
            DeliveryOutcome::Retry { .. } => DeliveryEvent::Fail,
            DeliveryOutcome::Dead { .. } => DeliveryEvent::GiveUp,
        }
    }
}

/// The end of one attempt, to record.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryFinish {
    /// Which delivery.
    pub id: DeliveryId,
    /// The lease it was claimed under: a finish after the lease was taken over is refused.
    pub lease: crate::LeaseId,
    /// How it ended.
    pub outcome: DeliveryOutcome,
    /// When.
    pub now: Millis,
}

/// A delivery as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    /// Its id.
    pub id: DeliveryId,
    /// Where it goes.
    pub target: DeliveryTarget,
    /// The event.
    pub event_id: EventId,
    /// The event's type.
    pub event_type: EventType,
    /// The onboarding.
    pub onboarding_id: OnboardingId,
    /// Its status.
    pub status: DeliveryStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it is due next (pending / retrying).
    pub next_attempt_at: Option<Millis>,
    /// Created.
    pub created_at: Millis,
    /// Last changed.
    pub updated_at: Millis,
}

/// Which deliveries to list.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryFilter {
    /// The destination.
    pub target: DeliveryTarget,
    /// Only this status.
    pub status: Option<DeliveryStatus>,
}
