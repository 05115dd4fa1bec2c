//! Stand-ins for the CRM, billing, provisioning and email services of
//! `examples/onramp.toml`, so that `onramp demo` shows real `http` steps at work: retries,
//! a billing outage that opens its circuit breaker, rate limits, and (for cancelled
//! onboardings) compensations.
//!
//! Each service listens on its own loopback port. `POST` creates a resource and answers its
//! id; a repeated `Idempotency-Key` gets the first answer again, as a well-behaved service
//! does. `DELETE /<collection>/<id>` removes one (404 when there is none). Answers take a few
//! tens of milliseconds and fail now and then with a 503; billing also goes down for ten
//! seconds every minute (the first time 20 s after the start).

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How one fake service behaves.
struct Behaviour {
    /// Environment variable names for its URL and credential in `examples/onramp.toml`.
    url_var: &'static str,
    secret_var: &'static str,
    /// Probability that a request fails with 503.
    fail_rate: f64,
    /// Slowest answer (the fastest is a fifth of it).
    latency: Duration,
    /// Down for `.1` once every `.0` (a third into each period), if at all.
    outage: Option<(Duration, Duration)>,
}

const SERVICES: &[Behaviour] = &[
    Behaviour {
        url_var: "CRM_URL",
        secret_var: "CRM_TOKEN",
        fail_rate: 0.05,
        latency: Duration::from_millis(120),
        outage: None,
    },
    Behaviour {
        url_var: "BILLING_URL",
        secret_var: "BILLING_KEY",
        fail_rate: 0.08,
        latency: Duration::from_millis(250),
        outage: Some((Duration::from_secs(60), Duration::from_secs(10))),
    },
    Behaviour {
        url_var: "PROVISIONING_URL",
        secret_var: "PROVISIONING_TOKEN",
        fail_rate: 0.1,
        latency: Duration::from_millis(600),
        outage: None,
    },
    Behaviour {
        url_var: "EMAIL_URL",
        secret_var: "EMAIL_KEY",
        fail_rate: 0.02,
        latency: Duration::from_millis(60),
        outage: None,
    },
];

struct Service {
    behaviour: &'static Behaviour,
    started: Instant,
    state: Mutex<Resources>,
}

#[derive(Default)]
struct Resources {
    next_id: u64,
    live: HashMap<String, Value>,
    answered: HashMap<String, Value>,
}

/// Starts every fake service; returns the environment (URLs and credentials) that
/// `examples/onramp.toml` expects. They stop when `stop` is cancelled.
pub async fn start(stop: CancellationToken) -> anyhow::Result<HashMap<String, String>> {
    let mut env = HashMap::new();
    for behaviour in SERVICES {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let service = Arc::new(Service {
            behaviour,
            started: Instant::now(),
            state: Mutex::new(Resources::default()),
        });
        let app = axum::Router::new().fallback(answer).with_state(service);
        let stopped = stop.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "a demo service stopped");
            }
        });
        env.insert(behaviour.url_var.to_owned(), format!("http://{addr}"));
        env.insert(behaviour.secret_var.to_owned(), "demo-secret".to_owned());
    }
    Ok(env)
}

async fn answer(State(service): State<Arc<Service>>, request: Request) -> Response {
    let b = service.behaviour;
    let latency = rand::random_range(b.latency / 5..=b.latency);
    tokio::time::sleep(latency).await;
    if let Some((every, down_for)) = b.outage {
        let into_cycle = service.started.elapsed().as_millis() % every.as_millis();
        let down_from = (every / 3).as_millis();
        if (down_from..down_from + down_for.as_millis()).contains(&into_cycle) {
            return unavailable("scheduled maintenance");
        }
    }
    if rand::random::<f64>() < b.fail_rate {
        return unavailable("try again");
    }
    let (parts, _body) = request.into_parts();
    let path = parts.uri.path().trim_end_matches('/').to_owned();
    match parts.method {
        Method::POST => create(&service, &path, &parts.headers).await,
        Method::DELETE => remove(&service, &path).await,
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

async fn create(service: &Service, path: &str, headers: &HeaderMap) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut state = service.state.lock().await;
    if let Some(earlier) = key.as_ref().and_then(|k| state.answered.get(k)) {
        return (StatusCode::CREATED, Json(earlier.clone())).into_response();
    }
    state.next_id += 1;
    let prefix = path
        .trim_start_matches('/')
        .chars()
        .take(3)
        .collect::<String>();
    let id = format!("{prefix}_{}", state.next_id);
    let created = json!({"id": id, "status": "active"});
    state.live.insert(format!("{path}/{id}"), created.clone());
    if let Some(key) = key {
        state.answered.insert(key, created.clone());
    }
    (StatusCode::CREATED, Json(created)).into_response()
}

async fn remove(service: &Service, path: &str) -> Response {
    match service.state.lock().await.live.remove(path) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such resource"})),
        )
            .into_response(),
    }
}

fn unavailable(why: &str) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": why}))).into_response()
}
