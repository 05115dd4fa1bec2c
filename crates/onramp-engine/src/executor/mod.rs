//! Runs one attempt of a step and says what came of it.
//!
//! Executors never touch the store's transitions: they return a
//! [`StepOutcome`](onramp_core::outcome::StepOutcome), and the [`completer`](crate::completer)
//! decides and commits.

pub mod http;
pub mod sim;
pub mod wait;

use crate::Engine;
use onramp_config::TaskKind;
use onramp_core::outcome::StepOutcome;
use onramp_store::ClaimedStep;

/// Runs one attempt of `step`.
pub async fn execute(engine: &Engine, step: &ClaimedStep) -> StepOutcome {
    let Some(task) = engine.catalog.task(&step.task) else {
        return StepOutcome::Permanent(format!(
            "task type `{}` is no longer in the configuration",
            step.task
        ));
    };
    match &task.kind {
        TaskKind::Sim { latency, fail_rate } => sim::run(*latency, *fail_rate).await,
        TaskKind::Http(http_task) => http::run(engine, step, http_task).await,
        other => wait::wait_for(other, engine.clock.now()).unwrap_or_else(|| {
            StepOutcome::Permanent(format!(
                "task kind `{}` is not supported by this version of onramp",
                other.name()
            ))
        }),
    }
}
