//! The dashboard: onboardings by status, the stage queues, the service breakers and the
//! latest failures. It refreshes itself every few seconds (see `app.js`).

use crate::WebState;
use crate::layout::{Nav, Page, badge, time};
use crate::session::Session;
use axum::extract::State;
use axum::response::Response;
use maud::html;
use onramp_core::auth::Permission;
use onramp_core::onboarding::OnboardingStatus;
use onramp_store::{OnboardingFilter, PageRequest};

/// `GET /`.
pub async fn show(State(state): State<WebState>, session: Session) -> Response {
    let engine = &state.engine;
    let store = &engine.store;
    let counts = match store.onboarding_counts().await {
        Ok(c) => c,
        Err(e) => return Page::engine_error(&e.into()),
    };
    let count = |s: OnboardingStatus| {
        counts
            .iter()
            .find(|(status, _)| *status == s)
            .map_or(0, |(_, n)| *n)
    };
    let operations = session.may(Permission::ReadOperations);
    let stages = if operations {
        match store.stage_counts().await {
            Ok(s) => s,
            Err(e) => return Page::engine_error(&e.into()),
        }
    } else {
        Vec::new()
    };
    let failures = match store
        .list_onboardings(
            &OnboardingFilter {
                status: Some(OnboardingStatus::Failed),
                ..OnboardingFilter::default()
            },
            &PageRequest {
                limit: 8,
                cursor: None,
            },
        )
        .await
    {
        Ok(page) => page.items,
        Err(e) => return Page::engine_error(&e.into()),
    };
    let services = engine.services.statuses(engine.clock.now());

    let body = html! {
        div.page-head {
            h1 { "Dashboard" }
            @if session.may(Permission::CreateOnboardings) {
                a.button href="/onboardings/new" { "New onboarding" }
            }
        }
        section aria-labelledby="by-status" data-refresh="5000" {
            h2 id="by-status" { "Onboardings by status" }
            ul.tiles {
                @for status in OnboardingStatus::ALL {
                    li {
                        a.tile href={"/onboardings?status=" (status.as_str())} {
                            span.count { (count(status)) }
                            (badge(status.as_str()))
                        }
                    }
                }
            }
        }
        @if operations {
            section aria-labelledby="queues" {
                h2 id="queues" { "Stage queues" }
                table {
                    thead { tr { th { "Stage" } th.num { "Queued" } th.num { "Running" } th.num { "Retrying" } th.num { "Dead" } th { "State" } } }
                    tbody {
                        @for (name, policy) in engine.catalog.stages() {
                            @let c = stages.iter().find(|c| &c.stage == name);
                            tr {
                                td { (name) " " span.muted { "×" (policy.concurrency) } }
                                td.num { (c.map_or(0, |c| c.queued)) }
                                td.num { (c.map_or(0, |c| c.running)) }
                                td.num { (c.map_or(0, |c| c.retrying)) }
                                td.num {
                                    @let dead = c.map_or(0, |c| c.dead);
                                    @if dead > 0 { a href={"/dead-letters?stage=" (name)} { (dead) } } @else { "0" }
                                }
                                td { @if engine.is_paused(name) { (badge("paused")) } @else { (badge("active")) } }
                            }
                        }
                    }
                }
            }
            @if !services.is_empty() {
                section aria-labelledby="services" {
                    h2 id="services" { "External services" }
                    table {
                        thead { tr { th { "Service" } th { "Breaker" } th.num { "Error rate (1 min)" } th { "Last error" } } }
                        tbody {
                            @for s in &services {
                                tr {
                                    td { (s.name) }
                                    td { (badge(s.breaker.as_str())) }
                                    td.num { (format!("{:.0}%", s.error_rate * 100.0)) " " span.muted { "of " (s.recent_calls) } }
                                    td { @if let Some(e) = &s.last_error { span.error-text { (e.message) } } @else { span.muted { "—" } } }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="failures" {
            h2 id="failures" { "Recent failures" }
            @if failures.is_empty() {
                p.muted { "No failed onboardings." }
            } @else {
                table {
                    thead { tr { th { "Customer" } th { "Stage" } th { "Error" } th { "Since" } } }
                    tbody {
                        @for o in &failures {
                            tr {
                                td { a href={"/onboardings/" (o.id)} { (o.customer.name) } }
                                td { (o.stage.as_ref().map(|s| s.as_str()).unwrap_or("—")) }
                                td.error-text { (o.error.as_deref().unwrap_or("")) }
                                td { (time(o.updated_at)) }
                            }
                        }
                    }
                }
            }
        }
    };
    Page::render(&session, Nav::Dashboard, "Dashboard", body)
}
