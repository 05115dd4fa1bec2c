//! `/v1/dead-letters`: list, replay, discard, bulk replay of a stage.

use super::parse_id;
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Path, Query};
use crate::pagination::{encode_cursor, page_request};
use crate::views;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use onramp_core::auth::Permission;
use onramp_core::{DeadLetterId, StageName};
use onramp_engine::EngineError;
use serde_json::{Value, json};
use std::collections::HashMap;

/// `GET /v1/dead-letters?stage=`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ReadOperations)?;
    let stage: Option<StageName> = q
        .get("stage")
        .map(|s| {
            s.parse()
                .map_err(|_| ApiError::invalid("stage", "is not a valid stage name"))
        })
        .transpose()?;
    let page = page_request::<DeadLetterId>(&q)?;
    let found = state
        .engine
        .store
        .list_dead_letters(stage.as_ref(), &page)
        .await
        .map_err(EngineError::from)?;
    Ok(Json(views::page(
        found.items.iter().map(views::dead_letter).collect(),
        found.next_cursor.map(|c| encode_cursor(&c)),
    )))
}

/// `POST /v1/dead-letters/{id}/replay`.
pub async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(Permission::Operate)?;
    let id: DeadLetterId = parse_id(&id, "dead letter")?;
    let dead = state
        .engine
        .replay_dead_letter(&id, &caller.actor())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(views::dead_letter(&dead))))
}

/// `POST /v1/dead-letters/{id}/discard`.
pub async fn discard(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::Operate)?;
    let id: DeadLetterId = parse_id(&id, "dead letter")?;
    let dead = state
        .engine
        .discard_dead_letter(&id, &caller.actor())
        .await?;
    Ok(Json(views::dead_letter(&dead)))
}

/// `POST /v1/dead-letters/replay?stage=`.
pub async fn replay_stage(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(Permission::Operate)?;
    let stage = q
        .get("stage")
        .ok_or_else(|| ApiError::invalid("stage", "is required"))?;
    let replayed = state.engine.replay_stage(stage, &caller.actor()).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"stage": stage, "replayed": replayed})),
    ))
}
