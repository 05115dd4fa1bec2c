//! The onramp HTTP API (SPEC §7).
//!
//! [`router`] is the only place routes are assembled, so tests can serve it on
//! `127.0.0.1:0` exactly as `onramp serve` does. Handlers are thin: parse, call one engine
//! command, render. Every failure becomes the SPEC's error JSON through [`error::ApiError`],
//! the only place that picks HTTP status codes. The routes and the OpenAPI document served
//! at `GET /openapi.json` are built from one list ([`openapi`]).
#![forbid(unsafe_code)]

pub mod auth;
pub mod error;
mod extract;
pub mod limits;
pub mod openapi;
mod pagination;
mod routes;
pub mod views;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use onramp_engine::Engine;
use std::sync::Arc;
use std::time::Instant;

/// Largest request body accepted (SPEC: bodies over 1 MiB get 413).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Each token's request budget.
    pub limits: Arc<limits::TokenLimits>,
}

impl AppState {
    /// The state of an API over `engine`, limited as its `[server]` config says.
    pub fn new(engine: Arc<Engine>) -> AppState {
        let limits = Arc::new(limits::TokenLimits::new(engine.config.server.rate_limit));
        AppState { engine, limits }
    }
}

/// Wraps a whole app (API and UI):
/// - every request gets an `X-Request-Id` (the caller's, when it sends one, else a new UUID),
///   echoed on the response, and a tracing span carrying it with the method and path, so every
///   log line about the request names it. Headers are never logged: the `Authorization` token
///   stays out of the logs;
/// - a request not answered within `[server] request_timeout` gets a 503 (an event stream's
///   response starts at once, so streams are not cut);
/// - every answer is counted in the metrics by matched route, method and status.
pub fn observed(app: Router, engine: Arc<Engine>) -> Router {
    use axum::http::Request;
    use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
    use tower_http::trace::{DefaultOnResponse, TraceLayer};
    let span = |request: &Request<axum::body::Body>| {
        let id = request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        tracing::info_span!(
            "http",
            method = %request.method(),
            path = %request.uri().path(),
            request_id = %id,
            onboarding = tracing::field::Empty,
        )
    };
    app.layer(axum::middleware::from_fn_with_state(
        engine,
        timed_and_counted,
    ))
    .layer(PropagateRequestIdLayer::x_request_id())
    .layer(
        TraceLayer::new_for_http()
            .make_span_with(span)
            .on_response(DefaultOnResponse::new().level(tracing::Level::DEBUG)),
    )
    .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

async fn timed_and_counted(
    State(engine): State<Arc<Engine>>,
    route: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let route = route
        .as_ref()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    // Only standard methods become label values: any other would add a series per spelling.
    let method = match request.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m.to_owned(),
        _ => "other".to_owned(),
    };
    let started = Instant::now();
    let timeout = engine.config.server.request_timeout;
    let response = match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error::ApiError::Unavailable(format!(
            "{method} {route} was not answered within {timeout:?}"
        ))
        .into_response(),
    };
    engine.metrics.http_request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// The whole API: `/v1/...`, health, readiness, metrics and `/openapi.json`.
pub fn router(state: AppState) -> Router {
    let (routes, doc) = routes::routes().split_for_parts();
    routes
        .method_not_allowed_fallback(|| async { error::ApiError::MethodNotAllowed })
        .layer(axum::Extension(openapi::Document(openapi::document_json(
            &doc,
        ))))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}
