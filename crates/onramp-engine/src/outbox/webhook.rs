//! Webhook senders: one task per endpoint, each claiming and POSTing that endpoint's due
//! deliveries, so a slow or failing endpoint never holds up another.
//!
//! Each POST carries the Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`). A 2xx is delivered; anything else (another status, a timeout, a
//! refused connection) is retried after the backoff of `[events.webhooks]` until
//! `retry_for` has passed since the first attempt, then the delivery is dead. Redirects are
//! not followed: a 3xx counts as a failure.

use crate::Engine;
use crate::outbox::payload::event_json;
use onramp_config::WebhooksConfig;
use onramp_core::WebhookId;
use onramp_core::delivery::{AfterFailure, RetryPolicy, after_failure};
use onramp_core::webhook::WebhookSecret;
use onramp_store::{
    ClaimedDelivery, DeliveryFinish, DeliveryOutcome, DeliveryTarget, StoreError, WebhookRecord,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long past the request timeout a claimed delivery stays leased.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// Longest error text kept with a delivery.
const MAX_ERROR_LEN: usize = 500;

/// Watches the list of endpoints and runs a sender per endpoint until `shutdown`.
pub async fn run(engine: Arc<Engine>, shutdown: CancellationToken) {
    let client = match client(&engine.config.events.webhooks) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook HTTP client; webhooks are not delivered");
            return;
        }
    };
    let mut senders: HashMap<WebhookId, (CancellationToken, tokio::task::JoinHandle<()>)> =
        HashMap::new();
    let poll = engine.config.worker.poll_interval;
    loop {
        match engine.store.list_webhooks().await {
            Ok(hooks) => {
                senders.retain(|id, (stop, _)| {
                    let keep = hooks.iter().any(|h| &h.id == id);
                    if !keep {
                        stop.cancel();
                    }
                    keep
                });
                for hook in hooks {
                    if let std::collections::hash_map::Entry::Vacant(slot) =
                        senders.entry(hook.id.clone())
                    {
                        let stop = shutdown.child_token();
                        let task = tokio::spawn(send_loop(
                            engine.clone(),
                            client.clone(),
                            hook,
                            stop.clone(),
                        ));
                        slot.insert((stop, task));
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not list webhooks; trying again"),
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(poll) => {}
        }
    }
    for (_, (stop, task)) in senders {
        stop.cancel();
        let _ = task.await;
    }
}

/// The HTTP client of webhook deliveries: the configured timeout, no redirects.
pub fn client(config: &WebhooksConfig) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.timeout)
        .user_agent(concat!("onramp/", env!("CARGO_PKG_VERSION"), " (webhooks)"))
        .build()
}

async fn send_loop(
    engine: Arc<Engine>,
    client: reqwest::Client,
    hook: WebhookRecord,
    stop: CancellationToken,
) {
    let secret: WebhookSecret = match hook.secret.parse() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(webhook = %hook.id, error = %e, "the webhook's stored secret is unusable; not delivering");
            return;
        }
    };
    let config = engine.config.events.webhooks.clone();
    let target = DeliveryTarget::Webhook(hook.id.clone());
    let mut published = engine.store.signals().subscribe_published();
    let poll = engine.config.worker.poll_interval;
    loop {
        let claimed = engine
            .store
            .claim_deliveries(
                &target,
                config.concurrency,
                engine.clock.now(),
                config.timeout + LEASE_MARGIN,
            )
            .await;
        match claimed {
            Ok(claimed) if !claimed.is_empty() => {
                let attempts = claimed
                    .iter()
                    .map(|d| attempt(&engine, &client, &hook.url, &secret, &config, d));
                let finishes = futures::future::join_all(attempts).await;
                for (result, finish) in engine
                    .store
                    .finish_deliveries(finishes.clone())
                    .await
                    .into_iter()
                    .zip(&finishes)
                {
                    match result {
                        Ok(()) => {}
                        Err(StoreError::Conflict(why)) => {
                            tracing::debug!(delivery = %finish.id, %why, "delivery taken over meanwhile")
                        }
                        Err(e) => {
                            tracing::warn!(delivery = %finish.id, error = %e, "could not record a webhook attempt; it will be sent again")
                        }
                    }
                }
                if stop.is_cancelled() {
                    return;
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(webhook = %hook.id, error = %e, "could not claim webhook deliveries")
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            _ = published.changed() => {}
            () = tokio::time::sleep(poll) => {}
        }
    }
}

/// POSTs one delivery and decides what its outcome means.
async fn attempt(
    engine: &Engine,
    client: &reqwest::Client,
    url: &str,
    secret: &WebhookSecret,
    config: &WebhooksConfig,
    delivery: &ClaimedDelivery,
) -> DeliveryFinish {
    let body = event_json(&delivery.event).to_string();
    let timestamp = engine.clock.now().0.div_euclid(1000);
    let event_id = delivery.event.id.as_str();
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            secret.sign(event_id, timestamp, body.as_bytes()),
        )
        .body(body)
        .send()
        .await;
    let now = engine.clock.now();
    let (error, retry_after) = match sent {
        Ok(response) if response.status().is_success() => {
            return DeliveryFinish {
                id: delivery.id.clone(),
                lease: delivery.lease,
                outcome: DeliveryOutcome::Delivered,
                now,
            };
        }
        Ok(response) => {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            (format!("HTTP {}", response.status().as_u16()), retry_after)
        }
        Err(e) if e.is_timeout() => (
            format!("no answer within {}", humantime_secs(config.timeout)),
            None,
        ),
        Err(e) => (error_chain(&e), None),
    };
    let policy = RetryPolicy {
        backoff: config.backoff,
        retry_for: Some(config.retry_for),
    };
    let outcome = match after_failure(
        &policy,
        delivery.window_start,
        delivery.attempt,
        now,
        rand::random::<f64>(),
        retry_after,
    ) {
        AfterFailure::RetryAt(at) => DeliveryOutcome::Retry { at, error },
        AfterFailure::GiveUp => DeliveryOutcome::Dead { error },
    };
    tracing::debug!(delivery = %delivery.id, attempt = delivery.attempt, ?outcome, "webhook attempt failed");
    DeliveryFinish {
        id: delivery.id.clone(),
        lease: delivery.lease,
        outcome,
        now,
    }
}

fn humantime_secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The error and its causes on one line ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if text.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
