//! `sim` steps: built-in simulated work for the demo, tests and benchmarks.

use onramp_core::outcome::StepOutcome;
use serde_json::json;
use std::time::Duration;

/// Waits `latency`, then fails (retryably) with probability `fail_rate`.
pub async fn run(latency: Duration, fail_rate: f64) -> StepOutcome {
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if fail_rate > 0.0 && rand::random::<f64>() < fail_rate {
        StepOutcome::Retry {
            error: "simulated failure".into(),
            after: None,
        }
    } else {
        json_ok(latency)
    }
}

fn json_ok(latency: Duration) -> StepOutcome {
    StepOutcome::Succeeded(json!({"simulated": true, "latency_ms": latency.as_millis() as u64}))
}
