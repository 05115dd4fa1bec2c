//! `/v1/onboardings`: create, read, list, status, audit, retry, cancel.

use super::onboarding_id;
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, OptionalJsonBody, Path, Query};
use crate::pagination::{encode_cursor, page_request};
use crate::views;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use onramp_core::OnboardingId;
use onramp_core::auth::Permission;
use onramp_engine::commands::{CreateOnboarding, Idempotency};
use onramp_store::{Created, OnboardingFilter};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

/// `POST /v1/onboardings`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody<CreateOnboarding>,
) -> ApiResult<Response> {
    caller.require(Permission::CreateOnboardings)?;
    let idempotency = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(Idempotency {
            key: v
                .to_str()
                .map_err(|_| ApiError::invalid("Idempotency-Key", "must be printable ASCII"))?
                .to_owned(),
            scope: caller.token.name.clone(),
            body: body.raw.clone(),
        }),
    };
    let created = state
        .engine
        .create_onboarding(body.value, idempotency, &caller.actor())
        .await?;
    let (record, replayed) = match created {
        Created::New(r) => (r, false),
        Created::Replayed(r) => (r, true),
    };
    tracing::Span::current().record("onboarding", tracing::field::display(&record.id));
    let mut response =
        (StatusCode::CREATED, Json(views::onboarding(&record, true))).into_response();
    let location = format!("/v1/onboardings/{}", record.id);
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// `GET /v1/onboardings`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ReadOnboardings)?;
    let filter = OnboardingFilter {
        status: q
            .get("status")
            .map(|s| {
                s.parse()
                    .map_err(|e: String| ApiError::invalid("status", e))
            })
            .transpose()?,
        stage: q
            .get("stage")
            .map(|s| {
                s.parse()
                    .map_err(|_| ApiError::invalid("stage", "is not a valid stage name"))
            })
            .transpose()?,
        template: q
            .get("template")
            .map(|s| {
                s.parse()
                    .map_err(|_| ApiError::invalid("template", "is not a valid template name"))
            })
            .transpose()?,
        q: q.get("q").filter(|s| !s.is_empty()).cloned(),
    };
    let page = page_request::<OnboardingId>(&q)?;
    let found = state
        .engine
        .store
        .list_onboardings(&filter, &page)
        .await
        .map_err(onramp_engine::EngineError::from)?;
    Ok(Json(views::page(
        found
            .items
            .iter()
            .map(|o| views::onboarding(o, false))
            .collect(),
        found.next_cursor.map(|c| encode_cursor(&c)),
    )))
}

async fn load(state: &AppState, raw: &str) -> ApiResult<onramp_store::OnboardingRecord> {
    let id = onboarding_id(raw)?;
    Ok(state
        .engine
        .store
        .get_onboarding(&id)
        .await
        .map_err(onramp_engine::EngineError::from)?)
}

/// `GET /v1/onboardings/{id}`.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ReadOnboardings)?;
    Ok(Json(views::onboarding(&load(&state, &id).await?, true)))
}

/// `GET /v1/onboardings/{id}/status`.
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ReadOnboardings)?;
    Ok(Json(views::status(&load(&state, &id).await?)))
}

/// `GET /v1/onboardings/{id}/audit`.
pub async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ReadOnboardings)?;
    let id = onboarding_id(&id)?;
    let entries = state
        .engine
        .store
        .audit_entries(&id)
        .await
        .map_err(onramp_engine::EngineError::from)?;
    Ok(Json(views::page(
        entries.iter().map(views::audit_entry).collect(),
        None,
    )))
}

/// `POST /v1/onboardings/{id}/retry`.
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(Permission::OperateOnboardings)?;
    let id = onboarding_id(&id)?;
    let record = state.engine.retry_onboarding(&id, &caller.actor()).await?;
    Ok((StatusCode::ACCEPTED, Json(views::onboarding(&record, true))))
}

/// The body of a cancel.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /v1/onboardings/{id}/cancel`.
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<CancelBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(Permission::OperateOnboardings)?;
    let id = onboarding_id(&id)?;
    let reason = body.reason.unwrap_or_default();
    let record = state
        .engine
        .cancel_onboarding(&id, &reason, &caller.actor())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(views::onboarding(&record, true))))
}
