//! Delivering committed events: the outbox dispatcher of every `serve` and `worker` process.
//!
//! Events are written to the outbox in the transaction of the change they describe
//! (`onramp_core::plan`). From there:
//!
//! 1. [`publisher`] gives each event its place in publication order and creates one
//!    delivery per destination — each webhook subscribed to its type, and the broker when
//!    `[events.amqp]` is set (`Store::publish_events`; one process at a time).
//! 2. [`webhook`] runs one sender per endpoint: it claims the due deliveries of that endpoint
//!    (the oldest open one of each onboarding, so an onboarding's events arrive in order),
//!    POSTs them signed per Standard Webhooks, and records the outcome; failures are retried
//!    with backoff for `[events.webhooks] retry_for`, then the delivery is dead until an admin
//!    replays it. Endpoints never wait for each other.
//! 3. [`amqp`] publishes the broker's deliveries to the topic exchange with publisher
//!    confirms, marking them delivered only once confirmed; while the broker is away they
//!    wait in the database, and `/readyz` reports the events as degraded.
//!
//! Every destination gets each event at least once (a crash between the send and the
//! record sends it again), in commit order per onboarding. Deliveries are claimed under a
//! lease like steps, so any number of processes can dispatch side by side.

pub mod amqp;
pub mod payload;
pub mod publisher;
pub mod webhook;

use crate::Engine;
use parking_lot::Mutex;
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How the event destinations of this process are doing, for `/readyz`.
#[derive(Debug, Default)]
pub struct EventsHealth {
    amqp: Mutex<Option<String>>,
}

impl EventsHealth {
    /// Why events are degraded (the broker is unreachable), or `None` when they flow.
    pub fn degraded(&self) -> Option<String> {
        self.amqp.lock().clone()
    }

    pub(crate) fn set_amqp(&self, problem: Option<String>) {
        *self.amqp.lock() = problem;
    }
}

/// Runs the publisher, the webhook senders and (when configured) the broker publisher until
/// `shutdown`.
pub async fn run(engine: Arc<Engine>, shutdown: CancellationToken) {
    let mut tasks = JoinSet::new();
    tasks.spawn(publisher::run(engine.clone(), shutdown.clone()));
    tasks.spawn(webhook::run(engine.clone(), shutdown.clone()));
    if let Some(config) = engine.config.events.amqp.clone() {
        tasks.spawn(amqp::run(engine.clone(), config, shutdown.clone()));
    }
    while tasks.join_next().await.is_some() {}
}
