//! The route table.

mod audit;
mod dead_letters;
mod events;
mod health;
mod metrics;
mod onboardings;
mod people;
mod services;
mod stages;
mod templates;
mod webhooks;

use crate::AppState;
use crate::error::ApiError;
use axum::Router;
use axum::routing::{get, post};

/// Every route, unauthenticated ones included.
pub fn routes() -> Router<AppState> {
    let v1 = Router::new()
        .route(
            "/onboardings",
            post(onboardings::create).get(onboardings::list),
        )
        .route("/onboardings/{id}", get(onboardings::get))
        .route("/onboardings/{id}/status", get(onboardings::status))
        .route("/onboardings/{id}/events", get(events::onboarding))
        .route("/onboardings/{id}/audit", get(onboardings::audit))
        .route("/onboardings/{id}/retry", post(onboardings::retry))
        .route("/onboardings/{id}/cancel", post(onboardings::cancel))
        .route("/onboardings/{id}/signals/{name}", post(people::signal))
        .route("/csrs", post(people::create_csr).get(people::list_csrs))
        .route(
            "/csrs/{id}",
            get(people::get_csr)
                .patch(people::update_csr)
                .delete(people::delete_csr),
        )
        .route("/csrs/{id}/schedule", get(people::schedule))
        .route("/tasks", get(people::list_tasks))
        .route("/tasks/{id}", get(people::get_task))
        .route("/tasks/{id}/complete", post(people::complete_task))
        .route("/tasks/{id}/assign", post(people::assign_task))
        .route("/dead-letters", get(dead_letters::list))
        .route("/dead-letters/replay", post(dead_letters::replay_stage))
        .route("/dead-letters/{id}/replay", post(dead_letters::replay))
        .route("/dead-letters/{id}/discard", post(dead_letters::discard))
        .route("/services", get(services::list))
        .route("/stages", get(stages::list))
        .route("/stages/{name}/pause", post(stages::pause))
        .route("/stages/{name}/resume", post(stages::resume))
        .route("/templates", get(templates::list))
        .route("/templates/{name}", get(templates::get).put(templates::put))
        .route("/events", get(events::all))
        .route("/audit", get(audit::admin_audit))
        .route("/webhooks", post(webhooks::create).get(webhooks::list))
        .route(
            "/webhooks/{id}",
            get(webhooks::get).delete(webhooks::delete),
        )
        .route("/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route(
            "/webhooks/{id}/deliveries/replay",
            post(webhooks::replay_all),
        )
        .route(
            "/webhooks/{id}/deliveries/{delivery}/replay",
            post(webhooks::replay_one),
        );
    Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
}

/// Parses an onboarding id from a path, and names the onboarding on the request's span, so
/// every log line about the request carries it.
fn onboarding_id(raw: &str) -> Result<onramp_core::OnboardingId, ApiError> {
    let id: onramp_core::OnboardingId = parse_id(raw, "onboarding")?;
    tracing::Span::current().record("onboarding", tracing::field::display(&id));
    Ok(id)
}

/// Parses a path id, 404 when it is not even of the right shape.
fn parse_id<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("{what} {raw} not found")))
}
