//! Waits that end by themselves: a `delay` step's time is up (it succeeds), a `signal` step's
//! `timeout` passed without its signal (it is dead-lettered; a replay waits again).
//!
//! The wait's end is the waiting step's `available_at`, so it survives restarts; this duty
//! finds every due one each run, and in-process timers run it at the exact instant.

use crate::{Engine, EngineError, completer};
use onramp_config::TaskKind;
use onramp_core::outcome::Resolution;
use onramp_core::step::StepStatus;
use onramp_core::time::Millis;
use onramp_store::{StepFinish, StepGuard};
use serde_json::json;

/// Ends every wait due by `now`; returns how many.
pub async fn run_once(engine: &Engine, now: Millis) -> Result<usize, EngineError> {
    let due = engine.store.due_waits(now, super::BATCH).await?;
    let finishes: Vec<StepFinish> = due
        .into_iter()
        .map(|w| {
            let resolution = match engine.catalog.task(&w.task).map(|t| &t.kind) {
                Some(TaskKind::Signal { signal, .. }) => Resolution::DeadLetter(format!(
                    "signal `{signal}` did not arrive by {}",
                    w.until.to_rfc3339()
                )),
                Some(TaskKind::Delay { .. }) => {
                    Resolution::Succeed(json!({"waited_until": w.until.to_rfc3339()}))
                }
                _ if w.kind == "delay" => {
                    Resolution::Succeed(json!({"waited_until": w.until.to_rfc3339()}))
                }
                _ => Resolution::DeadLetter(format!("wait timed out at {}", w.until.to_rfc3339())),
            };
            StepFinish {
                step: w.step,
                guard: StepGuard::Status(StepStatus::Waiting),
                resolution,
                now,
                actor: "scheduler".into(),
            }
        })
        .collect();
    let n = finishes.len();
    if n > 0 {
        completer::commit(engine, finishes).await;
    }
    Ok(n)
}
