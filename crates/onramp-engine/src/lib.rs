//! The onramp runtime: everything that does IO except SQL.
//!
//! - [`commands`]: the use cases the API and CLI call (create, retry, cancel, replay, ...).
//! - [`worker`]: one claim loop per stage, running steps with the stage's concurrency.
//! - [`executor`]: runs one attempt of a step (`sim`, `http`) and reports a
//!   [`StepOutcome`](onramp_core::outcome::StepOutcome).
//! - [`completer`]: turns outcomes into decisions and hands them to the store in batches —
//!   the only place that finishes steps.
//! - [`scheduler`]: time-driven duties (expired leases, pickup timeouts), each with `run_once`.
//! - [`outbox`]: delivers committed events to webhooks and the AMQP broker.
//! - [`live`]: wakes live status streams when their onboarding changes.
//! - [`webhooks`]: the webhook endpoint commands.
//! - [`runtime`]: starts and stops all of it under one cancellation token.
#![forbid(unsafe_code)]

pub mod catalog;
pub mod commands;
pub mod completer;
mod error;
pub mod executor;
pub mod live;
pub mod metrics;
pub mod outbox;
pub mod people;
pub mod runtime;
pub mod scheduler;
pub mod services;
pub mod tokens;
pub mod webhooks;
pub mod worker;

pub use error::EngineError;

use onramp_config::Config;
use onramp_core::StageName;
use onramp_core::clock::SharedClock;
use onramp_store::SharedStore;
use parking_lot::RwLock;
use std::collections::HashSet;
use std::sync::Arc;

/// How often live status streams look for changes whose notification was lost.
const LIVE_RESYNC: std::time::Duration = std::time::Duration::from_secs(30);

/// Shared state of one onramp process.
pub struct Engine {
    /// The store.
    pub store: SharedStore,
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The clock.
    pub clock: SharedClock,
    /// Task types and templates from the config.
    pub catalog: catalog::Catalog,
    /// HTTP client for `http` steps (connection pooling across steps).
    pub http: reqwest::Client,
    /// Circuit breakers, rate limits and statistics of the external services.
    pub services: services::Services,
    /// Wake-ups of live status streams.
    pub live: live::LiveUpdates,
    /// This process's metrics (`/metrics`).
    pub metrics: metrics::Metrics,
    /// How event delivery is doing in this process (for `/readyz`).
    pub events_health: Arc<outbox::EventsHealth>,
    paused: RwLock<HashSet<StageName>>,
    /// Wakes the scheduler when a delay or timeout ends.
    pub timers: Timers,
}

/// In-process timers for waits that end at a known time: each wakes the scheduler at its
/// instant so a delay ends on time, not a scheduler interval later. They are not durable —
/// the scheduler's regular sweep finds the waits again after a restart.
#[derive(Default)]
pub struct Timers {
    fired: Arc<tokio::sync::Notify>,
    clock: Option<SharedClock>,
}

impl std::fmt::Debug for Timers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timers").finish_non_exhaustive()
    }
}

impl Timers {
    /// Wakes the scheduler at `at` (now when it is past).
    pub fn at(&self, at: onramp_core::time::Millis) {
        let Some(clock) = &self.clock else { return };
        let delay = at.since(clock.now());
        let fired = self.fired.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            fired.notify_one();
        });
    }

    /// Resolves when a timer fired.
    pub async fn fired(&self) {
        self.fired.notified().await;
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    /// Builds an engine over a store: loads the config's templates into the store (a new
    /// version only where they changed) and the paused stages.
    pub async fn new(
        store: SharedStore,
        config: Config,
        clock: SharedClock,
    ) -> Result<Arc<Engine>, EngineError> {
        let catalog = catalog::Catalog::from_config(&config);
        for (name, template) in &config.templates {
            let spec = onramp_store::TemplateSpec {
                tasks: template.tasks.clone(),
                on_failure: template.on_failure,
            };
            store.sync_template(name, &spec, clock.now()).await?;
        }
        let services = services::Services::from_config(&config);
        let timer_clock = clock.clone();
        let paused = store.paused_stages().await?.into_iter().collect();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("onramp/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| EngineError::Internal(format!("HTTP client: {e}")))?;
        let live = live::LiveUpdates::start(&store.signals(), LIVE_RESYNC);
        let metrics = metrics::Metrics::new(config.stage_names());
        Ok(Arc::new(Engine {
            metrics,
            live,
            events_health: Arc::default(),
            store,
            config: Arc::new(config),
            clock,
            catalog,
            http,
            services,
            paused: RwLock::new(paused),
            timers: Timers {
                fired: Arc::default(),
                clock: Some(timer_clock),
            },
        }))
    }

    /// Assigns unassigned human tasks now (after a task opened, a task was done, a CSR was
    /// added or changed). Failures are logged: the scheduler tries again every interval.
    pub async fn assign_tasks(&self) {
        loop {
            match self
                .store
                .assign_tasks(self.clock.now(), scheduler::BATCH)
                .await
            {
                Ok(assigned) if assigned.len() == scheduler::BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "could not assign human tasks; will try again");
                    break;
                }
            }
        }
    }

    /// Whether workers of `stage` should stop claiming.
    pub fn is_paused(&self, stage: &StageName) -> bool {
        self.paused.read().contains(stage)
    }

    /// Re-reads the paused stages (other processes may have changed them).
    pub async fn refresh_paused(&self) -> Result<(), EngineError> {
        let paused: HashSet<StageName> = self.store.paused_stages().await?.into_iter().collect();
        *self.paused.write() = paused;
        Ok(())
    }
}
