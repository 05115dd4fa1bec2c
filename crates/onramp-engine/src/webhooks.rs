//! Webhook endpoint commands: create (validating the URL, the event types and a supplied
//! secret, or generating one), list, delete; and an endpoint's deliveries: list, replay.

use crate::{Engine, EngineError};
use onramp_core::customer::FieldError;
use onramp_core::delivery::DeliveryStatus;
use onramp_core::events::EventType;
use onramp_core::webhook::{GENERATED_KEY_BYTES, WebhookSecret};
use onramp_core::{DeliveryId, WebhookId};
use onramp_store::*;
use serde::Deserialize;

/// Longest URL accepted.
const MAX_URL_LEN: usize = 2048;

/// The body of `POST /v1/webhooks`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "url": "https://example.com/hooks/onramp",
    "events": ["onboarding.completed", "onboarding.failed"],
})))]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where to POST events: an `http://` or `https://` URL.
    #[cfg_attr(feature = "openapi", schema(format = "uri", max_length = 2048))]
    pub url: String,
    /// The event types to receive, e.g. `["onboarding.completed"]`.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Vec<onramp_core::events::EventType>, min_items = 1)
    )]
    pub events: Vec<String>,
    /// `whsec_<base64 key>`; generated when absent.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = "^whsec_[A-Za-z0-9+/]+={0,2}$"))]
    pub secret: Option<String>,
}

fn field(name: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: name.into(),
        message: message.into(),
    }
}

/// Checks a webhook URL: absolute `http(s)` with a host.
pub fn check_url(raw: &str) -> Result<String, String> {
    if raw.len() > MAX_URL_LEN {
        return Err(format!("must be at most {MAX_URL_LEN} characters"));
    }
    let url = reqwest::Url::parse(raw).map_err(|e| format!("is not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    Ok(url.to_string())
}

impl Engine {
    /// Creates a webhook endpoint; the record carries its secret (shown to the caller once).
    pub async fn create_webhook(
        &self,
        request: CreateWebhook,
        actor: &str,
    ) -> Result<WebhookRecord, EngineError> {
        let mut errors = Vec::new();
        let url = check_url(request.url.trim())
            .map_err(|e| errors.push(field("url", e)))
            .unwrap_or_default();
        let mut events: Vec<EventType> = Vec::new();
        if request.events.is_empty() {
            errors.push(field("events", "name at least one event type"));
        }
        for (i, name) in request.events.iter().enumerate() {
            match name.parse::<EventType>() {
                Ok(t) if !events.contains(&t) => events.push(t),
                Ok(_) => {}
                Err(e) => errors.push(field(&format!("events[{i}]"), e)),
            }
        }
        let secret = match &request.secret {
            None => WebhookSecret::from_key(rand::random::<[u8; GENERATED_KEY_BYTES]>()),
            Some(s) => match s.parse::<WebhookSecret>() {
                Ok(secret) => secret,
                Err(e) => {
                    errors.push(field("secret", e.to_string()));
                    WebhookSecret::from_key([0; GENERATED_KEY_BYTES])
                }
            },
        };
        if !errors.is_empty() {
            return Err(EngineError::Validation(errors));
        }
        Ok(self
            .store
            .create_webhook(NewWebhook {
                id: WebhookId::new(),
                url,
                events,
                secret: secret.expose(),
                now: self.clock.now(),
                actor: actor.to_owned(),
            })
            .await?)
    }

    /// Every webhook endpoint.
    pub async fn list_webhooks(&self) -> Result<Vec<WebhookRecord>, EngineError> {
        Ok(self.store.list_webhooks().await?)
    }

    /// One webhook endpoint.
    pub async fn get_webhook(&self, id: &WebhookId) -> Result<WebhookRecord, EngineError> {
        Ok(self.store.get_webhook(id).await?)
    }

    /// Deletes an endpoint; its undelivered events are dropped with it.
    pub async fn delete_webhook(&self, id: &WebhookId, actor: &str) -> Result<(), EngineError> {
        Ok(self
            .store
            .delete_webhook(id, self.clock.now(), actor)
            .await?)
    }

    /// An endpoint's deliveries, oldest first.
    pub async fn webhook_deliveries(
        &self,
        id: &WebhookId,
        status: Option<DeliveryStatus>,
        page: &PageRequest<DeliveryId>,
    ) -> Result<Page<DeliveryRecord, DeliveryId>, EngineError> {
        self.store.get_webhook(id).await?;
        let filter = DeliveryFilter {
            target: DeliveryTarget::Webhook(id.clone()),
            status,
        };
        Ok(self.store.list_deliveries(&filter, page).await?)
    }

    /// Replays an endpoint's dead deliveries (only `only` when given); returns how many.
    pub async fn replay_webhook_deliveries(
        &self,
        id: &WebhookId,
        only: Option<&DeliveryId>,
    ) -> Result<u64, EngineError> {
        self.store.get_webhook(id).await?;
        Ok(self
            .store
            .replay_deliveries(&DeliveryTarget::Webhook(id.clone()), only, self.clock.now())
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn only_absolute_http_urls_are_accepted() {
        assert!(check_url("http://127.0.0.1:9000/hooks").is_ok());
        assert!(check_url("https://example.com/x?y=1").is_ok());
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "example.com/hook",
            "http://",
            "",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
