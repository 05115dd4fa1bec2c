//! The onramp HTTP API (SPEC §7).
//!
//! [`router`] is the only place routes are assembled, so tests can serve it on
//! `127.0.0.1:0` exactly as `onramp serve` does. Handlers are thin: parse, call one engine
//! command, render. Every failure becomes the SPEC's error JSON through [`error::ApiError`],
//! the only place that picks HTTP status codes.
#![forbid(unsafe_code)]

pub mod auth;
pub mod error;
mod extract;
mod pagination;
mod routes;
pub mod views;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use onramp_engine::Engine;
use std::sync::Arc;

/// Largest request body accepted (SPEC: bodies over 1 MiB get 413).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
}

/// The whole API: `/v1/...`, health and readiness.
pub fn router(state: AppState) -> Router {
    routes::routes()
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}
