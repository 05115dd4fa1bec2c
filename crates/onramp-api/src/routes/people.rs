//! `/v1/csrs`, `/v1/tasks` and `/v1/onboardings/{id}/signals/{name}`.

use super::{onboarding_id, parse_id};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, OptionalJsonBody, Path, Query};
use crate::pagination::{encode_cursor, page_request};
use crate::views;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use onramp_core::auth::{Permission, Role};
use onramp_core::time::Millis;
use onramp_core::{CsrId, TaskId};
use onramp_engine::people::{CsrInput, SignalInput, TaskActor};
use onramp_store::{SignalReceipt, TaskFilter};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

fn store_err(e: onramp_store::StoreError) -> ApiError {
    onramp_engine::EngineError::from(e).into()
}

/// `POST /v1/csrs`.
pub async fn create_csr(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<CsrInput>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(Permission::Administer)?;
    let csr = state.engine.create_csr(body.value, &caller.actor()).await?;
    Ok((StatusCode::CREATED, Json(views::csr(&csr))))
}

/// `GET /v1/csrs`.
pub async fn list_csrs(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ReadTasks)?;
    let page = page_request::<CsrId>(&q)?;
    let found = state
        .engine
        .store
        .list_csrs(&page)
        .await
        .map_err(store_err)?;
    Ok(Json(views::page(
        found.items.iter().map(views::csr).collect(),
        found.next_cursor.map(|c| encode_cursor(&c)),
    )))
}

/// `GET /v1/csrs/{id}`.
pub async fn get_csr(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ReadTasks)?;
    let id: CsrId = parse_id(&id, "CSR")?;
    let csr = state.engine.store.get_csr(&id).await.map_err(store_err)?;
    Ok(Json(views::csr(&csr)))
}

/// `PATCH /v1/csrs/{id}`.
pub async fn update_csr(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<CsrInput>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::Administer)?;
    let id: CsrId = parse_id(&id, "CSR")?;
    let csr = state
        .engine
        .update_csr(&id, body.value, &caller.actor())
        .await?;
    Ok(Json(views::csr(&csr)))
}

/// `DELETE /v1/csrs/{id}`.
pub async fn delete_csr(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Permission::Administer)?;
    let id: CsrId = parse_id(&id, "CSR")?;
    state.engine.delete_csr(&id, &caller.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn instant(q: &HashMap<String, String>, key: &str, default: Millis) -> Result<Millis, ApiError> {
    match q.get(key) {
        None => Ok(default),
        Some(s) => Millis::parse_rfc3339(s)
            .ok_or_else(|| ApiError::invalid(key, "must be an RFC 3339 timestamp")),
    }
}

/// `GET /v1/csrs/{id}/schedule?from=&to=` (default: the next 7 days).
pub async fn schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ReadTasks)?;
    let id: CsrId = parse_id(&id, "CSR")?;
    let now = state.engine.clock.now();
    let from = instant(&q, "from", now)?;
    let to = instant(
        &q,
        "to",
        from.plus(std::time::Duration::from_secs(7 * 86_400)),
    )?;
    if to <= from {
        return Err(ApiError::invalid("to", "must be after `from`"));
    }
    let tasks = state
        .engine
        .store
        .csr_schedule(&id, from, to)
        .await
        .map_err(store_err)?;
    Ok(Json(json!({
        "csr_id": id,
        "from": from.to_rfc3339(),
        "to": to.to_rfc3339(),
        "items": tasks.iter().map(|t| views::task(t, now)).collect::<Vec<_>>(),
    })))
}

/// Who acts on a task: a `csr` token only on their own.
fn task_actor(caller: &Caller) -> Result<TaskActor, ApiError> {
    let only_csr = if caller.token.role == Role::Csr {
        Some(caller.token.csr.clone().ok_or_else(|| {
            ApiError::Forbidden("this csr token is not bound to a CSR (token create --csr)".into())
        })?)
    } else {
        None
    };
    Ok(TaskActor {
        actor: caller.actor(),
        only_csr,
    })
}

/// `GET /v1/tasks?assignee=&status=&overdue=true`.
pub async fn list_tasks(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ReadTasks)?;
    let now = state.engine.clock.now();
    let assignee =
        match q.get("assignee").map(String::as_str) {
            None => None,
            Some("me") => Some(caller.token.csr.clone().ok_or_else(|| {
                ApiError::invalid("assignee", "`me` needs a token bound to a CSR")
            })?),
            Some(other) => Some(
                other
                    .parse::<CsrId>()
                    .map_err(|e| ApiError::invalid("assignee", e.to_string()))?,
            ),
        };
    if caller.token.role == Role::Csr && assignee.is_none() {
        return Err(ApiError::Forbidden(
            "a CSR lists their own tasks: use assignee=me".into(),
        ));
    }
    if caller.token.role == Role::Csr && assignee != caller.token.csr {
        return Err(ApiError::Forbidden(
            "a CSR sees only their own tasks".into(),
        ));
    }
    let status = q
        .get("status")
        .map(|s| {
            s.parse()
                .map_err(|e: String| ApiError::invalid("status", e))
        })
        .transpose()?;
    let due_before = match q.get("overdue").map(String::as_str) {
        None | Some("false") => None,
        Some("true") => Some(now),
        Some(_) => return Err(ApiError::invalid("overdue", "must be true or false")),
    };
    let filter = TaskFilter {
        assignee,
        status,
        due_before,
    };
    let page = page_request::<TaskId>(&q)?;
    let found = state
        .engine
        .store
        .list_tasks(&filter, &page)
        .await
        .map_err(store_err)?;
    Ok(Json(views::page(
        found.items.iter().map(|t| views::task(t, now)).collect(),
        found.next_cursor.map(|c| encode_cursor(&c)),
    )))
}

/// `GET /v1/tasks/{id}`.
pub async fn get_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ReadTasks)?;
    let id: TaskId = parse_id(&id, "task")?;
    let task = state.engine.store.get_task(&id).await.map_err(store_err)?;
    let actor = task_actor(&caller)?;
    if actor.only_csr.is_some() && task.assignee != actor.only_csr {
        return Err(ApiError::Forbidden(format!(
            "task {id} is not assigned to you"
        )));
    }
    Ok(Json(views::task(&task, state.engine.clock.now())))
}

/// The body of a completion.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    #[serde(default)]
    notes: Option<String>,
}

/// `POST /v1/tasks/{id}/complete`.
pub async fn complete_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<CompleteBody>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::WorkTasks)?;
    let id: TaskId = parse_id(&id, "task")?;
    let by = task_actor(&caller)?;
    let task = state.engine.complete_task(&id, &by, body.notes).await?;
    Ok(Json(views::task(&task, state.engine.clock.now())))
}

/// The body of an assignment.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    csr_id: String,
}

/// `POST /v1/tasks/{id}/assign`.
pub async fn assign_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<AssignBody>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::WorkTasks)?;
    let id: TaskId = parse_id(&id, "task")?;
    let by = task_actor(&caller)?;
    let task = state
        .engine
        .reassign_task(&id, &body.value.csr_id, &by)
        .await?;
    Ok(Json(views::task(&task, state.engine.clock.now())))
}

/// `POST /v1/onboardings/{id}/signals/{name}`: 202 when new, 200 for a repeat of its `id`.
pub async fn signal(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
    body: JsonBody<SignalInput>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(Permission::SendSignals)?;
    let id = onboarding_id(&id)?;
    let sender_id = body.value.id.clone();
    let receipt = state
        .engine
        .send_signal(&id, &name, body.value, &caller.actor())
        .await?;
    let (status, duplicate) = match receipt {
        SignalReceipt::New => (StatusCode::ACCEPTED, false),
        SignalReceipt::Duplicate => (StatusCode::OK, true),
    };
    Ok((
        status,
        Json(json!({"onboarding_id": id, "signal": name, "id": sender_id, "duplicate": duplicate})),
    ))
}
