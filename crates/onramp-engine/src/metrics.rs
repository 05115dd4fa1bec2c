//! Prometheus metrics of one onramp process, served at `GET /metrics`.
//!
//! Two kinds of figures:
//! - **Counted** as they happen in this process: step attempts and their durations by outcome,
//!   HTTP requests, onboardings created, tasks flagged overdue. Counters start at zero when the
//!   process starts, as Prometheus expects; sum them over processes.
//! - **Levels** read from the database at scrape time: queues per stage, dead letters,
//!   onboardings per open status, the outbox backlog, CSR workload. Every level is read
//!   through an index over open rows only ([`onramp_store::WorkLevels`]), so a scrape costs the
//!   same on a database holding millions of finished onboardings, and a reading is reused for
//!   [`LEVELS_MAX_AGE`] so that several scrapers don't multiply the load. Every process reports
//!   the same levels: aggregate them with `max`, not `sum`.
//!
//! Breaker states are per process (as the breakers are) and are read at scrape time.

use crate::services::ServiceStatus;
use onramp_core::StageName;
use onramp_core::breaker::BreakerState;
use onramp_core::outcome::Resolution;
use onramp_core::time::Millis;
use onramp_store::{SharedStore, StageCounts, WorkLevels};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::{Duration, Instant};

/// How long a reading of the levels is reused.
pub const LEVELS_MAX_AGE: Duration = Duration::from_secs(1);

/// The media type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    stage: String,
    task: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    stage: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreakerLabels {
    service: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CsrLabels {
    csr: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn step_histogram() -> Histogram {
    // 1 ms to about 4 min.
    Histogram::new(exponential_buckets(0.001, 2.0, 18))
}

fn http_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The metrics of one process.
pub struct Metrics {
    registry: Registry,
    step_attempts: Family<StepLabels, Counter>,
    step_duration: Histograms<StepLabels>,
    onboardings_created: Counter,
    tasks_flagged_overdue: Counter,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Histograms<RouteLabels>,
    breaker_state: Family<BreakerLabels, Gauge>,
    queue_steps: Family<QueueLabels, Gauge>,
    dead_letters: Family<StageLabels, Gauge>,
    stage_paused: Family<StageLabels, Gauge>,
    onboardings: Family<StatusLabels, Gauge>,
    unpublished_events: Gauge,
    open_deliveries: Family<TargetLabels, Gauge>,
    unassigned_tasks: Gauge,
    overdue_tasks: Gauge,
    csr_assigned_tasks: Family<CsrLabels, Gauge>,
    levels_up: Gauge,
    /// The configured stages: each is shown, at zero when idle.
    stages: Vec<StageName>,
    /// The last reading of the levels; the lock also makes concurrent scrapes take turns, so
    /// one scrape never sees another's half-refreshed gauges.
    levels: tokio::sync::Mutex<Option<(Instant, WorkLevels)>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers every metric, all at zero; `stages` are the configured stages.
    pub fn new(stages: Vec<StageName>) -> Metrics {
        let mut registry = Registry::with_prefix("onramp");
        let m = Metrics {
            step_attempts: Family::default(),
            step_duration: Family::new_with_constructor(step_histogram),
            onboardings_created: Counter::default(),
            tasks_flagged_overdue: Counter::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(http_histogram),
            breaker_state: Family::default(),
            queue_steps: Family::default(),
            dead_letters: Family::default(),
            stage_paused: Family::default(),
            onboardings: Family::default(),
            unpublished_events: Gauge::default(),
            open_deliveries: Family::default(),
            unassigned_tasks: Gauge::default(),
            overdue_tasks: Gauge::default(),
            csr_assigned_tasks: Family::default(),
            levels_up: Gauge::default(),
            levels: tokio::sync::Mutex::new(None),
            stages,
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "step_attempts",
            "Step attempts finished by this process, by outcome (succeeded, retrying, dead, deferred, waiting, compensated)",
            m.step_attempts.clone(),
        );
        r.register(
            "step_duration_seconds",
            "How long step attempts ran, by stage, task and outcome",
            m.step_duration.clone(),
        );
        r.register(
            "onboardings_created",
            "Onboardings created through this process (idempotent replays not counted)",
            m.onboardings_created.clone(),
        );
        r.register(
            "tasks_flagged_overdue",
            "Human tasks this process flagged as past their due time",
            m.tasks_flagged_overdue.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests answered, by matched route, method and status",
            m.http_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "HTTP request latency until the response head, by matched route and method",
            m.http_duration.clone(),
        );
        r.register(
            "breaker_state",
            "Circuit breaker state per external service in this process (1 for the current state)",
            m.breaker_state.clone(),
        );
        r.register(
            "queue_steps",
            "Open steps per stage: queued, running (leased) and retrying (waiting for backoff)",
            m.queue_steps.clone(),
        );
        r.register(
            "dead_letters",
            "Open dead letters per stage",
            m.dead_letters.clone(),
        );
        r.register(
            "stage_paused",
            "1 while a stage is paused",
            m.stage_paused.clone(),
        );
        r.register(
            "onboardings",
            "Onboardings per open status (pending, running, waiting, failed, cancelling)",
            m.onboardings.clone(),
        );
        r.register(
            "outbox_unpublished_events",
            "Events committed but not yet handed to the delivery queues",
            m.unpublished_events.clone(),
        );
        r.register(
            "outbox_open_deliveries",
            "Event deliveries not yet delivered or dead, per target (webhook id or amqp)",
            m.open_deliveries.clone(),
        );
        r.register(
            "tasks_unassigned",
            "Human tasks waiting for a CSR",
            m.unassigned_tasks.clone(),
        );
        r.register(
            "tasks_overdue",
            "Open human tasks past their due time",
            m.overdue_tasks.clone(),
        );
        r.register(
            "csr_open_tasks",
            "Assigned, not yet done, human tasks per CSR",
            m.csr_assigned_tasks.clone(),
        );
        r.register(
            "levels_up",
            "1 when the last scrape could read the levels from the database",
            m.levels_up.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts one finished attempt of a step.
    pub fn step_attempt(
        &self,
        stage: &str,
        task: &str,
        compensation: bool,
        resolution: &Resolution,
        took: Duration,
    ) {
        let outcome = match resolution {
            Resolution::Succeed(_) if compensation => "compensated",
            Resolution::Succeed(_) => "succeeded",
            Resolution::ScheduleRetry { .. } => "retrying",
            Resolution::DeadLetter(_) => "dead",
            Resolution::Defer { .. } => "deferred",
            Resolution::Wait(_) => "waiting",
        };
        let labels = StepLabels {
            stage: stage.to_owned(),
            task: task.to_owned(),
            outcome,
        };
        self.step_attempts.get_or_create(&labels).inc();
        self.step_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Counts a created onboarding.
    pub fn onboarding_created(&self) {
        self.onboardings_created.inc();
    }

    /// Counts tasks flagged overdue.
    pub fn tasks_flagged_overdue(&self, count: usize) {
        self.tasks_flagged_overdue.inc_by(count as u64);
    }

    /// Counts one answered HTTP request. `route` is the matched route pattern (like
    /// `/v1/onboardings/{id}`), never the raw path, so ids don't multiply the series.
    pub fn http_request(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                method: method.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Every metric in the OpenMetrics text format ([`CONTENT_TYPE`]), with the levels read
    /// from `store` (or reused when fresh) and the breakers' current states.
    pub async fn render(
        &self,
        store: &SharedStore,
        services: &[ServiceStatus],
        now: Millis,
    ) -> String {
        let mut last = self.levels.lock().await;
        let fresh = last
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < LEVELS_MAX_AGE);
        if !fresh {
            match store.work_levels(now).await {
                Ok(levels) => {
                    self.show_levels(&levels);
                    self.levels_up.set(1);
                    *last = Some((Instant::now(), levels));
                }
                Err(e) => {
                    // The process's own figures are still worth serving.
                    tracing::warn!(error = %e, "metrics: could not read the work levels");
                    self.levels_up.set(0);
                }
            }
        }
        self.breaker_state.clear();
        for service in services {
            for state in [
                BreakerState::Closed,
                BreakerState::Open,
                BreakerState::HalfOpen,
            ] {
                self.breaker_state
                    .get_or_create(&BreakerLabels {
                        service: service.name.to_string(),
                        state: state.as_str(),
                    })
                    .set(i64::from(service.breaker == state));
            }
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    fn show_levels(&self, levels: &WorkLevels) {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for family in [&self.dead_letters, &self.stage_paused] {
            family.clear();
        }
        self.queue_steps.clear();
        let idle = self
            .stages
            .iter()
            .filter(|name| !levels.stages.iter().any(|s| &s.stage == *name))
            .map(|name| StageCounts {
                stage: name.clone(),
                queued: 0,
                running: 0,
                retrying: 0,
                dead: 0,
                paused: false,
            })
            .collect::<Vec<_>>();
        for s in levels.stages.iter().chain(&idle) {
            let stage = s.stage.to_string();
            for (state, n) in [
                ("queued", s.queued),
                ("running", s.running),
                ("retrying", s.retrying),
            ] {
                self.queue_steps
                    .get_or_create(&QueueLabels {
                        stage: stage.clone(),
                        state,
                    })
                    .set(count(n));
            }
            let labels = StageLabels { stage };
            self.dead_letters.get_or_create(&labels).set(count(s.dead));
            self.stage_paused
                .get_or_create(&labels)
                .set(i64::from(s.paused));
        }
        self.onboardings.clear();
        for status in ["pending", "running", "waiting", "failed", "cancelling"] {
            let n = levels
                .open_onboardings
                .iter()
                .find(|(s, _)| s.to_string() == status)
                .map_or(0, |(_, n)| *n);
            self.onboardings
                .get_or_create(&StatusLabels {
                    status: status.to_owned(),
                })
                .set(count(n));
        }
        self.unpublished_events
            .set(count(levels.unpublished_events));
        self.open_deliveries.clear();
        for (target, n) in &levels.open_deliveries {
            self.open_deliveries
                .get_or_create(&TargetLabels {
                    target: target.clone(),
                })
                .set(count(*n));
        }
        self.unassigned_tasks.set(count(levels.unassigned_tasks));
        self.overdue_tasks.set(count(levels.overdue_tasks));
        self.csr_assigned_tasks.clear();
        for (csr, n) in &levels.assigned_tasks {
            self.csr_assigned_tasks
                .get_or_create(&CsrLabels {
                    csr: csr.to_string(),
                })
                .set(count(*n));
        }
    }
}
