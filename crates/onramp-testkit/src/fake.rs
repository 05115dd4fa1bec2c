//! [`FakeService`]: a stand-in for an external service (CRM, billing, ...) on loopback.
//!
//! Each path has a script: a queue of [`Reply`]s answered in order, the last one repeated
//! forever. A path without a script answers 404. Every request is recorded (method, path,
//! query, headers, body) so tests can assert on what onramp sent — the `Idempotency-Key` of
//! every attempt, for instance. Scripts can be replaced while the service runs, e.g. to let a
//! failing service recover before a dead letter is replayed.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// One scripted answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The JSON body (`Null` sends an empty body).
    pub body: Value,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// How long to wait before answering (to provoke client timeouts).
    pub delay: Duration,
}

impl Reply {
    /// `status` with a JSON body.
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// `status` with an empty body.
    pub fn status(status: u16) -> Reply {
        Reply::json(status, Value::Null)
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Answers only after `delay`.
    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// A request the fake service received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// Upper-case method.
    pub method: String,
    /// The path.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// Headers, names in lower case.
    pub headers: HashMap<String, String>,
    /// The body as JSON (`Null` when empty or not JSON).
    pub body: Value,
    /// When it arrived.
    pub received_at: tokio::time::Instant,
    /// The status it was answered with.
    pub replied: u16,
}

impl RecordedRequest {
    /// A header by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The `Idempotency-Key` header.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.header("idempotency-key")
    }
}

#[derive(Debug, Default)]
struct Scripts {
    replies: HashMap<String, VecDeque<Reply>>,
    received: Vec<RecordedRequest>,
}

impl Scripts {
    fn next_reply(&mut self, path: &str) -> Option<Reply> {
        let queue = self.replies.get_mut(path)?;
        if queue.len() > 1 {
            queue.pop_front()
        } else {
            queue.front().cloned()
        }
    }
}

/// A scripted HTTP service on `127.0.0.1:<random port>`; stops when dropped.
#[derive(Debug)]
pub struct FakeService {
    base_url: String,
    scripts: Arc<Mutex<Scripts>>,
    stop: CancellationToken,
}

impl FakeService {
    /// Starts a service with no scripts (every path answers 404).
    pub async fn start() -> FakeService {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for the fake service");
        let addr = listener.local_addr().expect("the fake service's address");
        let scripts = Arc::new(Mutex::new(Scripts::default()));
        let stop = CancellationToken::new();
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(scripts.clone());
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await;
        });
        FakeService {
            base_url: format!("http://{addr}"),
            scripts,
            stop,
        }
    }

    /// `http://127.0.0.1:<port>`, for a service's `base_url`.
    pub fn url(&self) -> &str {
        &self.base_url
    }

    /// Replaces the script of `path`: the replies in order, the last one repeated.
    pub fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        let replies: VecDeque<Reply> = replies.into_iter().collect();
        assert!(!replies.is_empty(), "a script needs at least one reply");
        self.scripts.lock().replies.insert(path.to_owned(), replies);
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.scripts.lock().received.clone()
    }

    /// The requests received for `path`.
    pub fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        self.scripts
            .lock()
            .received
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits (bounded) until `path` has received at least `n` requests; returns them all.
    pub async fn wait_for_requests(&self, path: &str, n: usize) -> Vec<RecordedRequest> {
        crate::wait_until(
            &format!("{n} request(s) to {path}"),
            crate::DEFAULT_TIMEOUT,
            || async {
                let got = self.requests_to(path);
                if got.len() >= n {
                    Ok(got)
                } else {
                    Err(format!("{} request(s)", got.len()))
                }
            },
        )
        .await
    }
}

impl Drop for FakeService {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn answer(State(scripts): State<Arc<Mutex<Scripts>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let recorded = RecordedRequest {
        method: parts.method.as_str().to_owned(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        received_at: tokio::time::Instant::now(),
        replied: 0,
    };
    let reply = {
        let mut scripts = scripts.lock();
        let reply = scripts.next_reply(&path).unwrap_or_else(|| {
            Reply::json(
                404,
                json!({"error": format!("the fake service has no script for {path}")}),
            )
        });
        scripts.received.push(RecordedRequest {
            replied: reply.status,
            ..recorded
        });
        reply
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = if reply.body.is_null() {
        (status, Body::empty()).into_response()
    } else {
        (status, axum::Json(reply.body)).into_response()
    };
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
