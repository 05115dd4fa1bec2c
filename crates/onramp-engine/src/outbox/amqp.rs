//! The broker publisher: deliveries to `[events.amqp]` go to its topic exchange (declared
//! durable) as persistent messages with the event type as routing key, under publisher
//! confirms. A delivery is marked delivered only after the broker confirmed it; anything
//! unconfirmed when the connection breaks is published again after reconnecting, so a
//! consumer sees every event at least once, in commit order per onboarding.
//!
//! While the broker is unreachable the events wait in the database, `/readyz` reports the
//! events as degraded, and the publisher reconnects with exponential backoff.

use crate::Engine;
use crate::outbox::payload::event_json;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use onramp_config::AmqpConfig;
use onramp_store::{ClaimedDelivery, DeliveryFinish, DeliveryOutcome, DeliveryTarget};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Deliveries published per round (each the head of its onboarding's line).
const BATCH: usize = 256;

/// How long claimed deliveries stay leased: far longer than a round takes.
const LEASE: Duration = Duration::from_secs(60);

/// The first and the longest pause between connection attempts.
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// AMQP delivery mode of messages the broker writes to disk.
const PERSISTENT: u8 = 2;

/// The connection name the broker shows for this publisher (`rabbitmqctl list_connections
/// user_provided_name`).
pub fn connection_name(config: &AmqpConfig) -> String {
    format!("onramp events -> {}", config.exchange)
}

/// Connects, publishes and reconnects until `shutdown`.
pub async fn run(engine: Arc<Engine>, config: AmqpConfig, shutdown: CancellationToken) {
    let mut pause = RECONNECT_MIN;
    engine
        .events_health
        .set_amqp(Some("connecting to the broker".into()));
    loop {
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return,
            connected = connect(&config) => connected,
        };
        match outcome {
            Ok((connection, channel)) => {
                tracing::info!(exchange = %config.exchange, "connected to the AMQP broker");
                engine.events_health.set_amqp(None);
                pause = RECONNECT_MIN;
                let result = publish_loop(&engine, &config, &channel, &shutdown).await;
                let _ = connection
                    .close(200, "onramp stops publishing".into())
                    .await;
                match result {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the AMQP broker; events wait in the outbox");
                        engine
                            .events_health
                            .set_amqp(Some(format!("broker connection lost: {e}")));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?pause, "cannot reach the AMQP broker; events wait in the outbox");
                engine
                    .events_health
                    .set_amqp(Some(format!("broker unreachable: {e}")));
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(RECONNECT_MAX);
    }
}

async fn connect(config: &AmqpConfig) -> lapin::Result<(Connection, Channel)> {
    let properties =
        ConnectionProperties::default().with_connection_name(connection_name(config).into());
    let connection = Connection::connect(&config.url, properties).await?;
    let channel = connection.create_channel().await?;
    channel
        .exchange_declare(
            config.exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok((connection, channel))
}

/// Publishes due deliveries until `shutdown` (`Ok`) or the connection fails (`Err`).
async fn publish_loop(
    engine: &Engine,
    config: &AmqpConfig,
    channel: &Channel,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let mut published = engine.store.signals().subscribe_published();
    let poll = engine.config.worker.poll_interval;
    loop {
        let claimed = match engine
            .store
            .claim_deliveries(&DeliveryTarget::Amqp, BATCH, engine.clock.now(), LEASE)
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim broker deliveries");
                Vec::new()
            }
        };
        if !claimed.is_empty() {
            let (finishes, failure) = publish_batch(engine, config, channel, &claimed).await;
            for (result, finish) in engine
                .store
                .finish_deliveries(finishes.clone())
                .await
                .into_iter()
                .zip(&finishes)
            {
                if let Err(e) = result {
                    tracing::debug!(delivery = %finish.id, error = %e, "could not record a broker delivery; it will be published again");
                }
            }
            if let Some(e) = failure {
                return Err(e);
            }
            continue;
        }
        if !channel.status().connected() {
            return Err("the channel is closed".into());
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = published.changed() => {}
            () = tokio::time::sleep(poll) => {}
        }
    }
}

/// Publishes a batch and waits for the broker's confirms. Deliveries not confirmed are
/// handed back, due at once; the error says why the connection must be renewed.
async fn publish_batch(
    engine: &Engine,
    config: &AmqpConfig,
    channel: &Channel,
    claimed: &[ClaimedDelivery],
) -> (Vec<DeliveryFinish>, Option<String>) {
    let mut failure = None;
    let mut confirms = Vec::with_capacity(claimed.len());
    for delivery in claimed {
        let body = event_json(&delivery.event).to_string();
        let properties = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_content_type("application/json".into())
            .with_message_id(delivery.event.id.as_str().into())
            .with_timestamp(u64::try_from(delivery.event.at.0.div_euclid(1000)).unwrap_or(0));
        let confirm = channel
            .basic_publish(
                config.exchange.as_str().into(),
                delivery.event.kind.as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                properties,
            )
            .await;
        match confirm {
            Ok(confirm) => confirms.push(confirm),
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    let mut finishes = Vec::with_capacity(claimed.len());
    let mut confirms = confirms.into_iter();
    for delivery in claimed {
        let confirmed = match confirms.next() {
            Some(confirm) => confirm.await.map_err(|e| e.to_string()),
            None => Err("not published: the connection failed first".to_owned()),
        };
        let now = engine.clock.now();
        let outcome = match confirmed {
            Ok(confirmation) if confirmation.is_ack() => DeliveryOutcome::Delivered,
            Ok(_) => DeliveryOutcome::Retry {
                at: now.plus(Duration::from_secs(1)),
                error: "the broker refused the message (nack)".into(),
            },
            Err(error) => {
                failure.get_or_insert_with(|| error.clone());
                DeliveryOutcome::Retry { at: now, error }
            }
        };
        finishes.push(DeliveryFinish {
            id: delivery.id.clone(),
            lease: delivery.lease,
            outcome,
            now,
        });
    }
    (finishes, failure)
}
