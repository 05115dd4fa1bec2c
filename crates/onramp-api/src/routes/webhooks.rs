//! `/v1/webhooks` (admin only): endpoints, their deliveries, and replays of dead ones.

use super::parse_id;
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::{JsonBody, Path, Query};
use crate::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthenticated, Unavailable,
    UnsupportedMediaType,
};
use crate::pagination::{PageParams, encode_cursor};
use crate::views::{Delivery, NewWebhook, Page, Replayed, Webhook};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use onramp_core::auth::Permission;
use onramp_core::delivery::DeliveryStatus;
use onramp_core::{DeliveryId, WebhookId};
use onramp_engine::webhooks::CreateWebhook;
use serde::Deserialize;
use utoipa::IntoParams;

/// `POST /v1/webhooks`: 201 with the endpoint and its secret (shown this once).
#[utoipa::path(
    post,
    path = "/webhooks",
    operation_id = "create_webhook",
    tag = "events",
    request_body = CreateWebhook,
    responses(
        (status = 201, description = "Created; the secret is shown this once", body = NewWebhook,
            headers(("Location" = String, description = "`/v1/webhooks/{id}`")),
            links(
                ("get" = (operation_id = "get_webhook", parameters(("id" = "$response.body#/id")))),
                ("delete" = (operation_id = "delete_webhook", parameters(("id" = "$response.body#/id")))),
                ("deliveries" = (operation_id = "list_webhook_deliveries", parameters(("id" = "$response.body#/id")))),
                ("replay" = (operation_id = "replay_webhook_deliveries", parameters(("id" = "$response.body#/id")))),
            )),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<CreateWebhook>,
) -> ApiResult<Response> {
    caller.require(Permission::Administer)?;
    let hook = state
        .engine
        .create_webhook(body.value, &caller.actor())
        .await?;
    let mut response = (StatusCode::CREATED, Json(NewWebhook::from(&hook))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/webhooks/{}", hook.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `GET /v1/webhooks`.
#[utoipa::path(
    get,
    path = "/webhooks",
    operation_id = "list_webhooks",
    tag = "events",
    responses(
        (status = 200, description = "Every endpoint, in one page (without secrets)", body = Page<Webhook>),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Page<Webhook>>> {
    caller.require(Permission::Administer)?;
    let hooks = state.engine.list_webhooks().await?;
    Ok(Json(Page::of(&hooks, None)))
}

/// `GET /v1/webhooks/{id}`.
#[utoipa::path(
    get,
    path = "/webhooks/{id}",
    operation_id = "get_webhook",
    tag = "events",
    params(("id" = WebhookId, Path, description = "The endpoint")),
    responses(
        (status = 200, description = "The endpoint (without its secret)", body = Webhook),
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
) -> ApiResult<Json<Webhook>> {
    caller.require(Permission::Administer)?;
    let id: WebhookId = parse_id(&id, "webhook")?;
    Ok(Json(Webhook::from(&state.engine.get_webhook(&id).await?)))
}

/// `DELETE /v1/webhooks/{id}`: 204.
#[utoipa::path(
    delete,
    path = "/webhooks/{id}",
    operation_id = "delete_webhook",
    tag = "events",
    params(("id" = WebhookId, Path, description = "The endpoint")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Permission::Administer)?;
    let id: WebhookId = parse_id(&id, "webhook")?;
    state.engine.delete_webhook(&id, &caller.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The filter of an endpoint's deliveries.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryListParams {
    /// Only deliveries in this status.
    #[param(value_type = Option<DeliveryStatus>)]
    status: Option<String>,
}

/// `GET /v1/webhooks/{id}/deliveries?status=dead`.
#[utoipa::path(
    get,
    path = "/webhooks/{id}/deliveries",
    operation_id = "list_webhook_deliveries",
    tag = "events",
    params(("id" = WebhookId, Path, description = "The endpoint"), DeliveryListParams, PageParams),
    responses(
        (status = 200, description = "A page of the endpoint's deliveries", body = Page<Delivery>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<DeliveryListParams>,
    Query(paging): Query<PageParams>,
) -> ApiResult<Json<Page<Delivery>>> {
    caller.require(Permission::Administer)?;
    let id: WebhookId = parse_id(&id, "webhook")?;
    let status = q
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<DeliveryStatus>()
                .map_err(|e| crate::error::ApiError::invalid("status", e))
        })
        .transpose()?;
    let page = paging.request::<DeliveryId>()?;
    let found = state.engine.webhook_deliveries(&id, status, &page).await?;
    Ok(Json(Page::of(
        &found.items,
        found.next_cursor.map(|c| encode_cursor(&c)),
    )))
}

/// `POST /v1/webhooks/{id}/deliveries/replay`: every dead delivery of the endpoint; 202.
#[utoipa::path(
    post,
    path = "/webhooks/{id}/deliveries/replay",
    operation_id = "replay_webhook_deliveries",
    tag = "events",
    params(("id" = WebhookId, Path, description = "The endpoint")),
    responses(
        (status = 202, description = "Dead deliveries queued again", body = Replayed),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn replay_all(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Replayed>)> {
    caller.require(Permission::Administer)?;
    let id: WebhookId = parse_id(&id, "webhook")?;
    let replayed = state.engine.replay_webhook_deliveries(&id, None).await?;
    Ok((StatusCode::ACCEPTED, Json(Replayed { replayed })))
}

/// `POST /v1/webhooks/{id}/deliveries/{delivery}/replay`: one dead delivery; 202.
#[utoipa::path(
    post,
    path = "/webhooks/{id}/deliveries/{delivery}/replay",
    operation_id = "replay_webhook_delivery",
    tag = "events",
    params(
        ("id" = WebhookId, Path, description = "The endpoint"),
        ("delivery" = DeliveryId, Path, description = "The delivery"),
    ),
    responses(
        (status = 202, description = "Queued again", body = Replayed),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
pub async fn replay_one(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, delivery)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Replayed>)> {
    caller.require(Permission::Administer)?;
    let id: WebhookId = parse_id(&id, "webhook")?;
    let delivery: DeliveryId = parse_id(&delivery, "delivery")?;
    let replayed = state
        .engine
        .replay_webhook_deliveries(&id, Some(&delivery))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Replayed { replayed })))
}
