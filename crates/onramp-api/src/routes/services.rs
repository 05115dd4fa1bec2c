//! `/v1/services`: the external services of this process, with their circuit breakers.

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use axum::Json;
use axum::extract::State;
use onramp_core::auth::Permission;
use onramp_engine::services::ServiceStatus;

/// `GET /v1/services`: every configured service, its breaker (`closed`, `open`,
/// `half_open`), its error rate over the last minute and its last error. Breakers are per
/// process; with several processes, each answers for its own.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<ServiceStatus>>> {
    caller.require(Permission::ReadOperations)?;
    let now = state.engine.clock.now();
    Ok(Json(state.engine.services.statuses(now)))
}
