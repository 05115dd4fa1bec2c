//! The JSON an event is delivered as — the same body for webhooks, the broker and the
//! `/v1/events` stream.

use onramp_store::PublishedEvent;
use serde_json::{Value, json};

/// `{"id", "type", "timestamp", "onboarding_id", "data"}`.
pub fn event_json(event: &PublishedEvent) -> Value {
    json!({
        "id": event.id,
        "type": event.kind,
        "timestamp": event.at.to_rfc3339(),
        "onboarding_id": event.onboarding_id,
        "data": event.data,
    })
}
