//! The validated configuration: what the rest of onramp reads.
//!
//! Every value here has passed validation (durations parsed, names checked, references
//! resolved), so consumers never re-check. Built-in defaults live in the `Default` impls.

use onramp_core::backoff::Backoff;
use onramp_core::onboarding::FailurePolicy;
use onramp_core::{ServiceName, SignalName, StageName, TaskTypeName, TemplateName};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

/// The whole `onramp.toml`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[store]`.
    pub store: StoreConfig,
    /// `[services.<name>]`: external HTTP services tasks call.
    pub services: BTreeMap<ServiceName, ServiceConfig>,
    /// `[stages.<name>]`: per-stage queue policies. Stages used by tasks but not declared
    /// here run with [`StageConfig::default`].
    pub stages: BTreeMap<StageName, StageConfig>,
    /// `[tasks.<name>]`: the task types onboardings are made of.
    pub tasks: BTreeMap<TaskTypeName, TaskConfig>,
    /// `[templates.<name>]`: named, ordered task lists.
    pub templates: BTreeMap<TemplateName, TemplateConfig>,
    /// `[events]`: where completion events go.
    pub events: EventsConfig,
    /// `[worker]`: how often idle workers and the scheduler look for work.
    pub worker: WorkerConfig,
}

impl Config {
    /// The policy of a stage: its `[stages.<name>]` table, or the defaults.
    pub fn stage(&self, name: &StageName) -> StageConfig {
        self.stages.get(name).cloned().unwrap_or_default()
    }

    /// Every stage: those declared and those any task runs in, sorted.
    pub fn stage_names(&self) -> Vec<StageName> {
        let declared = self.stages.keys().cloned();
        let used = self.tasks.values().map(|t| t.stage.clone());
        declared
            .chain(used)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// The address the HTTP API listens on (`ONRAMP_LISTEN` overrides it).
    pub listen: String,
    /// Requests each API token may make, in bursts of up to `count` (`None`: unlimited,
    /// written `rate_limit = "off"`). Beyond it the API answers 429 with `Retry-After`.
    pub rate_limit: Option<RateLimit>,
    /// Longest a request may take before it is answered 503 (event streams excepted).
    pub request_timeout: Duration,
}

/// Each token's default request rate: high enough for bulk imports and dashboards, low enough
/// that one runaway client cannot take the database from everyone else.
pub const DEFAULT_TOKEN_RATE_LIMIT: RateLimit = RateLimit {
    count: 200,
    per: Duration::from_secs(1),
};

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            rate_limit: Some(DEFAULT_TOKEN_RATE_LIMIT),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// `sqlite://PATH` or `postgres://...` (`ONRAMP_DATABASE_URL` overrides it).
    pub url: String,
    /// PostgreSQL connections this process keeps at most (one of them listens for the other
    /// processes' notifications). Every `serve` and `worker` process has its own pool, so
    /// their sum must stay under the server's `max_connections`.
    pub max_connections: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://onramp.db".to_owned(),
            max_connections: 16,
        }
    }
}

/// `[services.<name>]`: an external HTTP service.
#[derive(Clone, PartialEq)]
pub struct ServiceConfig {
    /// Scheme, host and optional path prefix that request paths are appended to.
    pub base_url: String,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Headers sent with every request (after `${VAR}` expansion; may hold secrets).
    pub headers: BTreeMap<String, String>,
    /// Most requests per period, across all steps calling this service.
    pub rate_limit: Option<RateLimit>,
    /// When to stop calling a failing service for a while.
    pub breaker: BreakerConfig,
}

/// Header values often carry credentials, so they are never printed.
impl fmt::Debug for ServiceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceConfig")
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("rate_limit", &self.rate_limit)
            .field("breaker", &self.breaker)
            .finish()
    }
}

/// A rate limit: at most `count` requests per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per period (≥ 1).
    pub count: u32,
    /// The period (> 0).
    pub per: Duration,
}

/// Written as in the config: `20/s`, `100/m`, `10/500ms`.
impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            _ if self.per.subsec_nanos() != 0 => None,
            1 => Some("s"),
            60 => Some("m"),
            3600 => Some("h"),
            86400 => Some("d"),
            _ => None,
        };
        match unit {
            Some(unit) => write!(f, "{}/{unit}", self.count),
            None => write!(f, "{}/{}", self.count, humantime::format_duration(self.per)),
        }
    }
}

/// A circuit breaker: after `failure_threshold` consecutive retryable failures the service is
/// not called for `open_for`; its steps are deferred without spending attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (≥ 1).
    pub failure_threshold: u32,
    /// How long it stays open before one trial request.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

/// `[stages.<name>]`: how one stage's queue is worked.
#[derive(Debug, Clone, PartialEq)]
pub struct StageConfig {
    /// Steps of this stage run at once, per process.
    pub concurrency: usize,
    /// Attempts before a retryable failure goes to the dead-letter queue.
    pub max_attempts: u32,
    /// Delay between attempts (full jitter).
    pub backoff: Backoff,
    /// How long a claimed step stays leased before another worker may take it over.
    pub visibility_timeout: Duration,
    /// A step queued longer than this is dead-lettered.
    pub pickup_timeout: Duration,
}

impl Default for StageConfig {
    fn default() -> Self {
        Self {
            concurrency: 8,
            max_attempts: 5,
            backoff: Backoff {
                initial: Duration::from_millis(500),
                max: Duration::from_secs(5 * 60),
                multiplier: 2.0,
            },
            visibility_timeout: Duration::from_secs(60),
            pickup_timeout: Duration::from_secs(60 * 60),
        }
    }
}

/// `[tasks.<name>]`: a task type.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskConfig {
    /// The stage whose queue and workers run it.
    pub stage: StageName,
    /// What running it means.
    pub kind: TaskKind,
}

/// The kinds of task, with the settings of each.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskKind {
    /// Call an external service.
    Http(Box<HttpTask>),
    /// Assign work to a customer-success rep.
    Human {
        /// The skill a rep needs.
        skill: String,
        /// How long the work takes (for scheduling reps).
        duration: Duration,
        /// The deadline from assignment, if any.
        due_within: Option<Duration>,
    },
    /// Wait for an external signal.
    Signal {
        /// The signal's name.
        signal: SignalName,
        /// How long to wait before failing, if bounded.
        timeout: Option<Duration>,
    },
    /// Wait a fixed time.
    Delay {
        /// How long.
        duration: Duration,
    },
    /// Simulated work: sleeps `latency`, fails (retryably) with probability `fail_rate`.
    Sim {
        /// Time each attempt takes.
        latency: Duration,
        /// Probability in `[0, 1]` that an attempt fails.
        fail_rate: f64,
    },
}

impl TaskKind {
    /// The `kind = "..."` value.
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Http(_) => "http",
            TaskKind::Human { .. } => "human",
            TaskKind::Signal { .. } => "signal",
            TaskKind::Delay { .. } => "delay",
            TaskKind::Sim { .. } => "sim",
        }
    }
}

/// An `http` task.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpTask {
    /// The service called.
    pub service: ServiceName,
    /// The request each attempt sends.
    pub request: RequestTemplate,
    /// The request that undoes it when an onboarding is cancelled.
    pub compensate: Option<RequestTemplate>,
}

/// A request whose strings are minijinja templates (`{{customer.email}}`,
/// `{{steps.verify_identity.output.id}}`).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestTemplate {
    /// Upper-case HTTP method.
    pub method: String,
    /// Path appended to the service's `base_url`; starts with `/`.
    pub path: String,
    /// Query parameters.
    pub query: BTreeMap<String, String>,
    /// Headers, added to the service's.
    pub headers: BTreeMap<String, String>,
    /// JSON body; string leaves are templates.
    pub body: Option<Value>,
}

/// `[templates.<name>]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateConfig {
    /// The task types, in order.
    pub tasks: Vec<TaskTypeName>,
    /// What a dead-lettered step leads to: `hold` (default; stay failed for an operator) or
    /// `compensate` (cancel at once, undoing what ran).
    pub on_failure: FailurePolicy,
}

/// `[events]`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventsConfig {
    /// `[events.amqp]`: publish events to RabbitMQ.
    pub amqp: Option<AmqpConfig>,
    /// `[events.webhooks]`: how webhook deliveries are attempted and retried.
    pub webhooks: WebhooksConfig,
    /// `[events] keep_alive`: how often an idle event stream sends a comment line, so that
    /// proxies keep the connection open (default 15 s).
    pub keep_alive: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            amqp: None,
            webhooks: WebhooksConfig::default(),
            keep_alive: Duration::from_secs(15),
        }
    }
}

/// `[events.webhooks]`.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhooksConfig {
    /// How long one POST may take before it counts as failed (default 10 s).
    pub timeout: Duration,
    /// How long a delivery is retried, from its first attempt, before it is dead
    /// (default 24 h).
    pub retry_for: Duration,
    /// The delay between attempts (default 5 s doubling up to 1 h, equal jitter).
    pub backoff: Backoff,
    /// POSTs in flight at once per endpoint and process (default 4); an endpoint's deliveries
    /// never wait for another endpoint's.
    pub concurrency: usize,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retry_for: Duration::from_secs(24 * 3600),
            backoff: Backoff {
                initial: Duration::from_secs(5),
                max: Duration::from_secs(3600),
                multiplier: 2.0,
            },
            concurrency: 4,
        }
    }
}

/// `[events.amqp]`.
#[derive(Clone, PartialEq)]
pub struct AmqpConfig {
    /// `amqp://` or `amqps://` URL (may hold a password).
    pub url: String,
    /// The exchange events are published to.
    pub exchange: String,
}

/// The URL may carry a password, so only its scheme is printed.
impl fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.url.split("://").next().unwrap_or("");
        f.debug_struct("AmqpConfig")
            .field("url", &format_args!("{scheme}://…"))
            .field("exchange", &self.exchange)
            .finish()
    }
}

/// `[worker]`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// How often an idle stage worker looks for work without being woken (a safety net: new
    /// work in the same process wakes workers at once).
    pub poll_interval: Duration,
    /// How often the scheduler requeues expired leases and dead-letters stale steps.
    pub scheduler_interval: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            scheduler_interval: Duration::from_secs(1),
        }
    }
}
