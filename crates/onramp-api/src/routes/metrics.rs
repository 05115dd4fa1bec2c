//! `GET /metrics`: this process's metrics in the Prometheus (OpenMetrics) text format. No
//! token, like `/healthz`: scrapers sit on the internal network and the figures hold no
//! customer data (CSR ids and webhook ids at most).

use crate::AppState;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

/// The metrics, levels read from the database at most once a second.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "meta",
    security(()),
    responses(
        (status = 200, description = "Prometheus metrics in the OpenMetrics text format",
            content_type = "application/openmetrics-text", body = String),
    )
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let engine = &state.engine;
    let now = engine.clock.now();
    let services = engine.services.statuses(now);
    let text = engine.metrics.render(&engine.store, &services, now).await;
    ([(CONTENT_TYPE, onramp_engine::metrics::CONTENT_TYPE)], text)
}
