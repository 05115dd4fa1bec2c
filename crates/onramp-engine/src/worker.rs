//! One claim loop per stage.
//!
//! The loop holds a semaphore with the stage's concurrency. It waits for a free permit, takes
//! every free permit, claims that many steps in one store call, and runs each on its own task.
//! When the queue has less work than permits, it sleeps until the stage is woken (a step was
//! enqueued, a retry came due) or the poll interval passes — polling is the guarantee,
//! wake-ups only cut latency.
//!
//! On shutdown the loop stops claiming and waits for its in-flight steps; steps still running
//! when the runtime's grace period ends are released (deferred without charging the attempt).

use crate::catalog::StagePolicy;
use crate::completer::Completer;
use crate::{Engine, executor};
use onramp_core::StageName;
use onramp_core::outcome::{StepOutcome, resolve};
use onramp_store::{ClaimedStep, StepFinish, StepGuard, StepRef};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Runs the claim loop of `stage` until `shutdown`; in-flight steps are released when
/// `abort` fires.
pub async fn run_stage(
    engine: Arc<Engine>,
    stage: StageName,
    completer: Completer,
    shutdown: CancellationToken,
    abort: CancellationToken,
) {
    let policy = engine.catalog.stage(&stage);
    let slots = Arc::new(Semaphore::new(policy.concurrency));
    let wake = engine.store.signals().stage(&stage);
    let poll = engine.config.worker.poll_interval;
    tracing::debug!(%stage, concurrency = policy.concurrency, "stage worker started");

    loop {
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.cancelled() => break,
        };
        let mut permits = vec![first];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        let wanted = permits.len();
        let claimed = if engine.is_paused(&stage) {
            Vec::new()
        } else {
            match engine
                .store
                .claim(
                    &stage,
                    wanted,
                    engine.clock.now(),
                    policy.visibility_timeout,
                )
                .await
            {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::warn!(%stage, error = %e, "claim failed; will try again");
                    Vec::new()
                }
            }
        };
        let got = claimed.len();
        for step in claimed {
            let Some(permit) = permits.pop() else { break };
            spawn_attempt(&engine, step, &policy, &completer, permit, &abort);
        }
        drop(permits);
        if got < wanted {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }

    // Wait for in-flight attempts; the runtime then drains the completer.
    let _all_back = slots.acquire_many(policy.concurrency as u32).await;
    tracing::debug!(%stage, "stage worker stopped");
}

fn spawn_attempt(
    engine: &Arc<Engine>,
    step: ClaimedStep,
    policy: &StagePolicy,
    completer: &Completer,
    permit: OwnedSemaphorePermit,
    abort: &CancellationToken,
) {
    let (engine, policy, completer, abort) = (
        engine.clone(),
        policy.clone(),
        completer.clone(),
        abort.clone(),
    );
    let span = tracing::info_span!("step", onboarding = %step.onboarding_id, seq = step.seq.0, task = %step.task, attempt = step.attempt);
    tokio::spawn(
        async move {
            let started = std::time::Instant::now();
            let outcome = tokio::select! {
                outcome = executor::execute(&engine, &step) => outcome,
                _ = abort.cancelled() => StepOutcome::Deferred {
                    reason: "released at shutdown".into(),
                    until: engine.clock.now(),
                },
            };
            drop(permit);
            let now = engine.clock.now();
            let resolution = resolve(outcome, step.attempt, &policy.retry, now, rand::random());
            tracing::debug!(?resolution, "attempt finished");
            engine.metrics.step_attempt(
                step.stage.as_str(),
                step.task.as_str(),
                step.compensation,
                &resolution,
                started.elapsed(),
            );
            completer.submit(StepFinish {
                step: StepRef {
                    onboarding_id: step.onboarding_id,
                    seq: step.seq,
                    stage: step.stage,
                },
                guard: StepGuard::Lease(step.lease),
                resolution,
                now,
                actor: "worker".into(),
            });
        }
        .instrument(span),
    );
}
