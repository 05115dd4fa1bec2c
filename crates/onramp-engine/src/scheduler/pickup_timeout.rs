//! Steps that sat in their queue longer than the stage's `pickup_timeout` (no worker took
//! them: the stage is paused, down, or hopelessly behind) are dead-lettered so an operator
//! sees them, instead of waiting forever.

use crate::{Engine, EngineError, completer};
use onramp_core::outcome::Resolution;
use onramp_core::step::StepStatus;
use onramp_core::time::Millis;
use onramp_store::{StepFinish, StepGuard};

/// Dead-letters steps queued too long as of `now`; returns how many.
pub async fn run_once(engine: &Engine, now: Millis) -> Result<usize, EngineError> {
    let mut finishes = Vec::new();
    for (stage, policy) in engine.catalog.stages() {
        let before = now.minus(policy.pickup_timeout);
        for step in engine
            .store
            .unclaimed_since(stage, before, super::BATCH)
            .await?
        {
            finishes.push(StepFinish {
                step,
                guard: StepGuard::Status(StepStatus::Queued),
                resolution: Resolution::DeadLetter(format!(
                    "not picked up within the pickup timeout of {:?}",
                    policy.pickup_timeout
                )),
                now,
                actor: "scheduler".into(),
            });
        }
    }
    if finishes.is_empty() {
        return Ok(0);
    }
    let results = completer::commit(engine, finishes).await;
    Ok(results.iter().filter(|r| r.is_ok()).count())
}
