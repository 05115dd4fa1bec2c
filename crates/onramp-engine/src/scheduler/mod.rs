//! Time-driven duties, each a small module with a `run_once(engine, now)` that tests call
//! directly:
//! - [`lease_rescue`]: running steps whose worker vanished (lease expired) are retried, or
//!   dead-lettered when their attempts are used up;
//! - [`pickup_timeout`]: steps queued longer than their stage's `pickup_timeout` are
//!   dead-lettered;
//! - [`timers`]: delays that are over succeed, signal waits that timed out are dead-lettered;
//! - [`human_tasks`]: unassigned tasks are assigned, overdue ones flagged.
//!
//! With SQLite there is one process, so it is always the leader. (Leader election for several
//! processes comes with the PostgreSQL backend.)

pub mod human_tasks;
pub mod lease_rescue;
pub mod pickup_timeout;
pub mod timers;

use crate::Engine;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Most rows one duty handles per run.
pub const BATCH: usize = 500;

/// Runs every duty each `worker.scheduler_interval` until `shutdown`.
pub async fn run(engine: Arc<Engine>, shutdown: CancellationToken) {
    let interval = engine.config.worker.scheduler_interval;
    loop {
        let now = engine.clock.now();
        if let Err(e) = lease_rescue::run_once(&engine, now).await {
            tracing::warn!(error = %e, "lease rescue failed");
        }
        if let Err(e) = pickup_timeout::run_once(&engine, now).await {
            tracing::warn!(error = %e, "pickup timeout check failed");
        }
        if let Err(e) = timers::run_once(&engine, now).await {
            tracing::warn!(error = %e, "timer check failed");
        }
        if let Err(e) = human_tasks::run_once(&engine, now).await {
            tracing::warn!(error = %e, "human task check failed");
        }
        if let Err(e) = engine.refresh_paused().await {
            tracing::warn!(error = %e, "could not refresh paused stages");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = engine.timers.fired() => {}
            _ = shutdown.cancelled() => break,
        }
    }
}
