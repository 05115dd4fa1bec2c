//! `/v1/dead-letters`: list, replay, discard, bulk replay of a stage.

use super::parse_id;
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Path, Query};
use crate::openapi::{BadRequest, Conflict, Forbidden, NotFound, Unauthenticated, Unavailable};
use crate::pagination::{PageParams, encode_cursor};
use crate::views::{DeadLetter, Page, StageReplay};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use onramp_core::auth::Permission;
use onramp_core::{DeadLetterId, StageName};
use onramp_engine::EngineError;
use serde::Deserialize;
use utoipa::IntoParams;

/// The filter of `GET /v1/dead-letters`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterListParams {
    /// Only this stage's dead letters.
    #[param(value_type = Option<StageName>)]
    stage: Option<String>,
}

/// `GET /v1/dead-letters?stage=`.
#[utoipa::path(
    get,
    path = "/dead-letters",
    operation_id = "list_dead_letters",
    tag = "operations",
    params(DeadLetterListParams, PageParams),
    responses(
        (status = 200, description = "A page of dead letters", body = Page<DeadLetter>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<DeadLetterListParams>,
    Query(paging): Query<PageParams>,
) -> ApiResult<Json<Page<DeadLetter>>> {
    caller.require(Permission::ReadOperations)?;
    let stage: Option<StageName> = q
        .stage
        .as_ref()
        .map(|s| {
            s.parse()
                .map_err(|_| ApiError::invalid("stage", "is not a valid stage name"))
        })
        .transpose()?;
    let page = paging.request::<DeadLetterId>()?;
    let found = state
        .engine
        .store
        .list_dead_letters(stage.as_ref(), &page)
        .await
        .map_err(EngineError::from)?;
    Ok(Json(Page::of(
        &found.items,
        found.next_cursor.map(|c| encode_cursor(&c)),
    )))
}

/// `POST /v1/dead-letters/{id}/replay`: the step runs again; 202.
#[utoipa::path(
    post,
    path = "/dead-letters/{id}/replay",
    operation_id = "replay_dead_letter",
    tag = "operations",
    params(("id" = DeadLetterId, Path, description = "The dead letter")),
    responses(
        (status = 202, description = "Replayed", body = DeadLetter),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
pub async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<DeadLetter>)> {
    caller.require(Permission::Operate)?;
    let id: DeadLetterId = parse_id(&id, "dead letter")?;
    let dead = state
        .engine
        .replay_dead_letter(&id, &caller.actor())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(DeadLetter::from(&dead))))
}

/// `POST /v1/dead-letters/{id}/discard`: dropped; the onboarding stays failed.
#[utoipa::path(
    post,
    path = "/dead-letters/{id}/discard",
    operation_id = "discard_dead_letter",
    tag = "operations",
    params(("id" = DeadLetterId, Path, description = "The dead letter")),
    responses(
        (status = 200, description = "Discarded", body = DeadLetter),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
pub async fn discard(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<DeadLetter>> {
    caller.require(Permission::Operate)?;
    let id: DeadLetterId = parse_id(&id, "dead letter")?;
    let dead = state
        .engine
        .discard_dead_letter(&id, &caller.actor())
        .await?;
    Ok(Json(DeadLetter::from(&dead)))
}

/// The stage of `POST /v1/dead-letters/replay`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StageReplayParams {
    /// The stage whose dead letters to replay.
    #[param(value_type = StageName, required = true)]
    stage: Option<String>,
}

/// `POST /v1/dead-letters/replay?stage=`: every dead letter of a stage; 202.
#[utoipa::path(
    post,
    path = "/dead-letters/replay",
    operation_id = "replay_stage_dead_letters",
    tag = "operations",
    params(StageReplayParams),
    responses(
        (status = 202, description = "Replayed", body = StageReplay),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn replay_stage(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<StageReplayParams>,
) -> ApiResult<(StatusCode, Json<StageReplay>)> {
    caller.require(Permission::Operate)?;
    let stage = q
        .stage
        .ok_or_else(|| ApiError::invalid("stage", "is required"))?;
    let replayed = state.engine.replay_stage(&stage, &caller.actor()).await?;
    Ok((StatusCode::ACCEPTED, Json(StageReplay { stage, replayed })))
}
