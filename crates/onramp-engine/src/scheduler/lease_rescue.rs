//! Steps whose lease expired: their worker died or hung. The attempt counts; the step is
//! retried at once, or dead-lettered if that was its last attempt. The finish is guarded by
//! the expired lease, so a worker that comes back late cannot also record its result.

use crate::{Engine, EngineError, completer};
use onramp_core::outcome::Resolution;
use onramp_core::time::Millis;
use onramp_store::{StepFinish, StepGuard, StepRef};

/// Rescues expired leases as of `now`; returns how many steps were handed back.
pub async fn run_once(engine: &Engine, now: Millis) -> Result<usize, EngineError> {
    let expired = engine.store.expired_leases(now, super::BATCH).await?;
    if expired.is_empty() {
        return Ok(0);
    }
    let finishes: Vec<StepFinish> = expired
        .into_iter()
        .map(|step| {
            let policy = engine.catalog.stage(&step.stage);
            let error = format!(
                "lease expired: no result from the worker within {:?}",
                policy.visibility_timeout
            );
            let resolution = if step.attempt >= policy.retry.max_attempts {
                Resolution::DeadLetter(format!("{error} (gave up after {} attempts)", step.attempt))
            } else {
                Resolution::ScheduleRetry { error, at: now }
            };
            tracing::warn!(onboarding = %step.onboarding_id, seq = step.seq.0, attempt = step.attempt, "lease expired; handing the step back");
            StepFinish {
                step: StepRef {
                    onboarding_id: step.onboarding_id,
                    seq: step.seq,
                    stage: step.stage,
                },
                guard: StepGuard::Lease(step.lease),
                resolution,
                now,
                actor: "scheduler".into(),
            }
        })
        .collect();
    let results = completer::commit(engine, finishes).await;
    Ok(results.iter().filter(|r| r.is_ok()).count())
}
