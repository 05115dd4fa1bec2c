//! `/v1/services`: the external services of this process, with their circuit breakers.

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::openapi::{Forbidden, Unauthenticated, Unavailable};
use axum::Json;
use axum::extract::State;
use onramp_core::auth::Permission;
use onramp_engine::services::ServiceStatus;

/// `GET /v1/services`: every configured service, its breaker (`closed`, `open`,
/// `half_open`), its error rate over the last minute and its last error. Breakers are per
/// process; with several processes, each answers for its own.
#[utoipa::path(
    get,
    path = "/services",
    operation_id = "list_services",
    tag = "operations",
    responses(
        (status = 200, description = "Every configured service", body = Vec<ServiceStatus>),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<ServiceStatus>>> {
    caller.require(Permission::ReadOperations)?;
    let now = state.engine.clock.now();
    Ok(Json(state.engine.services.statuses(now)))
}
