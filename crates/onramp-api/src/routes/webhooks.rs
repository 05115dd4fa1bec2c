//! `/v1/webhooks` (admin only): endpoints, their deliveries, and replays of dead ones.

use super::parse_id;
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::{JsonBody, Path, Query};
use crate::pagination::{encode_cursor, page_request};
use crate::views;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use onramp_core::auth::Permission;
use onramp_core::delivery::DeliveryStatus;
use onramp_core::{DeliveryId, WebhookId};
use onramp_engine::webhooks::CreateWebhook;
use serde_json::{Value, json};
use std::collections::HashMap;

/// `POST /v1/webhooks`: 201 with the endpoint and its secret (shown this once).
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
    let mut response = (StatusCode::CREATED, Json(views::webhook(&hook, true))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/webhooks/{}", hook.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `GET /v1/webhooks`.
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(Permission::Administer)?;
    let hooks = state.engine.list_webhooks().await?;
    Ok(Json(views::page(
        hooks.iter().map(|h| views::webhook(h, false)).collect(),
        None,
    )))
}

/// `GET /v1/webhooks/{id}`.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::Administer)?;
    let id: WebhookId = parse_id(&id, "webhook")?;
    Ok(Json(views::webhook(
        &state.engine.get_webhook(&id).await?,
        false,
    )))
}

/// `DELETE /v1/webhooks/{id}`: 204.
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

/// `GET /v1/webhooks/{id}/deliveries?status=dead`.
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::Administer)?;
    let id: WebhookId = parse_id(&id, "webhook")?;
    let status = q
        .get("status")
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<DeliveryStatus>()
                .map_err(|e| crate::error::ApiError::invalid("status", e))
        })
        .transpose()?;
    let page = page_request::<DeliveryId>(&q)?;
    let found = state.engine.webhook_deliveries(&id, status, &page).await?;
    Ok(Json(views::page(
        found.items.iter().map(views::delivery).collect(),
        found.next_cursor.map(|c| encode_cursor(&c)),
    )))
}

/// `POST /v1/webhooks/{id}/deliveries/replay`: every dead delivery of the endpoint; 202.
pub async fn replay_all(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(Permission::Administer)?;
    let id: WebhookId = parse_id(&id, "webhook")?;
    let replayed = state.engine.replay_webhook_deliveries(&id, None).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"replayed": replayed}))))
}

/// `POST /v1/webhooks/{id}/deliveries/{delivery_id}/replay`: one dead delivery; 202.
pub async fn replay_one(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, delivery)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(Permission::Administer)?;
    let id: WebhookId = parse_id(&id, "webhook")?;
    let delivery: DeliveryId = parse_id(&delivery, "delivery")?;
    let replayed = state
        .engine
        .replay_webhook_deliveries(&id, Some(&delivery))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"replayed": replayed}))))
}
