//! Onboardings: the searchable list, the new-onboarding form, the detail page with its live
//! step timeline and audit log, and the retry and cancel actions.

use crate::WebState;
use crate::layout::{Nav, Page, badge, csrf, maybe_time, progress, time};
use crate::session::Session;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures::StreamExt;
use maud::{Markup, html};
use onramp_core::auth::Permission;
use onramp_core::customer::{Customer, FieldError};
use onramp_core::onboarding::OnboardingStatus;
use onramp_core::plan::progress as percent;
use onramp_core::{OnboardingId, StageName, TemplateName};
use onramp_engine::commands::{CreateOnboarding, Idempotency};
use onramp_engine::{Engine, EngineError};
use onramp_store::{OnboardingFilter, OnboardingRecord, PageRequest};
use serde::Deserialize;
use serde_json::json;
use std::future::Future;
use std::sync::Arc;

/// Onboardings per list page.
const PAGE_SIZE: usize = 25;

/// The list's filters, as the query string carries them.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    stage: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
}

/// A query parameter that says something.
fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// `GET /onboardings`.
pub async fn list(
    State(state): State<WebState>,
    session: Session,
    Query(query): Query<ListQuery>,
) -> Response {
    let filter = OnboardingFilter {
        status: nonempty(&query.status).and_then(|s| s.parse::<OnboardingStatus>().ok()),
        stage: nonempty(&query.stage).and_then(|s| s.parse::<StageName>().ok()),
        template: None::<TemplateName>,
        q: nonempty(&query.q).map(|q| q.chars().take(200).collect()),
    };
    let page = PageRequest {
        limit: PAGE_SIZE,
        cursor: nonempty(&query.cursor).and_then(|c| c.parse::<OnboardingId>().ok()),
    };
    let found = match state.engine.store.list_onboardings(&filter, &page).await {
        Ok(found) => found,
        Err(e) => return Page::engine_error(&e.into()),
    };
    let stages: Vec<StageName> = state
        .engine
        .catalog
        .stages()
        .map(|(n, _)| n.clone())
        .collect();
    let next = found.next_cursor.map(|c| {
        let mut params = vec![("cursor", c.to_string())];
        for (k, v) in [
            ("q", &query.q),
            ("status", &query.status),
            ("stage", &query.stage),
        ] {
            if let Some(v) = nonempty(v) {
                params.push((k, v.to_owned()));
            }
        }
        format!("/onboardings?{}", encode(&params))
    });
    let body = html! {
        div.page-head {
            h1 { "Onboardings" }
            @if session.may(Permission::CreateOnboardings) {
                a.button href="/onboardings/new" { "New onboarding" }
            }
        }
        form.filters method="get" action="/onboardings" role="search" {
            label { "Search" input type="search" name="q" value=[nonempty(&query.q)] placeholder="name, e-mail or reference"; }
            label { "Status"
                select name="status" {
                    option value="" { "any" }
                    @for s in OnboardingStatus::ALL {
                        option value=(s.as_str()) selected[filter.status == Some(s)] { (s.as_str()) }
                    }
                }
            }
            label { "Stage"
                select name="stage" {
                    option value="" { "any" }
                    @for s in &stages {
                        option value=(s) selected[filter.stage.as_ref() == Some(s)] { (s) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
        @if found.items.is_empty() {
            p.muted { "No onboardings match." }
        } @else {
            table {
                thead { tr { th { "Customer" } th { "Status" } th { "Stage" } th { "Progress" } th { "Template" } th { "Created" } } }
                tbody {
                    @for o in &found.items {
                        tr {
                            td {
                                a href={"/onboardings/" (o.id)} { (o.customer.name) }
                                br; span.muted { (o.customer.email) }
                            }
                            td { (badge(o.status.as_str())) }
                            td { (o.stage.as_ref().map(|s| s.as_str()).unwrap_or("—")) }
                            td { (progress(percent(o.succeeded_steps, o.total_steps))) }
                            td { @if let Some(t) = &o.template { (t.name) " v" (t.version) } @else { span.muted { "hand-picked" } } }
                            td { (time(o.created_at)) }
                        }
                    }
                }
            }
        }
        @if let Some(next) = next {
            p { a.button.secondary href=(next) { "Next page" } }
        }
    };
    Page::render(&session, Nav::Onboardings, "Onboardings", body)
}

/// The new-onboarding form as submitted.
#[derive(Debug, Default, Deserialize)]
pub struct NewForm {
    csrf: String,
    form_key: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    company: String,
    #[serde(default)]
    external_ref: String,
    #[serde(default)]
    template: String,
    /// Hand-picked tasks, in order, comma-separated (the script keeps it in sync with the
    /// ordered list; without the script it is typed).
    #[serde(default)]
    tasks: String,
}

/// `GET /onboardings/new`.
pub async fn new(State(state): State<WebState>, session: Session) -> Response {
    if let Err(denied) = session.require(Permission::CreateOnboardings) {
        return denied.into_response();
    }
    new_form(&state, &session, &NewForm::default(), &[], StatusCode::OK).await
}

async fn new_form(
    state: &WebState,
    session: &Session,
    form: &NewForm,
    errors: &[FieldError],
    status: StatusCode,
) -> Response {
    let templates = state
        .engine
        .store
        .list_templates()
        .await
        .unwrap_or_default();
    let tasks: Vec<String> = state
        .engine
        .catalog
        .tasks()
        .map(|(n, _)| n.to_string())
        .collect();
    let error_for = |field: &str| -> Option<Markup> {
        let messages: Vec<&str> = errors
            .iter()
            .filter(|e| {
                e.field == field
                    || e.field.starts_with(&format!("{field}."))
                    || e.field.starts_with(&format!("{field}["))
            })
            .map(|e| e.message.as_str())
            .collect();
        (!messages.is_empty()).then(|| html! { span.field-error id={(field) "-error"} role="alert" { (messages.join("; ")) } })
    };
    let general: Vec<&FieldError> = errors
        .iter()
        .filter(|e| {
            !["customer", "template", "tasks"]
                .iter()
                .any(|f| e.field.starts_with(f))
        })
        .collect();
    // A new key for every rendering: submitting this form twice (a double click, a reload)
    // sends the same key, so it creates one onboarding.
    let form_key = uuid::Uuid::new_v4().to_string();
    let body = html! {
        h1 { "New onboarding" }
        @if !general.is_empty() {
            div.alert role="alert" { @for e in general { p { (e.field) ": " (e.message) } } }
        }
        form.stack method="post" action="/onboardings" id="new-onboarding" {
            (csrf(session))
            input type="hidden" name="form_key" value=(form_key);
            fieldset {
                legend { "Customer" }
                label for="name" { "Name" }
                input id="name" name="name" required value=(form.name) aria-describedby="customer.name-error";
                @if let Some(e) = error_for("customer.name") { (e) }
                label for="email" { "E-mail" }
                input id="email" name="email" type="email" required value=(form.email) aria-describedby="customer.email-error";
                @if let Some(e) = error_for("customer.email") { (e) }
                label for="company" { "Company " span.muted { "(optional)" } }
                input id="company" name="company" value=(form.company);
                @if let Some(e) = error_for("customer.company") { (e) }
                label for="external_ref" { "Your reference " span.muted { "(optional)" } }
                input id="external_ref" name="external_ref" value=(form.external_ref);
                @if let Some(e) = error_for("customer.external_ref") { (e) }
            }
            fieldset {
                legend { "What to do" }
                label for="template" { "Template" }
                select id="template" name="template" {
                    option value="" { "— hand-pick tasks below —" }
                    @for t in &templates {
                        option value=(t.name) selected[form.template == t.name.as_str()] {
                            (t.name) " (v" (t.version) ": " (t.tasks.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(" → ")) ")"
                        }
                    }
                }
                @if let Some(e) = error_for("template") { (e) }
                label for="tasks" { "Or tasks, in order " span.muted { "(comma-separated)" } }
                input id="tasks" name="tasks" value=(form.tasks) list="task-names" data-task-picker;
                datalist id="task-names" { @for t in &tasks { option value=(t) {} } }
                @if let Some(e) = error_for("tasks") { (e) }
            }
            button type="submit" data-once { "Start onboarding" }
        }
    };
    let mut response = Page::render(session, Nav::Onboardings, "New onboarding", body);
    *response.status_mut() = status;
    response
}

/// `POST /onboardings`.
pub async fn create(
    State(state): State<WebState>,
    session: Session,
    Form(form): Form<NewForm>,
) -> Response {
    if let Err(denied) = session.require(Permission::CreateOnboardings) {
        return denied.into_response();
    }
    if let Err(expired) = session.check_csrf(&form.csrf) {
        return expired.into_response();
    }
    let optional = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let tasks: Vec<String> = form
        .tasks
        .split(',')
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    let request = CreateOnboarding {
        customer: Customer {
            name: form.name.trim().to_owned(),
            email: form.email.trim().to_owned(),
            company: optional(&form.company),
            external_ref: optional(&form.external_ref),
            attributes: None,
        },
        template: optional(&form.template),
        tasks: (!tasks.is_empty()).then_some(tasks),
        priority: None,
    };
    let body = json!({
        "customer": request.customer,
        "template": request.template,
        "tasks": request.tasks,
    });
    let idempotency = Idempotency {
        key: format!(
            "ui-form:{}",
            form.form_key.chars().take(64).collect::<String>()
        ),
        scope: format!("ui:{}", session.token.name),
        body,
    };
    match state
        .engine
        .create_onboarding(request, Some(idempotency), &session.actor())
        .await
    {
        Ok(created) => {
            Redirect::to(&format!("/onboardings/{}", created.record().id)).into_response()
        }
        Err(EngineError::Validation(errors)) => {
            new_form(
                &state,
                &session,
                &form,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(EngineError::UnknownTask(names)) => {
            let errors = [FieldError {
                field: "tasks".into(),
                message: format!("unknown task(s): {}", names.join(", ")),
            }];
            new_form(
                &state,
                &session,
                &form,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(EngineError::UnknownTemplate(name)) => {
            let errors = [FieldError {
                field: "template".into(),
                message: format!("no template `{name}`"),
            }];
            new_form(
                &state,
                &session,
                &form,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(EngineError::IdempotencyKeyReused) => {
            let errors = [FieldError {
                field: "form".into(),
                message: "this form was already submitted with other values; reload the page to start another onboarding".into(),
            }];
            new_form(&state, &session, &form, &errors, StatusCode::CONFLICT).await
        }
        Err(e) => Page::engine_error(&e),
    }
}

async fn load(state: &WebState, id: &str) -> Result<OnboardingRecord, Response> {
    let id: OnboardingId = id.parse().map_err(|_| {
        Page::error(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such onboarding.",
        )
    })?;
    state
        .engine
        .store
        .get_onboarding(&id)
        .await
        .map_err(|e| Page::engine_error(&e.into()))
}

/// `GET /onboardings/{id}`.
pub async fn detail(
    State(state): State<WebState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let o = match load(&state, &id).await {
        Ok(o) => o,
        Err(page) => return page,
    };
    let audit = state
        .engine
        .store
        .audit_entries(&o.id)
        .await
        .unwrap_or_default();
    let may_operate = session.may(Permission::OperateOnboardings);
    let body = html! {
        div.page-head {
            div {
                h1 { (o.customer.name) }
                p.muted { (o.customer.email)
                    @if let Some(c) = &o.customer.company { " · " (c) }
                    @if let Some(r) = &o.customer.external_ref { " · ref " (r) }
                }
            }
            @if may_operate && !o.status.is_terminal() {
                div.actions {
                    @if o.retry_available {
                        form method="post" action={"/onboardings/" (o.id) "/retry"} {
                            (csrf(&session))
                            button type="submit" data-confirm="Retry the failed step?" { "Retry" }
                        }
                    }
                    @if o.status != OnboardingStatus::Cancelling {
                        form method="post" action={"/onboardings/" (o.id) "/cancel"} {
                            (csrf(&session))
                            input type="hidden" name="reason" value="cancelled from the admin UI";
                            button.danger type="submit" data-confirm="Cancel this onboarding? Steps that ran are undone." { "Cancel" }
                        }
                    }
                }
            }
        }
        div id="live" data-live={"/onboardings/" (o.id) "/live"} data-changes={"/onboardings/" (o.id) "/changes"} data-terminal=[o.status.is_terminal().then_some("true")] {
            (timeline(&o))
        }
        section aria-labelledby="audit" {
            h2 id="audit" { "Audit log" }
            table.audit {
                thead { tr { th.num { "#" } th { "When" } th { "Who" } th { "What" } th { "Detail" } } }
                tbody {
                    @for e in &audit {
                        tr {
                            td.num { (e.seq) }
                            td { (time(e.at)) }
                            td { (e.actor) }
                            td { (e.action) @if let (Some(f), Some(t)) = (&e.from, &e.to) { br; span.muted { (f) " → " (t) } } }
                            td { code { (e.detail.to_string()) } }
                        }
                    }
                }
            }
        }
    };
    Page::render(&session, Nav::Onboardings, &o.customer.name, body)
}

/// The live part of the detail page: status, progress and the step timeline.
fn timeline(o: &OnboardingRecord) -> Markup {
    html! {
        div.summary {
            span id="status" data-status=(o.status.as_str()) { (badge(o.status.as_str())) }
            (progress(percent(o.succeeded_steps, o.total_steps)))
            @if let Some(stage) = &o.stage { span.muted { "stage " (stage) } }
            @if let Some(t) = &o.template { span.muted { "template " (t.name) " v" (t.version) } }
        }
        @if let Some(e) = &o.error { p.alert role="alert" { (e) } }
        ol.timeline {
            @for s in &o.steps {
                li class={"step " (s.status.as_str())} {
                    div.step-head {
                        span.seq { (s.seq) }
                        strong { (s.task) }
                        (badge(s.status.as_str()))
                        span.muted { (s.kind) " · " (s.stage) }
                    }
                    dl {
                        dt { "Attempts" } dd { (s.attempts) }
                        @if let Some(a) = &s.assignee { dt { "Assignee" } dd { (a) } }
                        @if let Some(at) = s.scheduled_for { dt { "Scheduled" } dd { (time(at)) } }
                        dt { "Started" } dd { (maybe_time(s.started_at)) }
                        dt { "Finished" } dd { (maybe_time(s.finished_at)) }
                    }
                    @if let Some(e) = &s.error { p.error-text { (e) } }
                }
            }
        }
    }
}

/// `GET /onboardings/{id}/live`: the timeline alone, polled by the detail page.
pub async fn live(
    State(state): State<WebState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let _ = session;
    match load(&state, &id).await {
        Ok(o) => {
            let mut response = timeline(&o).into_response();
            if o.status.is_terminal() {
                response
                    .headers_mut()
                    .insert("x-onramp-terminal", "true".parse().expect("valid"));
            }
            crate::layout::with_security_headers(response)
        }
        Err(page) => page,
    }
}

/// `GET /onboardings/{id}/changes`: a server-sent event `changed` at once and after every
/// change of the onboarding, fed by the engine's live hub (no polling; changes made by other
/// processes arrive through the database's notifications). The page then fetches
/// [`live`]. The stream ends with the server's shutdown; the page's `EventSource` reconnects.
pub async fn changes(
    State(state): State<WebState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let _ = session;
    let Ok(id) = id.parse::<OnboardingId>() else {
        return Page::error(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such onboarding.",
        );
    };
    let watch = state.engine.live.watch(&id);
    let first = std::iter::once(Ok::<_, std::convert::Infallible>(
        Event::default().event("changed").data("now"),
    ));
    let later = futures::stream::unfold(watch, |mut watch| async move {
        watch
            .changed()
            .await
            .then(|| (Ok(Event::default().event("changed").data("now")), watch))
    });
    let events = futures::stream::iter(first).chain(later);
    let keep_alive = KeepAlive::new().interval(state.engine.config.events.keep_alive);
    Sse::new(events).keep_alive(keep_alive).into_response()
}

/// A form with only the CSRF token (and an optional reason).
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    csrf: String,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /onboardings/{id}/retry`.
pub async fn retry(
    State(state): State<WebState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    act(
        &state,
        &session,
        &id,
        &form,
        |engine, id, actor| async move { engine.retry_onboarding(&id, &actor).await.map(|_| ()) },
    )
    .await
}

/// `POST /onboardings/{id}/cancel`.
pub async fn cancel(
    State(state): State<WebState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    let reason = form
        .reason
        .clone()
        .unwrap_or_else(|| "cancelled from the admin UI".into());
    act(
        &state,
        &session,
        &id,
        &form,
        |engine, id, actor| async move {
            engine
                .cancel_onboarding(&id, &reason, &actor)
                .await
                .map(|_| ())
        },
    )
    .await
}

/// Checks role and CSRF token, runs `action`, and goes back to the detail page.
async fn act<F, Fut>(
    state: &WebState,
    session: &Session,
    id: &str,
    form: &ActionForm,
    action: F,
) -> Response
where
    F: FnOnce(Arc<Engine>, OnboardingId, String) -> Fut,
    Fut: Future<Output = Result<(), EngineError>>,
{
    if let Err(denied) = session.require(Permission::OperateOnboardings) {
        return denied.into_response();
    }
    if let Err(expired) = session.check_csrf(&form.csrf) {
        return expired.into_response();
    }
    let Ok(parsed) = id.parse::<OnboardingId>() else {
        return Page::error(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such onboarding.",
        );
    };
    match action(state.engine.clone(), parsed, session.actor()).await {
        Ok(()) => Redirect::to(&format!("/onboardings/{id}")).into_response(),
        Err(e) => Page::engine_error(&e),
    }
}

/// `application/x-www-form-urlencoded` encoding of query parameters.
fn encode(params: &[(&str, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
