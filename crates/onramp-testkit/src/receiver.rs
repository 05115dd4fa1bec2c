//! [`WebhookReceiver`]: a webhook endpoint on loopback that verifies every delivery's
//! signature with the `standardwebhooks` crate — an implementation of the Standard Webhooks
//! specification independent of onramp's — and records what arrived.
//!
//! It can answer 500 for a while ([`WebhookReceiver::fail`]), and go away and come back on
//! the same port ([`WebhookReceiver::go_down`], [`WebhookReceiver::come_up`]).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use tokio_util::sync::CancellationToken;

/// One delivery that arrived (whatever the receiver answered).
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedWebhook {
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`.
    pub timestamp: String,
    /// The body as JSON.
    pub body: Value,
    /// Whether `standardwebhooks` verified the signature.
    pub verified: bool,
    /// What the receiver answered.
    pub answered: u16,
    /// When it arrived.
    pub at: tokio::time::Instant,
}

#[derive(Debug)]
struct Shared {
    secret: Mutex<Option<String>>,
    received: Mutex<Vec<ReceivedWebhook>>,
    status: AtomicU16,
}

/// A Standard Webhooks receiver on `127.0.0.1`.
#[derive(Debug)]
pub struct WebhookReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Mutex<Option<CancellationToken>>,
}

impl WebhookReceiver {
    /// Starts listening on a free port; it answers 204 to everything until told otherwise.
    pub async fn start() -> WebhookReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for the webhook receiver");
        let addr = listener.local_addr().expect("the receiver's address");
        let receiver = WebhookReceiver {
            addr,
            shared: Arc::new(Shared {
                secret: Mutex::new(None),
                received: Mutex::new(Vec::new()),
                status: AtomicU16::new(204),
            }),
            stop: Mutex::new(None),
        };
        receiver.serve(listener);
        receiver
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let stop = CancellationToken::new();
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(self.shared.clone());
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await;
        });
        *self.stop.lock() = Some(stop);
    }

    /// The URL to register: `http://127.0.0.1:<port>/hooks`.
    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    /// The endpoint's secret (`whsec_...`) to verify with.
    pub fn set_secret(&self, secret: &str) {
        *self.shared.secret.lock() = Some(secret.to_owned());
    }

    /// Answers `status` from now on (e.g. 500 to fail every delivery).
    pub fn answer(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Stops listening: connections are refused until [`come_up`](Self::come_up).
    pub fn go_down(&self) {
        if let Some(stop) = self.stop.lock().take() {
            stop.cancel();
        }
    }

    /// Listens again on the same port.
    pub async fn come_up(&self) {
        let listener = crate::wait_until(
            "the receiver's port to be free again",
            crate::DEFAULT_TIMEOUT,
            || async {
                tokio::net::TcpListener::bind(self.addr)
                    .await
                    .map_err(|e| e.to_string())
            },
        )
        .await;
        self.serve(listener);
    }

    /// Stays unreachable for `down_for` (going down first if it is up), then listens again.
    pub async fn stay_down(&self, down_for: std::time::Duration) {
        self.go_down();
        tokio::time::sleep(down_for).await;
        self.come_up().await;
    }

    /// Every delivery received so far.
    pub fn received(&self) -> Vec<ReceivedWebhook> {
        self.shared.received.lock().clone()
    }

    /// Waits (bounded by `timeout`) until `done` holds for what was received; returns it.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: std::time::Duration,
        done: impl Fn(&[ReceivedWebhook]) -> bool,
    ) -> Vec<ReceivedWebhook> {
        crate::wait_until(what, timeout, || async {
            let received = self.received();
            if done(&received) {
                Ok(received)
            } else {
                Err(format!("{} deliveries", received.len()))
            }
        })
        .await
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.go_down();
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let verified = shared.secret.lock().as_ref().is_some_and(|secret| {
        standardwebhooks::Webhook::new(secret)
            .and_then(|hook| hook.verify(&body, &headers))
            .is_ok()
    });
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let answered = shared.status.load(Ordering::SeqCst);
    shared.received.lock().push(ReceivedWebhook {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        verified,
        answered,
        at: tokio::time::Instant::now(),
    });
    StatusCode::from_u16(answered).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
