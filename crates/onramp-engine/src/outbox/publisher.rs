//! Publication: unpublished outbox events get their place and their deliveries.
//!
//! Woken by every committed change (on PostgreSQL, other processes' too) and by the poll
//! interval; a burst of changes is one wake-up.

use crate::Engine;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::TryRecvError;
use tokio_util::sync::CancellationToken;

/// Events published per transaction.
pub const BATCH: usize = 500;

/// Publishes everything unpublished; returns how many events. Used by the loop and tests.
pub async fn run_once(engine: &Engine) -> Result<usize, crate::EngineError> {
    let amqp = engine.config.events.amqp.is_some();
    let mut total = 0;
    loop {
        let published = engine
            .store
            .publish_events(BATCH, amqp, engine.clock.now())
            .await?;
        total += published.events;
        if published.events < BATCH {
            return Ok(total);
        }
    }
}

/// Publishes until `shutdown`.
pub async fn run(engine: Arc<Engine>, shutdown: CancellationToken) {
    let mut changes = engine.store.signals().subscribe();
    let poll = engine.config.worker.poll_interval;
    loop {
        if let Err(e) = run_once(&engine).await {
            tracing::warn!(error = %e, "could not publish events; trying again");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = changes.recv() => {
                // One publication for the whole burst of changes.
                while let Ok(_) | Err(TryRecvError::Lagged(_)) = changes.try_recv() {}
            }
            () = tokio::time::sleep(poll) => {}
        }
        // A short pause lets a burst of commits gather into one publication.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
