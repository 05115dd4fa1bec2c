//! [`TestApp`]: the onramp API, engine and workers on loopback over a database of its own —
//! a temporary SQLite file, or a fresh PostgreSQL database (see [`Backend`]).
//!
//! It is assembled exactly as `onramp serve` assembles a process — `Config::parse`, a
//! `SqliteStore` or `PostgresStore`, `Engine::new`, `Runtime::start`, `onramp_api::router`
//! served by axum — only bound to `127.0.0.1:0` and with an admin token created up front.
//! Every app has its own database, so tests never see each other's data and can run in
//! parallel; the database goes when the app does.
//!
//! Two switches make time-driven behaviour testable without sleeping:
//! [`TestAppBuilder::manual_clock`] gives the engine a [`ManualClock`] that only moves when
//! [`TestApp::advance`] is called, and [`TestAppBuilder::without_runtime`] starts no workers
//! and no scheduler, so a test can claim steps itself, move the clock, call the scheduler's
//! duties once ([`TestApp::run_scheduler_once`]) and only then start the workers
//! ([`TestApp::start_runtime`]).

use crate::response::ApiResponse;
use crate::wait::{DEFAULT_TIMEOUT, wait_until};
use onramp_config::Config;
use onramp_core::auth::Role;
use onramp_core::clock::{ManualClock, SharedClock, SystemClock};
use onramp_core::time::Millis;
use onramp_engine::Engine;
use onramp_engine::runtime::{Runtime, RuntimeOptions};
use onramp_engine::scheduler::{lease_rescue, pickup_timeout};
use onramp_store::{SharedStore, StoreError};
use onramp_store_postgres::PostgresStore;
use onramp_store_postgres::testing::{FreshDatabase, TEST_URL_VAR};
use reqwest::Method;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Worker settings added to a test config that has no `[worker]` table: idle workers and the
/// scheduler look for work often, so tests that depend on polling stay fast.
pub const FAST_WORKER: &str =
    "\n[worker]\npoll_interval = \"25ms\"\nscheduler_interval = \"25ms\"\n";

/// How long in-flight steps get at [`TestApp::stop`].
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Connections per app on PostgreSQL: half of what `onramp serve` takes, which is plenty for
/// one test's load, so that parallel tests (and other suites on the same server) stay well
/// inside the server's `max_connections` (100 by default).
const PG_CONNECTIONS: u32 = 8;

/// The store a [`TestApp`] runs on.
///
/// Behaviour tests take one as their argument and run once per backend; see
/// [`Backend::is_available`] for PostgreSQL's precondition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary directory. Always available.
    Sqlite,
    /// A fresh database, created for the app and dropped with it, on the server named by
    /// `ONRAMP_TEST_POSTGRES_URL`.
    Postgres,
}

impl Backend {
    /// Whether this machine can run tests on the backend. PostgreSQL needs
    /// `ONRAMP_TEST_POSTGRES_URL`; without it this prints
    /// `skipped: ONRAMP_TEST_POSTGRES_URL is not set` (as the store's own tests do) and the
    /// caller passes without running anything.
    pub fn is_available(self) -> bool {
        match self {
            Backend::Sqlite => true,
            Backend::Postgres if std::env::var_os(TEST_URL_VAR).is_some() => true,
            Backend::Postgres => {
                eprintln!("skipped: {TEST_URL_VAR} is not set");
                false
            }
        }
    }

    /// Opens a new, empty store of this backend, and what must live as long as it: the
    /// temporary directory or the fresh database. Panics when it cannot.
    async fn open(self) -> (String, SharedStore, Scratch) {
        match self {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let url = format!("sqlite://{}", dir.path().join("onramp.db").display());
                let store = onramp_store_sqlite::SqliteStore::open(&url)
                    .await
                    .expect("open the test database");
                (url, Arc::new(store), Scratch::Dir(dir))
            }
            Backend::Postgres => {
                let server = std::env::var(TEST_URL_VAR)
                    .unwrap_or_else(|_| panic!("{TEST_URL_VAR} is not set; check is_available"));
                let db = FreshDatabase::create(&server)
                    .await
                    .unwrap_or_else(|e| panic!("create a database via {TEST_URL_VAR}: {e}"));
                // While other tests hold every connection slot the server turns the store's
                // first connection away; wait for a slot, as the store's pool does later on.
                let store = wait_until("the test database to open", DEFAULT_TIMEOUT, || async {
                    match PostgresStore::open_with(db.url(), PG_CONNECTIONS).await {
                        Ok(store) => Ok(store),
                        Err(StoreError::Unavailable(why)) => Err(why),
                        Err(e) => panic!("open the test database: {e}"),
                    }
                })
                .await;
                (db.url().to_owned(), Arc::new(store), Scratch::Database(db))
            }
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

/// Where an app's data lives, removed when the app is dropped.
#[derive(Debug)]
#[expect(dead_code, reason = "held only to be dropped with the app")]
enum Scratch {
    Dir(tempfile::TempDir),
    Database(FreshDatabase),
}

/// Options for a [`TestApp`]; start with [`TestApp::builder`].
#[derive(Debug, Clone)]
pub struct TestAppBuilder {
    config: String,
    backend: Backend,
    clock: Option<ManualClock>,
    runtime: bool,
    scheduler: bool,
}

impl TestAppBuilder {
    /// Runs on `backend` (SQLite unless told otherwise).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Uses `clock` instead of the system clock.
    pub fn manual_clock(mut self, clock: ManualClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Starts no workers and no scheduler; see [`TestApp::start_runtime`].
    pub fn without_runtime(mut self) -> Self {
        self.runtime = false;
        self
    }

    /// Starts the workers but not the scheduler (whose duties tests then run with
    /// [`TestApp::run_scheduler_once`]).
    pub fn without_scheduler(mut self) -> Self {
        self.scheduler = false;
        self
    }

    /// Builds and starts the app. Panics with the config's errors when it is invalid, and
    /// when its backend is not available (see [`Backend::is_available`]).
    pub async fn spawn(self) -> TestApp {
        crate::init_tracing();
        let mut text = self.config.clone();
        if !text.lines().any(|l| l.trim() == "[worker]") {
            text.push_str(FAST_WORKER);
        }
        let mut config = Config::parse(&text, "test.toml", &|_| None)
            .unwrap_or_else(|e| panic!("invalid test config:\n{e}\n---\n{text}"));
        // Tests poll as fast as they like; a test of the rate limit sets its own `[server]`.
        if !text.lines().any(|l| l.trim() == "[server]") {
            config.server.rate_limit = None;
        }
        let (url, store, scratch) = self.backend.open().await;
        config.store.url = url;
        let clock: SharedClock = match &self.clock {
            Some(c) => Arc::new(c.clone()),
            None => Arc::new(SystemClock),
        };
        let engine = Engine::new(store, config, clock)
            .await
            .expect("build the engine");
        let (admin_token, _) = engine
            .create_token("test-admin", Role::Admin, None, "test")
            .await
            .expect("create the admin token");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("the listener's address");
        let router = onramp_api::observed(
            onramp_api::router(onramp_api::AppState::new(engine.clone())),
            engine.clone(),
        );
        let http_stop = CancellationToken::new();
        let stopped = http_stop.clone();
        let http = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await;
        });
        let mut app = TestApp {
            base_url: format!("http://{addr}"),
            engine,
            admin_token,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client"),
            clock: self.clock,
            runtime: None,
            scheduler: self.scheduler,
            http_stop,
            http: Some(http),
            tokens: AtomicUsize::new(0),
            backend: self.backend,
            _scratch: scratch,
        };
        if self.runtime {
            app.start_runtime();
        }
        app
    }
}

/// A running onramp on loopback: the real API, engine and workers over a database of its
/// own. Build one with [`TestApp::spawn_on`] or [`TestApp::builder`]; see the crate docs.
#[derive(Debug)]
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// The engine behind the API (its store, catalog and clock).
    pub engine: Arc<Engine>,
    /// An admin token's secret.
    pub admin_token: String,
    /// The HTTP client the helpers use.
    pub client: reqwest::Client,
    clock: Option<ManualClock>,
    runtime: Option<Runtime>,
    scheduler: bool,
    http_stop: CancellationToken,
    http: Option<tokio::task::JoinHandle<()>>,
    tokens: AtomicUsize,
    backend: Backend,
    /// Last, so the database goes after everything that uses it.
    _scratch: Scratch,
}

impl TestApp {
    /// Starts an app on SQLite with `config_toml` (the store URL is replaced by a temporary
    /// file), the system clock, workers and the scheduler.
    pub async fn spawn(config_toml: &str) -> TestApp {
        TestApp::builder(config_toml).spawn().await
    }

    /// [`spawn`](Self::spawn) on `backend`.
    pub async fn spawn_on(backend: Backend, config_toml: &str) -> TestApp {
        TestApp::builder(config_toml).backend(backend).spawn().await
    }

    /// Options for an app with `config_toml`, on SQLite unless
    /// [`backend`](TestAppBuilder::backend) says otherwise.
    pub fn builder(config_toml: &str) -> TestAppBuilder {
        TestAppBuilder {
            config: config_toml.to_owned(),
            backend: Backend::Sqlite,
            clock: None,
            runtime: true,
            scheduler: true,
        }
    }

    /// The store this app runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts the workers (and the scheduler unless built without it). Panics if they run.
    pub fn start_runtime(&mut self) {
        assert!(self.runtime.is_none(), "the runtime is already running");
        self.runtime = Some(Runtime::start(
            self.engine.clone(),
            RuntimeOptions {
                stages: None,
                scheduler: self.scheduler,
                events: true,
            },
        ));
    }

    /// Stops the workers and scheduler (in-flight steps finish first), keeping the API up.
    pub async fn stop_runtime(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.stop(STOP_GRACE).await;
        }
    }

    /// Stops the API and then the workers, gracefully.
    pub async fn stop(mut self) {
        self.engine.live.close();
        self.http_stop.cancel();
        if let Some(http) = self.http.take() {
            let _ = http.await;
        }
        self.stop_runtime().await;
    }

    /// The manual clock. Panics when the app runs on the system clock.
    pub fn clock(&self) -> &ManualClock {
        self.clock
            .as_ref()
            .expect("this TestApp runs on the system clock; build it with .manual_clock(..)")
    }

    /// Moves the manual clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock().advance(by);
    }

    /// The engine's current time.
    pub fn now(&self) -> Millis {
        self.engine.clock.now()
    }

    /// Runs each scheduler duty once at the engine's current time; returns how many steps
    /// lease rescue handed back and how many pickup timeouts dead-lettered.
    pub async fn run_scheduler_once(&self) -> (usize, usize) {
        let now = self.now();
        let rescued = lease_rescue::run_once(&self.engine, now)
            .await
            .expect("lease rescue");
        let timed_out = pickup_timeout::run_once(&self.engine, now)
            .await
            .expect("pickup timeout");
        (rescued, timed_out)
    }

    /// A new token with `role`; returns its secret.
    pub async fn token(&self, role: Role) -> String {
        let n = self.tokens.fetch_add(1, Ordering::Relaxed);
        let (secret, _) = self
            .engine
            .create_token(&format!("test-{role}-{n}"), role, None, "test")
            .await
            .expect("create a token");
        secret
    }

    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A request with the admin token.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.request_as(Some(&self.admin_token), method, path)
    }

    /// A request with `token` (`None`: no `Authorization` header).
    pub fn request_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match token {
            Some(t) => request.bearer_auth(t),
            None => request,
        }
    }

    /// Sends a request and reads the whole response.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> ApiResponse {
        ApiResponse::send(&self.client, request).await
    }

    /// `GET path` as admin.
    pub async fn get(&self, path: &str) -> ApiResponse {
        self.send(self.request(Method::GET, path)).await
    }

    /// `GET path` with `token`.
    pub async fn get_as(&self, token: Option<&str>, path: &str) -> ApiResponse {
        self.send(self.request_as(token, Method::GET, path)).await
    }

    /// `POST path` with a JSON body, as admin.
    pub async fn post_json(&self, path: &str, body: &Value) -> ApiResponse {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    /// `POST path` with a JSON body and `token`.
    pub async fn post_json_as(&self, token: Option<&str>, path: &str, body: &Value) -> ApiResponse {
        self.send(self.request_as(token, Method::POST, path).json(body))
            .await
    }

    /// `POST path` without a body, as admin.
    pub async fn post(&self, path: &str) -> ApiResponse {
        self.send(self.request(Method::POST, path)).await
    }

    /// `PUT path` with a JSON body, as admin.
    pub async fn put_json(&self, path: &str, body: &Value) -> ApiResponse {
        self.send(self.request(Method::PUT, path).json(body)).await
    }

    /// Creates an onboarding as admin; panics unless the answer is 201. Returns the
    /// onboarding JSON.
    pub async fn create_onboarding(&self, body: Value) -> Value {
        let response = self.post_json("/v1/onboardings", &body).await;
        response.assert_status(201);
        response.body
    }

    /// `GET /v1/onboardings/{id}` (with steps); panics unless 200.
    pub async fn onboarding(&self, id: &str) -> Value {
        let response = self.get(&format!("/v1/onboardings/{id}")).await;
        response.assert_status(200);
        response.body
    }

    /// The onboarding's audit entries, in order.
    pub async fn audit(&self, id: &str) -> Vec<Value> {
        let response = self.get(&format!("/v1/onboardings/{id}/audit")).await;
        response.assert_status(200);
        response.body["items"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("audit without items: {response}"))
    }

    /// Waits (bounded) until the onboarding has `status`; returns it with its steps. Panics
    /// with the last body seen on timeout.
    pub async fn wait_for_status(&self, id: &str, status: &str) -> Value {
        self.wait_for_onboarding(&format!("onboarding {id} to be {status}"), id, |o| {
            o["status"] == status
        })
        .await
    }

    /// Waits (bounded) until step `seq` of the onboarding has `status`; returns the onboarding.
    pub async fn wait_for_step_status(&self, id: &str, seq: u32, status: &str) -> Value {
        self.wait_for_onboarding(
            &format!("step {seq} of onboarding {id} to be {status}"),
            id,
            |o| step(o, seq)["status"] == status,
        )
        .await
    }

    /// Waits (bounded) until the onboarding satisfies `done`; returns it.
    pub async fn wait_for_onboarding(
        &self,
        what: &str,
        id: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let path = format!("/v1/onboardings/{id}");
        wait_until(what, DEFAULT_TIMEOUT, || async {
            let response = self.get(&path).await;
            if response.status == 200 && done(&response.body) {
                Ok(response.body)
            } else {
                Err(response.to_string())
            }
        })
        .await
    }

    /// Panics unless the onboarding's audit hash chain verifies.
    pub async fn assert_audit_chain_valid(&self, id: &str) {
        let id = id.parse().expect("an onboarding id");
        let report = self
            .engine
            .verify_audit(Some(&id))
            .await
            .expect("verify the audit chain");
        assert!(report.entries > 0, "no audit entries for {id}");
        assert!(
            report.broken.is_empty(),
            "broken audit chain: {:?}",
            report.broken
        );
    }
}

/// Step `seq` (from 1) of an onboarding JSON; `Null` when absent.
pub fn step(onboarding: &Value, seq: u32) -> &Value {
    onboarding["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["seq"] == seq))
        .unwrap_or(&Value::Null)
}
