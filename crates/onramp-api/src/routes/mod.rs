//! The route table, and with it the OpenAPI document.
//!
//! Every route is registered through `utoipa_axum::routes!`, which takes the method and path
//! from the handler's `#[utoipa::path]` attribute and adds both the axum route and the
//! operation's documentation. The router and `GET /openapi.json` are therefore built from one
//! list and cannot disagree about which routes exist.

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
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Every route, unauthenticated ones included, and their documentation.
pub fn routes() -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .routes(routes!(onboardings::create, onboardings::list))
        .routes(routes!(onboardings::get))
        .routes(routes!(onboardings::status))
        .routes(routes!(events::onboarding))
        .routes(routes!(onboardings::audit))
        .routes(routes!(onboardings::retry))
        .routes(routes!(onboardings::cancel))
        .routes(routes!(people::signal))
        .routes(routes!(people::create_csr, people::list_csrs))
        .routes(routes!(
            people::get_csr,
            people::update_csr,
            people::delete_csr
        ))
        .routes(routes!(people::schedule))
        .routes(routes!(people::list_tasks))
        .routes(routes!(people::get_task))
        .routes(routes!(people::complete_task))
        .routes(routes!(people::assign_task))
        .routes(routes!(dead_letters::list))
        .routes(routes!(dead_letters::replay_stage))
        .routes(routes!(dead_letters::replay))
        .routes(routes!(dead_letters::discard))
        .routes(routes!(services::list))
        .routes(routes!(stages::list))
        .routes(routes!(stages::pause))
        .routes(routes!(stages::resume))
        .routes(routes!(templates::list))
        .routes(routes!(templates::get, templates::put))
        .routes(routes!(events::all))
        .routes(routes!(audit::admin_audit))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::get, webhooks::delete))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::replay_all))
        .routes(routes!(webhooks::replay_one));
    OpenApiRouter::with_openapi(crate::openapi::base())
        .nest("/v1", v1)
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(metrics::metrics))
        .routes(routes!(crate::openapi::document))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
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
