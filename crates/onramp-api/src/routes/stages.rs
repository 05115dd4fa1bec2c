//! `/v1/stages`: queue counts, pause and resume.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::Path;
use crate::openapi::{BadRequest, Forbidden, NotFound, Unauthenticated, Unavailable};
use crate::views::Stage;
use axum::Json;
use axum::extract::State;
use onramp_core::StageName;
use onramp_core::auth::Permission;
use onramp_engine::EngineError;
use onramp_store::StageCounts;

async fn all(state: &AppState) -> ApiResult<Vec<Stage>> {
    let counts = state
        .engine
        .store
        .stage_counts()
        .await
        .map_err(EngineError::from)?;
    Ok(state
        .engine
        .catalog
        .stages()
        .map(|(name, policy)| {
            let c = counts
                .iter()
                .find(|c| &c.stage == name)
                .cloned()
                .unwrap_or(StageCounts {
                    stage: name.clone(),
                    queued: 0,
                    running: 0,
                    retrying: 0,
                    dead: 0,
                    paused: false,
                });
            Stage::new(&c, policy.concurrency)
        })
        .collect())
}

/// `GET /v1/stages`: every configured stage.
#[utoipa::path(
    get,
    path = "/stages",
    operation_id = "list_stages",
    tag = "operations",
    responses(
        (status = 200, description = "Every configured stage with its queue counts", body = Vec<Stage>),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<Stage>>> {
    caller.require(Permission::ReadOperations)?;
    Ok(Json(all(&state).await?))
}

async fn set_paused(
    state: &AppState,
    caller: &Caller,
    name: &str,
    paused: bool,
) -> ApiResult<Json<Stage>> {
    state
        .engine
        .set_stage_paused(name, paused, &caller.actor())
        .await?;
    all(state)
        .await?
        .into_iter()
        .find(|s| s.name.as_str() == name)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("stage `{name}` not found")))
}

/// `POST /v1/stages/{name}/pause`: its workers claim nothing until resumed.
#[utoipa::path(
    post,
    path = "/stages/{name}/pause",
    operation_id = "pause_stage",
    tag = "operations",
    params(("name" = StageName, Path, description = "The stage")),
    responses(
        (status = 200, description = "The stage, paused", body = Stage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Stage>> {
    caller.require(Permission::Operate)?;
    set_paused(&state, &caller, &name, true).await
}

/// `POST /v1/stages/{name}/resume`.
#[utoipa::path(
    post,
    path = "/stages/{name}/resume",
    operation_id = "resume_stage",
    tag = "operations",
    params(("name" = StageName, Path, description = "The stage")),
    responses(
        (status = 200, description = "The stage, running", body = Stage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Stage>> {
    caller.require(Permission::Operate)?;
    set_paused(&state, &caller, &name, false).await
}
