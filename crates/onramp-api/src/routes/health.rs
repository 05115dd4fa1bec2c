//! `/healthz` (the process is up) and `/readyz` (it can reach its database; and whether its
//! events flow).

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::openapi::Unavailable;
use crate::views::{EventsHealth, Health, HealthStatus, Readiness};
use axum::Json;
use axum::extract::State;

/// Always 200 while the process serves requests.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "meta",
    security(()),
    responses((status = 200, description = "The process is up", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: HealthStatus::Ok,
    })
}

/// 200 when the database answers, 503 otherwise. While the AMQP broker is unreachable the
/// process still serves (events wait in the outbox), so the answer stays 200 with
/// `"status": "degraded"` and `"events": {"status": "degraded", "reason": ...}`.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "meta",
    security(()),
    responses(
        (status = 200, description = "The database answers; `degraded` while events wait for the broker", body = Readiness),
        (status = 503, response = Unavailable),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Readiness>> {
    state
        .engine
        .store
        .ping()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(match state.engine.events_health.degraded() {
        None => Readiness {
            status: HealthStatus::Ready,
            events: EventsHealth {
                status: HealthStatus::Ok,
                reason: None,
            },
        },
        Some(reason) => Readiness {
            status: HealthStatus::Degraded,
            events: EventsHealth {
                status: HealthStatus::Degraded,
                reason: Some(reason.to_string()),
            },
        },
    }))
}
