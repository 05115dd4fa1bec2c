//! Human tasks over time: assigns what could not be assigned before (a CSR came back from
//! time off, or another process freed capacity) and flags open tasks past their `due_by`
//! (`task.overdue`). Assignment is also run at once whenever a task opens or closes or a CSR
//! changes; this run is the safety net, not the main path.

use crate::{Engine, EngineError};
use onramp_core::time::Millis;

/// Assigns what it can and flags overdue tasks; returns how many were flagged.
pub async fn run_once(engine: &Engine, now: Millis) -> Result<usize, EngineError> {
    engine.store.assign_tasks(now, super::BATCH).await?;
    let overdue = engine.store.mark_overdue(now, super::BATCH).await?;
    engine.metrics.tasks_flagged_overdue(overdue.len());
    for task in &overdue {
        tracing::info!(task = %task.id, onboarding = %task.onboarding_id, "human task overdue");
    }
    Ok(overdue.len())
}
