//! Dead letters: the steps that gave up, by stage, with replay and discard.

use crate::WebState;
use crate::layout::{Nav, Page, csrf, time};
use crate::session::Session;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use onramp_core::auth::Permission;
use onramp_core::{DeadLetterId, StageName};
use onramp_store::PageRequest;
use serde::Deserialize;

/// The list's filter.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    stage: Option<String>,
}

/// `GET /dead-letters`.
pub async fn list(
    State(state): State<WebState>,
    session: Session,
    Query(query): Query<ListQuery>,
) -> Response {
    if let Err(denied) = session.require(Permission::ReadOperations) {
        return denied.into_response();
    }
    let stage = query
        .stage
        .as_deref()
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse::<StageName>().ok());
    let page = PageRequest {
        limit: 200,
        cursor: None,
    };
    let letters = match state
        .engine
        .store
        .list_dead_letters(stage.as_ref(), &page)
        .await
    {
        Ok(p) => p.items,
        Err(e) => return Page::engine_error(&e.into()),
    };
    let operate = session.may(Permission::Operate);
    let stages: Vec<StageName> = state
        .engine
        .catalog
        .stages()
        .map(|(n, _)| n.clone())
        .collect();
    let body = html! {
        div.page-head {
            h1 { "Dead letters" }
            @if operate && !letters.is_empty() {
                @if let Some(stage) = &stage {
                    form method="post" action="/dead-letters/replay" {
                        (csrf(&session))
                        input type="hidden" name="stage" value=(stage);
                        button type="submit" data-confirm={"Replay every dead letter of " (stage) "?"} { "Replay all of " (stage) }
                    }
                }
            }
        }
        form.filters method="get" action="/dead-letters" {
            label { "Stage"
                select name="stage" {
                    option value="" { "all stages" }
                    @for s in &stages { option value=(s) selected[stage.as_ref() == Some(s)] { (s) } }
                }
            }
            button type="submit" { "Filter" }
        }
        @if letters.is_empty() {
            p.muted { "No dead letters." }
        } @else {
            table {
                thead { tr { th { "Onboarding" } th { "Step" } th { "Stage" } th.num { "Attempts" } th { "Error" } th { "Dead since" } @if operate { th { "" } } } }
                tbody {
                    @for d in &letters {
                        tr {
                            td { a href={"/onboardings/" (d.onboarding_id)} { (d.onboarding_id) } }
                            td { (d.step_seq) " · " (d.task) }
                            td { (d.stage) }
                            td.num { (d.attempts) }
                            td.error-text { (d.error) }
                            td { (time(d.dead_at)) }
                            @if operate {
                                td.actions {
                                    form method="post" action={"/dead-letters/" (d.id) "/replay"} {
                                        (csrf(&session))
                                        button type="submit" { "Replay" }
                                    }
                                    form method="post" action={"/dead-letters/" (d.id) "/discard"} {
                                        (csrf(&session))
                                        button.danger type="submit" data-confirm="Discard this dead letter? The onboarding stays failed." { "Discard" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Page::render(&session, Nav::DeadLetters, "Dead letters", body)
}

/// A form with the CSRF token (and a stage for bulk replay).
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    csrf: String,
    #[serde(default)]
    stage: Option<String>,
}

/// `POST /dead-letters/{id}/replay` and `/discard`.
pub async fn act(
    State(state): State<WebState>,
    session: Session,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Err(denied) = session.require(Permission::Operate) {
        return denied.into_response();
    }
    if let Err(expired) = session.check_csrf(&form.csrf) {
        return expired.into_response();
    }
    let Ok(id) = id.parse::<DeadLetterId>() else {
        return Page::error(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such dead letter.",
        );
    };
    let engine = &state.engine;
    let done = match action.as_str() {
        "replay" => engine.replay_dead_letter(&id, &session.actor()).await,
        "discard" => engine.discard_dead_letter(&id, &session.actor()).await,
        _ => return Page::error(StatusCode::NOT_FOUND, "Not found", "No such action."),
    };
    match done {
        Ok(letter) => {
            Redirect::to(&format!("/onboardings/{}", letter.onboarding_id)).into_response()
        }
        Err(e) => Page::engine_error(&e),
    }
}

/// `POST /dead-letters/replay` (one stage).
pub async fn replay_stage(
    State(state): State<WebState>,
    session: Session,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Err(denied) = session.require(Permission::Operate) {
        return denied.into_response();
    }
    if let Err(expired) = session.check_csrf(&form.csrf) {
        return expired.into_response();
    }
    let stage = form.stage.unwrap_or_default();
    match state.engine.replay_stage(&stage, &session.actor()).await {
        Ok(_) => Redirect::to(&format!("/dead-letters?stage={stage}")).into_response(),
        Err(e) => Page::engine_error(&e),
    }
}
