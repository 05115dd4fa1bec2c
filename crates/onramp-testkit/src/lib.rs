//! The onramp test kit: drive the real thing from tests.
//!
//! - [`TestApp`]: the real API served on `127.0.0.1:0` over a database of its own — a SQLite
//!   file in a temporary directory or a fresh PostgreSQL database, as the [`Backend`] says —
//!   with the real engine, workers and scheduler (or without them, to drive the scheduler's
//!   `run_once` duties by hand under a [`ManualClock`]). Helpers are named after what users
//!   do: [`TestApp::create_onboarding`], [`TestApp::wait_for_status`], ...
//! - [`FakeService`]: an external HTTP service on loopback that answers from a script per
//!   path and records every request it receives.
//! - [`WebhookReceiver`]: a webhook endpoint that verifies signatures with an independent
//!   Standard Webhooks implementation; [`SseClient`]: reads event streams over real HTTP.
//! - [`wait_until`]: the one way tests wait — a bounded poll with a deadline and a message
//!   saying what was last seen. Tests never sleep to wait for work.
//! - [`factory`]: valid request bodies with fresh customers.
//! - [`ApiResponse`]: a response read in full, with assertions that print the body on failure.
//!
//! Logs are silent unless `TEST_LOG` is set (to a filter such as `debug` or
//! `onramp_engine=trace`).
//!
//! One test body runs on both backends by taking the [`Backend`] as an argument; PostgreSQL
//! runs only where `ONRAMP_TEST_POSTGRES_URL` names a server ([`Backend::is_available`]):
//!
//! ```no_run
//! use onramp_testkit::{Backend, TestApp};
//! use serde_json::json;
//!
//! async fn a_sim_step_runs_to_completed(backend: Backend) {
//!     let app = TestApp::spawn_on(backend, r#"
//!         [tasks.check]
//!         kind = "sim"
//!         stage = "checks"
//!     "#).await;
//!     let created = app
//!         .create_onboarding(json!({"customer": {"name": "Ada", "email": "ada@example.com"},
//!                                   "tasks": ["check"]}))
//!         .await;
//!     app.wait_for_status(created["id"].as_str().unwrap(), "completed").await;
//!     app.stop().await;
//! }
//! ```
#![forbid(unsafe_code)]

mod app;
pub mod factory;
mod fake;
mod proxy;
mod receiver;
mod response;
mod sse;
mod wait;

pub use app::{Backend, FAST_WORKER, TestApp, TestAppBuilder, step};
pub use fake::{FakeService, RecordedRequest, Reply};
pub use onramp_core::clock::ManualClock;
pub use proxy::TcpProxy;
pub use receiver::{ReceivedWebhook, WebhookReceiver};
pub use response::ApiResponse;
pub use sse::{SseClient, SseEvent, SseItem};
pub use wait::{DEFAULT_TIMEOUT, wait_until};

/// Installs a log subscriber once per test binary when `TEST_LOG` is set; otherwise logs are
/// dropped.
pub fn init_tracing() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        if let Ok(filter) = std::env::var("TEST_LOG") {
            let filter = if filter.is_empty() || filter == "1" {
                "debug".to_owned()
            } else {
                filter
            };
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}
