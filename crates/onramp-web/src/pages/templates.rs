//! Templates: the latest version of each, and every version of one.

use crate::WebState;
use crate::layout::{Nav, Page, time};
use crate::session::Session;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use onramp_core::TemplateName;
use onramp_core::auth::Permission;

/// `GET /templates`.
pub async fn list(State(state): State<WebState>, session: Session) -> Response {
    if let Err(denied) = session.require(Permission::ReadOperations) {
        return denied.into_response();
    }
    let templates = match state.engine.store.list_templates().await {
        Ok(t) => t,
        Err(e) => return Page::engine_error(&e.into()),
    };
    let body = html! {
        h1 { "Templates" }
        table {
            thead { tr { th { "Template" } th.num { "Version" } th { "Tasks" } th { "On failure" } th { "Since" } } }
            tbody {
                @for t in &templates {
                    tr {
                        td { a href={"/templates/" (t.name)} { (t.name) } }
                        td.num { (t.version) }
                        td { (t.tasks.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(" → ")) }
                        td { (t.on_failure.as_str()) }
                        td { (time(t.created_at)) }
                    }
                }
            }
        }
    };
    Page::render(&session, Nav::Templates, "Templates", body)
}

/// `GET /templates/{name}`.
pub async fn versions(
    State(state): State<WebState>,
    session: Session,
    Path(name): Path<String>,
) -> Response {
    if let Err(denied) = session.require(Permission::ReadOperations) {
        return denied.into_response();
    }
    let Ok(name) = name.parse::<TemplateName>() else {
        return Page::error(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such template.",
        );
    };
    let versions = match state.engine.store.template_versions(&name).await {
        Ok(v) => v,
        Err(e) => return Page::engine_error(&e.into()),
    };
    let body = html! {
        h1 { "Template " (name) }
        @for t in versions.iter().rev() {
            section.card {
                h2 { "Version " (t.version) " " span.muted { "since " (time(t.created_at)) " · on failure: " (t.on_failure.as_str()) } }
                ol { @for task in &t.tasks { li { (task) } } }
            }
        }
    };
    Page::render(&session, Nav::Templates, &format!("Template {name}"), body)
}
