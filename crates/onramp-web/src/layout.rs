//! The page shell (header, role-aware navigation, main), error pages and the small pieces
//! every page uses (status badges, times, progress bars). maud escapes every value it
//! interpolates, so customer data renders as text, never as markup.

use crate::session::Session;
use axum::http::StatusCode;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use onramp_core::auth::Permission;
use onramp_core::time::Millis;
use onramp_engine::EngineError;

/// Which navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// The dashboard.
    Dashboard,
    /// Onboardings (list, detail, new).
    Onboardings,
    /// Dead letters.
    DeadLetters,
    /// Templates.
    Templates,
    /// The task inbox.
    Tasks,
    /// CSRs and their schedules.
    Csrs,
}

/// Renders pages.
pub struct Page;

impl Page {
    /// A full page for a logged-in user.
    pub fn render(session: &Session, nav: Nav, title: &str, body: Markup) -> Response {
        let entry = |to: Nav, href: &str, label: &str| {
            html! {
                a href=(href) aria-current=[(nav == to).then_some("page")] { (label) }
            }
        };
        let page = html! {
            header.top {
                a.brand href="/" { "onramp" }
                nav aria-label="Main" {
                    (entry(Nav::Dashboard, "/", "Dashboard"))
                    (entry(Nav::Onboardings, "/onboardings", "Onboardings"))
                    @if session.may(Permission::ReadTasks) {
                        (entry(Nav::Tasks, "/tasks", if session.role() == onramp_core::auth::Role::Csr { "My tasks" } else { "Tasks" }))
                    }
                    @if session.may(Permission::ReadOperations) {
                        (entry(Nav::Csrs, "/csrs", "CSRs"))
                        (entry(Nav::DeadLetters, "/dead-letters", "Dead letters"))
                        (entry(Nav::Templates, "/templates", "Templates"))
                    }
                }
                form.logout method="post" action="/logout" {
                    input type="hidden" name="csrf" value=(session.csrf());
                    span.who { (session.token.name) " · " (session.role().to_string()) }
                    button.link type="submit" { "Log out" }
                }
            }
            main id="main" { (body) }
        };
        document(title, page, StatusCode::OK)
    }

    /// A page without the navigation (login).
    pub fn bare(title: &str, status: StatusCode, body: Markup) -> Response {
        document(title, html! { main.narrow id="main" { (body) } }, status)
    }

    /// An error page.
    pub fn error(status: StatusCode, title: &str, message: &str) -> Response {
        Self::bare(
            title,
            status,
            html! {
                h1 { (title) }
                p.error-message { (message) }
                p { a href="/" { "Back to the dashboard" } }
            },
        )
    }

    /// The page for an engine error.
    pub fn engine_error(e: &EngineError) -> Response {
        let (status, title) = match e {
            EngineError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
            EngineError::InvalidTransition(_) | EngineError::Conflict(_) => {
                (StatusCode::CONFLICT, "Not possible now")
            }
            EngineError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable"),
            EngineError::Internal(_) => {
                tracing::error!(error = %e, "UI request failed");
                return Self::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The error was logged.",
                );
            }
            _ => (StatusCode::BAD_REQUEST, "Invalid request"),
        };
        Self::error(status, title, &e.to_string())
    }
}

fn document(title: &str, body: Markup, status: StatusCode) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · onramp" }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body { (body) }
        }
    };
    with_security_headers((status, markup).into_response())
}

/// Headers every HTML response carries: no framing, no sniffing, scripts and styles only
/// from this origin, never cached (pages show live data).
pub fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
            .parse()
            .expect("a valid header value"),
    );
    headers.insert(X_FRAME_OPTIONS, "DENY".parse().expect("valid"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, "nosniff".parse().expect("valid"));
    headers.insert(CACHE_CONTROL, "no-store".parse().expect("valid"));
    headers.insert(
        "referrer-policy",
        "same-origin".parse().expect("a valid header value"),
    );
    response
}

/// A status as a coloured badge.
pub fn badge(status: &str) -> Markup {
    html! { span class={"badge " (status)} { (status.replace('_', " ")) } }
}

/// A time as `YYYY-MM-DD HH:MM:SS UTC`, with the exact RFC 3339 value on hover.
pub fn time(at: Millis) -> Markup {
    let exact = at.to_rfc3339();
    let short = exact.replace('T', " ");
    let short = short
        .split('.')
        .next()
        .unwrap_or(&short)
        .trim_end_matches('Z');
    html! { time datetime=(exact) title=(exact) { (short) " UTC" } }
}

/// An optional time.
pub fn maybe_time(at: Option<Millis>) -> Markup {
    match at {
        Some(at) => time(at),
        None => html! { span.muted { "—" } },
    }
}

/// A progress bar with its percentage (a native `<progress>`: no inline styles, which the
/// content security policy refuses).
pub fn progress(percent: u32) -> Markup {
    html! {
        progress value=(percent) max="100" aria-label="Progress" { (percent) "%" }
        span.progress-label { (percent) "%" }
    }
}

/// A hidden CSRF field.
pub fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf()); }
}
