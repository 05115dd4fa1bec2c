//! `/v1/csrs`, `/v1/tasks` and `/v1/onboardings/{id}/signals/{name}`.

use super::{onboarding_id, parse_id};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, OptionalJsonBody, Path, Query};
use crate::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthenticated, Unavailable,
    UnsupportedMediaType,
};
use crate::pagination::{PageParams, encode_cursor};
use crate::views::{self, Csr, Page, Schedule, Task, Timestamp};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use onramp_core::auth::{Permission, Role};
use onramp_core::task::TaskStatus;
use onramp_core::time::Millis;
use onramp_core::{CsrId, OnboardingId, SignalName, TaskId};
use onramp_engine::people::{CsrInput, SignalInput, TaskActor};
use onramp_store::{SignalReceipt, TaskFilter};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

fn store_err(e: onramp_store::StoreError) -> ApiError {
    onramp_engine::EngineError::from(e).into()
}

/// `POST /v1/csrs`: 201 with the CSR; tasks waiting for their skills are assigned at once.
#[utoipa::path(
    post,
    path = "/csrs",
    operation_id = "create_csr",
    tag = "people",
    request_body(content = CsrInput,
        description = "Needs `name`, `email`, `timezone`, `skills` and `working_hours`"),
    responses(
        (status = 201, description = "Added", body = Csr,
            links(
                ("get" = (operation_id = "get_csr", parameters(("id" = "$response.body#/id")))),
                ("update" = (operation_id = "update_csr", parameters(("id" = "$response.body#/id")))),
                ("delete" = (operation_id = "delete_csr", parameters(("id" = "$response.body#/id")))),
                ("schedule" = (operation_id = "get_csr_schedule", parameters(("id" = "$response.body#/id")))),
            )),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
pub async fn create_csr(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<CsrInput>,
) -> ApiResult<(StatusCode, Json<Csr>)> {
    caller.require(Permission::Administer)?;
    let csr = state.engine.create_csr(body.value, &caller.actor()).await?;
    Ok((StatusCode::CREATED, Json(Csr::from(&csr))))
}

/// `GET /v1/csrs`.
#[utoipa::path(
    get,
    path = "/csrs",
    operation_id = "list_csrs",
    tag = "people",
    params(PageParams),
    responses(
        (status = 200, description = "A page of CSRs", body = Page<Csr>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
pub async fn list_csrs(
    State(state): State<AppState>,
    caller: Caller,
    Query(paging): Query<PageParams>,
) -> ApiResult<Json<Page<Csr>>> {
    caller.require(Permission::ReadTasks)?;
    let page = paging.request::<CsrId>()?;
    let found = state
        .engine
        .store
        .list_csrs(&page)
        .await
        .map_err(store_err)?;
    Ok(Json(Page::of(
        &found.items,
        found.next_cursor.map(|c| encode_cursor(&c)),
    )))
}

/// `GET /v1/csrs/{id}`.
#[utoipa::path(
    get,
    path = "/csrs/{id}",
    operation_id = "get_csr",
    tag = "people",
    params(("id" = CsrId, Path, description = "The CSR")),
    responses(
        (status = 200, description = "The CSR", body = Csr),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn get_csr(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Csr>> {
    caller.require(Permission::ReadTasks)?;
    let id: CsrId = parse_id(&id, "CSR")?;
    let csr = state.engine.store.get_csr(&id).await.map_err(store_err)?;
    Ok(Json(Csr::from(&csr)))
}

/// `PATCH /v1/csrs/{id}`: changes the fields given, keeps the others.
#[utoipa::path(
    patch,
    path = "/csrs/{id}",
    operation_id = "update_csr",
    tag = "people",
    params(("id" = CsrId, Path, description = "The CSR")),
    request_body(content = CsrInput, description = "Only the fields to change"),
    responses(
        (status = 200, description = "The changed CSR", body = Csr),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
pub async fn update_csr(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<CsrInput>,
) -> ApiResult<Json<Csr>> {
    caller.require(Permission::Administer)?;
    let id: CsrId = parse_id(&id, "CSR")?;
    let csr = state
        .engine
        .update_csr(&id, body.value, &caller.actor())
        .await?;
    Ok(Json(Csr::from(&csr)))
}

/// `DELETE /v1/csrs/{id}`: 204; their open tasks go to others.
#[utoipa::path(
    delete,
    path = "/csrs/{id}",
    operation_id = "delete_csr",
    tag = "people",
    params(("id" = CsrId, Path, description = "The CSR")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
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

fn instant(value: Option<&str>, key: &str, default: Millis) -> Result<Millis, ApiError> {
    match value {
        None => Ok(default),
        Some(s) => Millis::parse_rfc3339(s)
            .ok_or_else(|| ApiError::invalid(key, "must be an RFC 3339 timestamp")),
    }
}

/// The window of `GET /v1/csrs/{id}/schedule`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScheduleParams {
    /// The window's start (default: now).
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// The window's end, after `from` (default: 7 days after `from`).
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
}

/// `GET /v1/csrs/{id}/schedule?from=&to=` (default: the next 7 days).
#[utoipa::path(
    get,
    path = "/csrs/{id}/schedule",
    operation_id = "get_csr_schedule",
    tag = "people",
    params(("id" = CsrId, Path, description = "The CSR"), ScheduleParams),
    responses(
        (status = 200, description = "The CSR's tasks scheduled in the window", body = Schedule),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ScheduleParams>,
) -> ApiResult<Json<Schedule>> {
    caller.require(Permission::ReadTasks)?;
    let id: CsrId = parse_id(&id, "CSR")?;
    let now = state.engine.clock.now();
    let from = instant(q.from.as_deref(), "from", now)?;
    let to = instant(
        q.to.as_deref(),
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
    Ok(Json(Schedule {
        csr_id: id,
        from: Timestamp::from(from),
        to: Timestamp::from(to),
        items: Task::all(&tasks, now),
    }))
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

/// The filters of `GET /v1/tasks`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskListParams {
    /// A CSR's id, or `me` for the caller's own CSR (a `csr` token must say `me`).
    #[param(pattern = "^(me|csr_[0-9a-f]{32})$")]
    assignee: Option<String>,
    /// Only tasks in this status.
    #[param(value_type = Option<TaskStatus>)]
    status: Option<String>,
    /// `true`: only open tasks past their due time.
    #[param(value_type = Option<bool>)]
    overdue: Option<String>,
}

/// `GET /v1/tasks?assignee=&status=&overdue=true`.
#[utoipa::path(
    get,
    path = "/tasks",
    operation_id = "list_tasks",
    tag = "people",
    params(TaskListParams, PageParams),
    responses(
        (status = 200, description = "A page of human tasks", body = Page<Task>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
pub async fn list_tasks(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<TaskListParams>,
    Query(paging): Query<PageParams>,
) -> ApiResult<Json<Page<Task>>> {
    caller.require(Permission::ReadTasks)?;
    let now = state.engine.clock.now();
    let assignee =
        match q.assignee.as_deref() {
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
        .status
        .as_ref()
        .map(|s| {
            s.parse()
                .map_err(|e: String| ApiError::invalid("status", e))
        })
        .transpose()?;
    let due_before = match q.overdue.as_deref() {
        None | Some("false") => None,
        Some("true") => Some(now),
        Some(_) => return Err(ApiError::invalid("overdue", "must be true or false")),
    };
    let filter = TaskFilter {
        assignee,
        status,
        due_before,
    };
    let page = paging.request::<TaskId>()?;
    let found = state
        .engine
        .store
        .list_tasks(&filter, &page)
        .await
        .map_err(store_err)?;
    Ok(Json(Page {
        items: Task::all(&found.items, now),
        next_cursor: found.next_cursor.map(|c| encode_cursor(&c)),
    }))
}

/// `GET /v1/tasks/{id}`.
#[utoipa::path(
    get,
    path = "/tasks/{id}",
    operation_id = "get_task",
    tag = "people",
    params(("id" = TaskId, Path, description = "The task")),
    responses(
        (status = 200, description = "The task", body = Task),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn get_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Task>> {
    caller.require(Permission::ReadTasks)?;
    let id: TaskId = parse_id(&id, "task")?;
    let task = state.engine.store.get_task(&id).await.map_err(store_err)?;
    let actor = task_actor(&caller)?;
    if actor.only_csr.is_some() && task.assignee != actor.only_csr {
        return Err(ApiError::Forbidden(format!(
            "task {id} is not assigned to you"
        )));
    }
    Ok(Json(Task::new(&task, state.engine.clock.now())))
}

/// The body of a completion (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    /// What was done, for the record.
    #[serde(default)]
    notes: Option<String>,
}

/// `POST /v1/tasks/{id}/complete`: the task is done and its onboarding moves on.
#[utoipa::path(
    post,
    path = "/tasks/{id}/complete",
    operation_id = "complete_task",
    tag = "people",
    params(("id" = TaskId, Path, description = "The task")),
    request_body(content = Option<CompleteBody>, description = "Optional"),
    responses(
        (status = 200, description = "The task, done", body = Task),
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
pub async fn complete_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<CompleteBody>,
) -> ApiResult<Json<Task>> {
    caller.require(Permission::WorkTasks)?;
    let id: TaskId = parse_id(&id, "task")?;
    let by = task_actor(&caller)?;
    let task = state.engine.complete_task(&id, &by, body.notes).await?;
    Ok(Json(Task::new(&task, state.engine.clock.now())))
}

/// The body of an assignment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    /// The CSR to take the task.
    #[schema(value_type = CsrId)]
    csr_id: String,
}

/// `POST /v1/tasks/{id}/assign`: gives the task to a CSR (an operator's override).
#[utoipa::path(
    post,
    path = "/tasks/{id}/assign",
    operation_id = "assign_task",
    tag = "people",
    params(("id" = TaskId, Path, description = "The task")),
    request_body = AssignBody,
    responses(
        (status = 200, description = "The task, assigned", body = Task),
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
pub async fn assign_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<AssignBody>,
) -> ApiResult<Json<Task>> {
    caller.require(Permission::WorkTasks)?;
    let id: TaskId = parse_id(&id, "task")?;
    let by = task_actor(&caller)?;
    let task = state
        .engine
        .reassign_task(&id, &body.value.csr_id, &by)
        .await?;
    Ok(Json(Task::new(&task, state.engine.clock.now())))
}

/// `POST /v1/onboardings/{id}/signals/{name}`: 202 when new, 200 for a repeat of its `id`.
/// A signal that arrives before its step is reached is kept and used when it is.
#[utoipa::path(
    post,
    path = "/onboardings/{id}/signals/{name}",
    operation_id = "send_signal",
    tag = "people",
    params(
        ("id" = OnboardingId, Path, description = "The onboarding"),
        ("name" = SignalName, Path, description = "The signal"),
    ),
    request_body = SignalInput,
    responses(
        (status = 202, description = "Received", body = views::SignalReceipt),
        (status = 200, description = "A repeat of a signal id already received: nothing changed", body = views::SignalReceipt),
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
pub async fn signal(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
    body: JsonBody<SignalInput>,
) -> ApiResult<(StatusCode, Json<views::SignalReceipt>)> {
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
        Json(views::SignalReceipt {
            onboarding_id: id,
            signal: name,
            id: sender_id,
            duplicate,
        }),
    ))
}
