//! Logging in with an API token, and out.

use crate::WebState;
use crate::layout::Page;
use crate::session::{self, Session};
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

fn form(status: StatusCode, error: Option<&str>) -> Response {
    Page::bare(
        "Log in",
        status,
        html! {
            h1 { "onramp" }
            p.muted { "Log in with an API token (" code { "onramp token create" } ")." }
            @if let Some(error) = error { p.alert role="alert" { (error) } }
            form.stack method="post" action="/login" {
                label for="token" { "Token" }
                input id="token" name="token" type="password" autocomplete="current-password" required autofocus;
                button type="submit" { "Log in" }
            }
        },
    )
}

/// `GET /login`.
pub async fn show() -> Response {
    form(StatusCode::OK, None)
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /login`. Login is the one form without a CSRF token (there is no session yet);
/// a forged login could only log the victim into the forger's own token.
pub async fn submit(State(state): State<WebState>, Form(login): Form<LoginForm>) -> Response {
    let secret = login.token.trim();
    if !session::plausible(secret) {
        return form(StatusCode::UNAUTHORIZED, Some("That token is not valid."));
    }
    match state.engine.authenticate(secret).await {
        Ok(Some(_)) => session::start(secret, "/"),
        Ok(None) => form(StatusCode::UNAUTHORIZED, Some("That token is not valid.")),
        Err(e) => Page::engine_error(&e),
    }
}

/// The logout form.
#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    csrf: String,
}

/// `POST /logout`.
pub async fn logout(session: Session, Form(f): Form<LogoutForm>) -> Response {
    if let Err(expired) = session.check_csrf(&f.csrf) {
        return expired.into_response();
    }
    session::end()
}
