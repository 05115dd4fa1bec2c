//! `/v1/stages`: queue counts, pause and resume.

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::Path;
use crate::views;
use axum::Json;
use axum::extract::State;
use onramp_core::auth::Permission;
use onramp_engine::EngineError;
use onramp_store::StageCounts;
use serde_json::Value;

async fn all(state: &AppState) -> ApiResult<Vec<Value>> {
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
            views::stage(&c, policy.concurrency)
        })
        .collect())
}

/// `GET /v1/stages`: every configured stage.
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(Permission::ReadOperations)?;
    Ok(Json(Value::Array(all(&state).await?)))
}

async fn set_paused(
    state: &AppState,
    caller: &Caller,
    name: &str,
    paused: bool,
) -> ApiResult<Json<Value>> {
    state
        .engine
        .set_stage_paused(name, paused, &caller.actor())
        .await?;
    let stages = all(state).await?;
    Ok(Json(
        stages
            .into_iter()
            .find(|s| s["name"] == name)
            .unwrap_or(Value::Null),
    ))
}

/// `POST /v1/stages/{name}/pause`.
pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::Operate)?;
    set_paused(&state, &caller, &name, true).await
}

/// `POST /v1/stages/{name}/resume`.
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::Operate)?;
    set_paused(&state, &caller, &name, false).await
}
