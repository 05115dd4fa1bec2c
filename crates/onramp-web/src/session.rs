//! Who is using the UI: login with an API token, a session cookie, CSRF protection.
//!
//! The session cookie holds the token itself (`HttpOnly`, `SameSite=Strict`, `Path=/`), so a
//! session is exactly as valid as its token: revoking the token ends every session using it,
//! in every process, with nothing stored server-side. Every page looks the token up by its
//! hash, as the API does.
//!
//! Every form carries a CSRF token derived from the session (`sha256("csrf:" + token)`): a
//! page of another site cannot know it, and `SameSite=Strict` keeps the cookie off its
//! requests in the first place.

use crate::WebState;
use crate::layout::Page;
use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use onramp_core::auth::{Permission, Role};
use onramp_engine::commands::actor_for;
use onramp_store::TokenRecord;
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const COOKIE_NAME: &str = "onramp_session";

/// A logged-in user.
#[derive(Debug, Clone)]
pub struct Session {
    /// Their token.
    pub token: TokenRecord,
    secret: String,
}

impl Session {
    /// The token's role.
    pub fn role(&self) -> Role {
        self.token.role
    }

    /// Whether the role may do `p`.
    pub fn may(&self, p: Permission) -> bool {
        self.token.role.allows(p)
    }

    /// Refuses what the role may not do.
    pub fn require(&self, p: Permission) -> Result<(), Denied> {
        if self.may(p) {
            Ok(())
        } else {
            Err(Denied::Role(self.token.role))
        }
    }

    /// Who acts, for the audit log.
    pub fn actor(&self) -> String {
        actor_for(&self.token.name)
    }

    /// The CSRF token every form of this session carries.
    pub fn csrf(&self) -> String {
        csrf_for(&self.secret)
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, presented: &str) -> Result<(), Denied> {
        if presented == self.csrf() {
            Ok(())
        } else {
            Err(Denied::ForeignForm)
        }
    }
}

/// Why a logged-in user may not do something (a 403 page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// Their role does not allow it.
    Role(Role),
    /// The form was not rendered for this session (CSRF).
    ForeignForm,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::Role(role) => Page::error(
                StatusCode::FORBIDDEN,
                "Not allowed",
                &format!("The {role} role may not do this."),
            ),
            Denied::ForeignForm => Page::error(
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form does not belong to your session. Reload the page and try again.",
            ),
        }
    }
}

fn csrf_for(secret: &str) -> String {
    hex::encode(Sha256::digest(format!("csrf:{secret}").as_bytes()))
}

/// A page that needs a session sends the browser to the login page without one.
impl FromRequestParts<WebState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Response> {
        let to_login = || Redirect::to("/login").into_response();
        let Some(secret) = cookie(parts, COOKIE_NAME) else {
            return Err(to_login());
        };
        match state.engine.authenticate(&secret).await {
            Ok(Some(token)) => Ok(Session { token, secret }),
            Ok(None) => Err(to_login()),
            Err(e) => Err(Page::engine_error(&e)),
        }
    }
}

/// A cookie's value from the request.
fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// A redirect that starts a session with `secret`.
pub fn start(secret: &str, to: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    let cookie = format!("{COOKIE_NAME}={secret}; HttpOnly; SameSite=Strict; Path=/");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

/// A redirect to the login page that ends the session.
pub fn end() -> Response {
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_static("onramp_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    response
}

/// Whether a token secret is plausible enough to look up (bounded, printable, no `;`).
pub fn plausible(secret: &str) -> bool {
    !secret.is_empty()
        && secret.len() <= 200
        && secret
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_differ_per_session_and_do_not_reveal_it() {
        let a = csrf_for("onr_a");
        assert_ne!(a, csrf_for("onr_b"));
        assert!(!a.contains("onr_a"));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn only_plausible_secrets_are_looked_up() {
        assert!(plausible("onr_abc123"));
        assert!(!plausible(""));
        assert!(!plausible("a;b"));
        assert!(!plausible("with space"));
        assert!(!plausible(&"x".repeat(201)));
    }
}
