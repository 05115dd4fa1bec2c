//! `/v1/onboardings`: create, read, list, status, audit, retry, cancel.

use super::onboarding_id;
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, OptionalJsonBody, Path, Query};
use crate::openapi::{
    BadRequest, Conflict, Forbidden, IdempotencyKeyReused, NotFound, PayloadTooLarge,
    Unauthenticated, Unavailable, UnsupportedMediaType,
};
use crate::pagination::{PageParams, encode_cursor};
use crate::views::{self, AuditEntry, Onboarding, OnboardingSummary, Page};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use onramp_core::OnboardingId;
use onramp_core::auth::Permission;
use onramp_core::onboarding::OnboardingStatus;
use onramp_engine::commands::{CreateOnboarding, Idempotency};
use onramp_store::{Created, OnboardingFilter};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

/// `POST /v1/onboardings`: 201 with the onboarding; with a known `Idempotency-Key` and the
/// same body, the original response again.
#[utoipa::path(
    post,
    path = "/onboardings",
    operation_id = "create_onboarding",
    tag = "onboardings",
    request_body = CreateOnboarding,
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false, max_length = 255,
            description = "Makes a retried create safe: the same key and body answer the original 201 (with `Idempotent-Replayed: true`); the same key with another body is refused with 422"),
    ),
    responses(
        (status = 201, description = "Created, with its steps", body = Onboarding,
            headers(
                ("Location" = String, description = "`/v1/onboardings/{id}`"),
                ("Idempotent-Replayed" = Option<String>, description = "`true` on a replayed response"),
            ),
            links(
                ("get" = (operation_id = "get_onboarding", parameters(("id" = "$response.body#/id")))),
                ("status" = (operation_id = "get_onboarding_status", parameters(("id" = "$response.body#/id")))),
                ("audit" = (operation_id = "get_onboarding_audit", parameters(("id" = "$response.body#/id")))),
                ("retry" = (operation_id = "retry_onboarding", parameters(("id" = "$response.body#/id")))),
                ("cancel" = (operation_id = "cancel_onboarding", parameters(("id" = "$response.body#/id")))),
                ("signal" = (operation_id = "send_signal", parameters(("id" = "$response.body#/id")))),
            )),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = IdempotencyKeyReused),
        (status = 503, response = Unavailable),
    )
)]
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
    let mut response = (StatusCode::CREATED, Json(Onboarding::from(&record))).into_response();
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

/// The filters of `GET /v1/onboardings`. Text until parsed, so a bad value gets a message
/// naming the parameter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OnboardingListParams {
    /// Only onboardings in this status.
    #[param(value_type = Option<OnboardingStatus>)]
    status: Option<String>,
    /// Only onboardings whose current step is in this stage.
    #[param(value_type = Option<onramp_core::StageName>)]
    stage: Option<String>,
    /// Only onboardings started from this template.
    #[param(value_type = Option<onramp_core::TemplateName>)]
    template: Option<String>,
    /// Text in the customer's name, e-mail or external reference.
    q: Option<String>,
}

/// `GET /v1/onboardings`: newest first.
#[utoipa::path(
    get,
    path = "/onboardings",
    operation_id = "list_onboardings",
    tag = "onboardings",
    params(OnboardingListParams, PageParams),
    responses(
        (status = 200, description = "A page of onboardings, without their steps", body = Page<OnboardingSummary>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<OnboardingListParams>,
    Query(paging): Query<PageParams>,
) -> ApiResult<Json<Page<OnboardingSummary>>> {
    caller.require(Permission::ReadOnboardings)?;
    let filter = OnboardingFilter {
        status: q
            .status
            .as_ref()
            .map(|s| {
                s.parse()
                    .map_err(|e: String| ApiError::invalid("status", e))
            })
            .transpose()?,
        stage: q
            .stage
            .as_ref()
            .map(|s| {
                s.parse()
                    .map_err(|_| ApiError::invalid("stage", "is not a valid stage name"))
            })
            .transpose()?,
        template: q
            .template
            .as_ref()
            .map(|s| {
                s.parse()
                    .map_err(|_| ApiError::invalid("template", "is not a valid template name"))
            })
            .transpose()?,
        q: q.q.filter(|s| !s.is_empty()),
    };
    let page = paging.request::<OnboardingId>()?;
    let found = state
        .engine
        .store
        .list_onboardings(&filter, &page)
        .await
        .map_err(onramp_engine::EngineError::from)?;
    Ok(Json(Page::of(
        &found.items,
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
#[utoipa::path(
    get,
    path = "/onboardings/{id}",
    operation_id = "get_onboarding",
    tag = "onboardings",
    params(("id" = OnboardingId, Path, description = "The onboarding")),
    responses(
        (status = 200, description = "The onboarding with its steps", body = Onboarding),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Onboarding>> {
    caller.require(Permission::ReadOnboardings)?;
    Ok(Json(Onboarding::from(&load(&state, &id).await?)))
}

/// `GET /v1/onboardings/{id}/status`.
#[utoipa::path(
    get,
    path = "/onboardings/{id}/status",
    operation_id = "get_onboarding_status",
    tag = "onboardings",
    params(("id" = OnboardingId, Path, description = "The onboarding")),
    responses(
        (status = 200, description = "Where the onboarding is", body = views::Status),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<views::Status>> {
    caller.require(Permission::ReadOnboardings)?;
    Ok(Json(views::Status::from(&load(&state, &id).await?)))
}

/// `GET /v1/onboardings/{id}/audit`: the whole chain, oldest first, in one page.
#[utoipa::path(
    get,
    path = "/onboardings/{id}/audit",
    operation_id = "get_onboarding_audit",
    tag = "onboardings",
    params(("id" = OnboardingId, Path, description = "The onboarding")),
    responses(
        (status = 200, description = "Its audit entries in order (`next_cursor` is null)", body = Page<AuditEntry>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    caller.require(Permission::ReadOnboardings)?;
    let id = onboarding_id(&id)?;
    let entries = state
        .engine
        .store
        .audit_entries(&id)
        .await
        .map_err(onramp_engine::EngineError::from)?;
    Ok(Json(Page::of(&entries, None)))
}

/// `POST /v1/onboardings/{id}/retry`: `failed` -> `running`, re-queueing the dead step.
#[utoipa::path(
    post,
    path = "/onboardings/{id}/retry",
    operation_id = "retry_onboarding",
    tag = "onboardings",
    params(("id" = OnboardingId, Path, description = "The onboarding")),
    responses(
        (status = 202, description = "Running again", body = Onboarding),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Onboarding>)> {
    caller.require(Permission::OperateOnboardings)?;
    let id = onboarding_id(&id)?;
    let record = state.engine.retry_onboarding(&id, &caller.actor()).await?;
    Ok((StatusCode::ACCEPTED, Json(Onboarding::from(&record))))
}

/// The body of a cancel (optional: an empty body is no reason).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    /// Why, for the audit log.
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /v1/onboardings/{id}/cancel`: -> `cancelling` -> `cancelled`, compensating the
/// steps that succeeded.
#[utoipa::path(
    post,
    path = "/onboardings/{id}/cancel",
    operation_id = "cancel_onboarding",
    tag = "onboardings",
    params(("id" = OnboardingId, Path, description = "The onboarding")),
    request_body(content = Option<CancelBody>, description = "Optional"),
    responses(
        (status = 202, description = "Cancelling", body = Onboarding),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<CancelBody>,
) -> ApiResult<(StatusCode, Json<Onboarding>)> {
    caller.require(Permission::OperateOnboardings)?;
    let id = onboarding_id(&id)?;
    let reason = body.reason.unwrap_or_default();
    let record = state
        .engine
        .cancel_onboarding(&id, &reason, &caller.actor())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Onboarding::from(&record))))
}
