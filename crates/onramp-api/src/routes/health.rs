//! `/healthz` (the process is up) and `/readyz` (it can reach its database; and whether its
//! events flow).

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

/// Always 200 while the process serves requests.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// 200 when the database answers, 503 otherwise. While the AMQP broker is unreachable the
/// process still serves (events wait in the outbox), so the answer stays 200 with
/// `"status": "degraded"` and `"events": {"status": "degraded", "reason": ...}`.
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    state
        .engine
        .store
        .ping()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(match state.engine.events_health.degraded() {
        None => json!({"status": "ready", "events": {"status": "ok"}}),
        Some(reason) => json!({
            "status": "degraded",
            "events": {"status": "degraded", "reason": reason},
        }),
    }))
}
