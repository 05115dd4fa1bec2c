//! People: the task inbox (a CSR's own tasks, with their slots in the CSR's time zone), the
//! CSR list, and a CSR's week.

use crate::WebState;
use crate::layout::{Nav, Page, badge, csrf, maybe_time};
use crate::session::Session;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use onramp_core::auth::{Permission, Role};
use onramp_core::task::TaskStatus;
use onramp_core::time::Millis;
use onramp_core::{CsrId, TaskId};
use onramp_engine::people::TaskActor;
use onramp_store::{CsrRecord, PageRequest, TaskFilter, TaskRecord};
use serde::Deserialize;
use std::collections::HashMap;

/// A time in a CSR's zone, like `Mon 24 Nov 09:30 (Europe/Berlin)`.
fn local(at: Millis, zone: &str) -> Markup {
    let exact = at.to_rfc3339();
    let shown = jiff::Timestamp::from_millisecond(at.0)
        .ok()
        .and_then(|t| t.in_tz(zone).ok())
        .map(|z| z.strftime("%a %d %b %H:%M").to_string());
    match shown {
        Some(text) => {
            html! { time datetime=(exact) title=(exact) { (text) " " span.muted { "(" (zone) ")" } } }
        }
        None => maybe_time(Some(at)),
    }
}

async fn csrs_by_id(state: &WebState) -> HashMap<CsrId, CsrRecord> {
    let page = PageRequest {
        limit: 500,
        cursor: None,
    };
    state
        .engine
        .store
        .list_csrs(&page)
        .await
        .map(|p| p.items.into_iter().map(|c| (c.id.clone(), c)).collect())
        .unwrap_or_default()
}

/// `GET /tasks`: a CSR's own open tasks; everyone else's view is every open task.
pub async fn inbox(State(state): State<WebState>, session: Session) -> Response {
    if let Err(denied) = session.require(Permission::ReadTasks) {
        return denied.into_response();
    }
    let mine = session.role() == Role::Csr;
    if mine && session.token.csr.is_none() {
        return Page::error(
            StatusCode::FORBIDDEN,
            "No CSR",
            "This token is not bound to a CSR (onramp token create --role csr --csr CSR_ID).",
        );
    }
    let page = PageRequest {
        limit: 200,
        cursor: None,
    };
    let mut tasks: Vec<TaskRecord> = Vec::new();
    let statuses: &[TaskStatus] = if mine {
        &[TaskStatus::Assigned]
    } else {
        &[TaskStatus::Unassigned, TaskStatus::Assigned]
    };
    for status in statuses {
        let filter = TaskFilter {
            assignee: if mine {
                session.token.csr.clone()
            } else {
                None
            },
            status: Some(*status),
            due_before: None,
        };
        match state.engine.store.list_tasks(&filter, &page).await {
            Ok(found) => tasks.extend(found.items),
            Err(e) => return Page::engine_error(&e.into()),
        }
    }
    tasks.sort_by_key(|t| (t.scheduled_for.map_or(i64::MAX, |m| m.0), t.created_at.0));
    let csrs = csrs_by_id(&state).await;
    let may_work = session.may(Permission::WorkTasks);
    let now = state.engine.clock.now();
    let body = html! {
        h1 { @if mine { "My tasks" } @else { "Open tasks" } }
        @if tasks.is_empty() {
            p.muted { "Nothing to do." }
        } @else {
            table {
                thead { tr { th { "Task" } th { "Onboarding" } th { "Assignee" } th { "Scheduled" } th { "Due" } @if may_work { th { "" } } } }
                tbody {
                    @for t in &tasks {
                        @let csr = t.assignee.as_ref().and_then(|id| csrs.get(id));
                        @let zone = csr.map_or("UTC", |c| c.spec.timezone.as_str());
                        tr {
                            td { strong { (t.task) } br; (badge(match t.status { TaskStatus::Unassigned => "unassigned", TaskStatus::Assigned => "assigned", TaskStatus::Done => "done", TaskStatus::Cancelled => "cancelled" })) }
                            td { a href={"/onboardings/" (t.onboarding_id)} { "step " (t.step_seq) } }
                            td { @if let Some(c) = csr { (c.spec.name) } @else { span.muted { "nobody yet (" (t.skill) ")" } } }
                            td { @if let Some(at) = t.scheduled_for { (local(at, zone)) } @else { span.muted { "—" } } }
                            td {
                                @if let Some(due) = t.due_by {
                                    (local(due, zone))
                                    @if due < now { " " (badge("overdue")) }
                                } @else { span.muted { "—" } }
                            }
                            @if may_work {
                                td {
                                    @if t.status == TaskStatus::Assigned || !mine {
                                        form.stack method="post" action={"/tasks/" (t.id) "/complete"} {
                                            (csrf(&session))
                                            label for={"notes-" (t.id)} { "Notes" }
                                            input id={"notes-" (t.id)} name="notes" maxlength="5000";
                                            button type="submit" { "Complete" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Page::render(&session, Nav::Tasks, "Tasks", body)
}

/// The completion form.
#[derive(Debug, Deserialize)]
pub struct CompleteForm {
    csrf: String,
    #[serde(default)]
    notes: String,
}

/// `POST /tasks/{id}/complete`.
pub async fn complete(
    State(state): State<WebState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<CompleteForm>,
) -> Response {
    if let Err(denied) = session.require(Permission::WorkTasks) {
        return denied.into_response();
    }
    if let Err(expired) = session.check_csrf(&form.csrf) {
        return expired.into_response();
    }
    let Ok(id) = id.parse::<TaskId>() else {
        return Page::error(StatusCode::NOT_FOUND, "Not found", "There is no such task.");
    };
    let by = TaskActor {
        actor: session.actor(),
        only_csr: if session.role() == Role::Csr {
            session.token.csr.clone()
        } else {
            None
        },
    };
    let notes = Some(form.notes.trim().to_owned()).filter(|n| !n.is_empty());
    match state.engine.complete_task(&id, &by, notes).await {
        Ok(_) => Redirect::to("/tasks").into_response(),
        Err(e) => Page::engine_error(&e),
    }
}

/// `GET /csrs`.
pub async fn csrs(State(state): State<WebState>, session: Session) -> Response {
    if let Err(denied) = session.require(Permission::ReadOperations) {
        return denied.into_response();
    }
    let mut csrs: Vec<CsrRecord> = csrs_by_id(&state).await.into_values().collect();
    csrs.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    let body = html! {
        h1 { "Customer-success reps" }
        @if csrs.is_empty() {
            p.muted { "No CSRs yet (POST /v1/csrs)." }
        } @else {
            table {
                thead { tr { th { "Name" } th { "Skills" } th { "Time zone" } th.num { "Tasks" } th { "State" } } }
                tbody {
                    @for c in &csrs {
                        tr {
                            td { a href={"/csrs/" (c.id)} { (c.spec.name) } br; span.muted { (c.spec.email) } }
                            td { (c.spec.skills.join(", ")) }
                            td { (c.spec.timezone) }
                            td.num { (c.active_tasks) " / " (c.spec.max_active_tasks) }
                            td { @if c.spec.active { (badge("active")) } @else { (badge("inactive")) } }
                        }
                    }
                }
            }
        }
    };
    Page::render(&session, Nav::Csrs, "CSRs", body)
}

/// Which week to show.
#[derive(Debug, Default, Deserialize)]
pub struct WeekQuery {
    /// Any date of the week, `YYYY-MM-DD` (default: this week).
    #[serde(default)]
    week: Option<String>,
}

/// `GET /csrs/{id}`: the CSR's week, Monday to Sunday in their own time zone.
pub async fn schedule(
    State(state): State<WebState>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<WeekQuery>,
) -> Response {
    if let Err(denied) = session.require(Permission::ReadOperations) {
        return denied.into_response();
    }
    let not_found = || Page::error(StatusCode::NOT_FOUND, "Not found", "There is no such CSR.");
    let Ok(id) = id.parse::<CsrId>() else {
        return not_found();
    };
    let csr = match state.engine.store.get_csr(&id).await {
        Ok(c) => c,
        Err(e) => return Page::engine_error(&e.into()),
    };
    let Ok(zone) = jiff::tz::TimeZone::get(&csr.spec.timezone) else {
        return not_found();
    };
    let now = jiff::Timestamp::from_millisecond(state.engine.clock.now().0)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(zone.clone());
    let day = query
        .week
        .as_deref()
        .and_then(|w| w.parse::<jiff::civil::Date>().ok())
        .unwrap_or_else(|| now.date());
    let monday = day
        .checked_sub(jiff::Span::new().days(i64::from(day.weekday().to_monday_zero_offset())))
        .unwrap_or(day);
    let days: Vec<jiff::civil::Date> = (0..7)
        .filter_map(|d| monday.checked_add(jiff::Span::new().days(d)).ok())
        .collect();
    let start_of = |d: jiff::civil::Date| {
        d.to_zoned(zone.clone())
            .map(|z| Millis(z.timestamp().as_millisecond()))
            .ok()
    };
    let (Some(from), Some(to)) = (
        start_of(monday),
        days.last()
            .and_then(|d| d.checked_add(jiff::Span::new().days(1)).ok())
            .and_then(start_of),
    ) else {
        return not_found();
    };
    let tasks = match state.engine.store.csr_schedule(&id, from, to).await {
        Ok(t) => t,
        Err(e) => return Page::engine_error(&e.into()),
    };
    let on_day = |d: jiff::civil::Date| -> Vec<&TaskRecord> {
        tasks
            .iter()
            .filter(|t| {
                t.scheduled_for.is_some_and(|at| {
                    jiff::Timestamp::from_millisecond(at.0)
                        .map(|ts| ts.to_zoned(zone.clone()).date() == d)
                        .unwrap_or(false)
                })
            })
            .collect()
    };
    let week_link = |d: Option<jiff::civil::Date>| d.map(|d| format!("/csrs/{id}?week={d}"));
    let body = html! {
        h1 { (csr.spec.name) }
        p.muted { (csr.spec.timezone) " · skills: " (csr.spec.skills.join(", ")) " · " (csr.active_tasks) " of " (csr.spec.max_active_tasks) " tasks" }
        nav.week aria-label="Week" {
            @if let Some(prev) = week_link(monday.checked_sub(jiff::Span::new().days(7)).ok()) { a href=(prev) { "← previous week" } }
            strong { "Week of " (monday.strftime("%a %d %b %Y")) }
            @if let Some(next) = week_link(monday.checked_add(jiff::Span::new().days(7)).ok()) { a href=(next) { "next week →" } }
        }
        div.week {
            @for d in &days {
                @let hours = csr.spec.working_hours.get(&weekday_key(d.weekday())).cloned().unwrap_or_default();
                section.day {
                    h2 { (d.strftime("%a %d %b")) }
                    p.muted { @if hours.is_empty() { "off" } @else { (hours.join(", ")) } }
                    @for t in on_day(*d) {
                        div class={"slot " (match t.status { TaskStatus::Done => "done", _ => "assigned" })} {
                            @if let Some(at) = t.scheduled_for { (local(at, &csr.spec.timezone)) }
                            br; a href={"/onboardings/" (t.onboarding_id)} { (t.task) }
                        }
                    }
                }
            }
        }
    };
    Page::render(&session, Nav::Csrs, &csr.spec.name, body)
}

fn weekday_key(w: jiff::civil::Weekday) -> String {
    use jiff::civil::Weekday::*;
    match w {
        Monday => "mon",
        Tuesday => "tue",
        Wednesday => "wed",
        Thursday => "thu",
        Friday => "fri",
        Saturday => "sat",
        Sunday => "sun",
    }
    .to_owned()
}
