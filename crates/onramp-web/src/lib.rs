//! The onramp admin UI (SPEC §11): server-rendered HTML (maud, escaped by construction),
//! plain CSS and a little plain JavaScript, all embedded in the binary — no JS build step, no
//! CDN. Pages read through the store's queries and write through the engine's commands, the
//! same ones the API uses, so the UI can do nothing the API would refuse.
//!
//! Login takes an API token; the session is a cookie holding it (see [`session`]).
#![forbid(unsafe_code)]

mod layout;
mod pages;
pub mod session;

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use onramp_engine::Engine;
use pages::{dashboard, dead_letters, login, onboardings, people, templates};
use std::sync::Arc;

/// What every page can reach.
#[derive(Clone, Debug)]
pub struct WebState {
    /// The engine.
    pub engine: Arc<Engine>,
}

const CSS: &str = include_str!("../assets/app.css");
const JS: &str = include_str!("../assets/app.js");

/// Every UI route: `/`, `/login`, `/onboardings...`, `/tasks...`, `/csrs...`, `/dead-letters...`,
/// `/templates...` and `/assets/...`. Merged beside the API's `/v1` routes by the binary.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(dashboard::show))
        .route("/login", get(login::show).post(login::submit))
        .route("/logout", post(login::logout))
        .route(
            "/onboardings",
            get(onboardings::list).post(onboardings::create),
        )
        .route("/onboardings/new", get(onboardings::new))
        .route("/onboardings/{id}", get(onboardings::detail))
        .route("/onboardings/{id}/live", get(onboardings::live))
        .route("/onboardings/{id}/changes", get(onboardings::changes))
        .route("/onboardings/{id}/retry", post(onboardings::retry))
        .route("/onboardings/{id}/cancel", post(onboardings::cancel))
        .route("/dead-letters", get(dead_letters::list))
        .route("/dead-letters/replay", post(dead_letters::replay_stage))
        .route("/dead-letters/{id}/{action}", post(dead_letters::act))
        .route("/tasks", get(people::inbox))
        .route("/tasks/{id}/complete", post(people::complete))
        .route("/csrs", get(people::csrs))
        .route("/csrs/{id}", get(people::schedule))
        .route("/templates", get(templates::list))
        .route("/templates/{name}", get(templates::versions))
        .route(
            "/assets/app.css",
            get(|| asset("text/css; charset=utf-8", CSS)),
        )
        .route(
            "/assets/app.js",
            get(|| asset("text/javascript; charset=utf-8", JS)),
        )
        .with_state(state)
}

async fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
}
