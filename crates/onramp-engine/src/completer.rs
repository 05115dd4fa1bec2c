//! Commits decisions on steps, many per transaction.
//!
//! Workers send each attempt's decision here. The completer takes everything waiting (up to
//! [`MAX_BATCH`]) and hands it to the store at once, so completions share commits (River's
//! batch completer). A worker frees its concurrency slot as soon as the attempt has run:
//! concurrency bounds the work done against external services, and a decision waiting for
//! its commit does none, so the next claim can share the commit with it.
//!
//! Up to [`MAX_IN_FLIGHT`] batches commit at once: while one waits for its commit's flush,
//! the next gathers decisions and does its round trips. More than two made smaller batches
//! and cost more than they overlapped: on PostgreSQL, W1 ran at about 1,550 steps/s with
//! eight and 1,810 with two (SQLite, whose single writer merges concurrent batches anyway,
//! showed no difference beyond its noise). Concurrent batches cannot deadlock: each store
//! finishes a batch in onboarding-id order.

use crate::Engine;
use onramp_core::outcome::Resolution;
use onramp_store::{StepFinish, StoreError, StoreResult};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};

/// Most decisions committed together.
pub const MAX_BATCH: usize = 256;

/// Times a decision is committed again while the store is unavailable (0.1 s, doubling:
/// about 3 s in all).
const OUTAGE_RETRIES: usize = 5;

/// Most batches committing at once.
pub const MAX_IN_FLIGHT: usize = 2;

/// A handle for submitting decisions.
#[derive(Debug, Clone)]
pub struct Completer {
    tx: mpsc::UnboundedSender<StepFinish>,
}

impl Completer {
    /// Starts the completer; it stops once every handle is dropped and the queue is drained.
    pub fn start(engine: Arc<Engine>) -> (Completer, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(engine, rx));
        (Completer { tx }, task)
    }

    /// Queues a decision.
    pub fn submit(&self, finish: StepFinish) {
        if let Err(e) = self.tx.send(finish) {
            // Only during shutdown; the lease will expire and the step be retried.
            tracing::warn!(step = ?e.0.step, "completer stopped; decision dropped");
        }
    }
}

async fn run(engine: Arc<Engine>, mut rx: mpsc::UnboundedReceiver<StepFinish>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut in_flight = JoinSet::new();
    loop {
        // Take a slot before reading, so decisions pile up (and batch) while all are busy.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let mut batch = Vec::with_capacity(MAX_BATCH);
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            break;
        }
        let engine = engine.clone();
        in_flight.spawn(async move {
            commit(&engine, batch).await;
            drop(slot);
        });
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}

/// Commits decisions and arranges wake-ups for steps that become claimable later. Returns
/// each decision's result in order.
pub async fn commit(engine: &Engine, finishes: Vec<StepFinish>) -> Vec<StoreResult<()>> {
    let wakes: Vec<_> = finishes
        .iter()
        .map(|f| match &f.resolution {
            Resolution::ScheduleRetry { at, .. } => Some(*at),
            Resolution::Defer { until, .. } => Some(*until),
            _ => None,
        })
        .collect();
    let waits: Vec<_> = finishes
        .iter()
        .map(|f| match &f.resolution {
            Resolution::Wait(wait) => Some(wait.clone()),
            _ => None,
        })
        .collect();
    let refs: Vec<_> = finishes.iter().map(|f| f.step.clone()).collect();
    let results = finish_riding_out_outages(engine, finishes).await;
    let mut opened_tasks = false;
    for (((result, wake_at), step), wait) in results.iter().zip(wakes).zip(refs).zip(waits) {
        match result {
            Ok(()) => {
                if let Some(at) = wake_at {
                    schedule_wake(engine, &step, at);
                }
                if let Some(wait) = wait {
                    opened_tasks |= wait.task.is_some();
                    after_wait(engine, &step, wait).await;
                }
            }
            Err(StoreError::Conflict(why)) => {
                tracing::debug!(onboarding = %step.onboarding_id, seq = step.seq.0, %why, "decision refused: the step moved on");
            }
            Err(e) => {
                tracing::error!(onboarding = %step.onboarding_id, seq = step.seq.0, error = %e, "could not commit a step decision; its lease will expire and it will run again");
            }
        }
    }
    if opened_tasks {
        engine.assign_tasks().await;
    }
    results
}

/// Once a wait is committed: a signal that arrived early is taken at once, and the end of a
/// delay or timeout is timed in this process (the scheduler's timers catch it after a
/// restart).
async fn after_wait(
    engine: &Engine,
    step: &onramp_store::StepRef,
    wait: onramp_core::outcome::WaitFor,
) {
    if let Some(signal) = &wait.signal {
        let now = engine.clock.now();
        if let Err(e) = engine
            .store
            .take_signal(&step.onboarding_id, step.seq, signal, now, "engine")
            .await
        {
            tracing::warn!(onboarding = %step.onboarding_id, error = %e, "could not take an early signal; the scheduler will");
        }
    }
    if let Some(until) = wait.until {
        engine.timers.at(until);
    }
}

/// Finishes the steps, trying again those that failed because the database was unreachable
/// (a restart, a killed connection), for a few seconds. Without this they would wait for
/// their lease to expire and run again. Trying again is safe: a decision whose step moved on
/// meanwhile (or whose first try did commit) is refused by its guard.
async fn finish_riding_out_outages(
    engine: &Engine,
    finishes: Vec<StepFinish>,
) -> Vec<StoreResult<()>> {
    let mut results = engine.store.finish_steps(finishes.clone()).await;
    let mut delay = Duration::from_millis(100);
    for _ in 0..OUTAGE_RETRIES {
        let unavailable: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, Err(StoreError::Unavailable(_))))
            .map(|(i, _)| i)
            .collect();
        if unavailable.is_empty() {
            break;
        }
        tracing::warn!(count = unavailable.len(), retry_in = ?delay, "the store is unavailable; will commit these decisions again");
        tokio::time::sleep(delay).await;
        delay *= 2;
        let again = engine
            .store
            .finish_steps(unavailable.iter().map(|&i| finishes[i].clone()).collect())
            .await;
        for (i, result) in unavailable.into_iter().zip(again) {
            results[i] = result;
        }
    }
    results
}

/// Wakes the step's stage when it becomes claimable (polling would find it too, later).
fn schedule_wake(engine: &Engine, step: &onramp_store::StepRef, at: onramp_core::time::Millis) {
    let stage = step.stage.clone();
    let delay = at.since(engine.clock.now());
    let signals = engine.store.signals();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        signals.wake(&stage);
    });
}
