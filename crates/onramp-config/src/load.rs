//! Turning TOML text into a validated [`Config`], collecting every error on the way.
//!
//! The file is parsed into a TOML tree, `${VAR}` references are expanded in its strings, and
//! each entry (`services.crm`, `tasks.verify_identity`, ...) is decoded on its own into a raw
//! struct whose durations are still strings. A type error therefore hides nothing outside its
//! entry; unknown keys are collected with `serde_ignored`; then the raw values are converted
//! and cross-checked (task → stage, task → service, template → task), each problem recorded
//! at its key path.

use crate::duration::{parse_duration, parse_rate};
use crate::error::{ConfigErrors, Errors};
use crate::model::*;
use crate::path::{KeyPath, Segment};
use crate::references;
use onramp_core::backoff::Backoff;
use onramp_core::onboarding::FailurePolicy;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;
use toml::{Table, Value};

/// Looks up an environment variable; tests pass a closure over a map.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Config {
    /// Parses and validates the text of a config file. `file` names it in errors; `env`
    /// resolves `${VAR}` references and the `ONRAMP_DATABASE_URL` / `ONRAMP_LISTEN` overrides.
    pub fn parse(text: &str, file: &str, env: Env<'_>) -> Result<Config, ConfigErrors> {
        let mut errors = Errors::new(file);
        let mut table = match text.parse::<Table>() {
            Ok(t) => t,
            Err(e) => {
                let (line, column) = e
                    .span()
                    .map(|span| line_column(text, span.start))
                    .unwrap_or((1, 1));
                errors.syntax(line, column, e.message().trim().to_owned());
                return errors.finish(Config::default());
            }
        };
        expand_table(&mut table, &KeyPath::root(), env, &mut errors);
        let mut config = Decoder {
            errors: &mut errors,
        }
        .config(table);
        apply_env_overrides(&mut config, env);
        check_server_and_store(&config, &mut errors);
        errors.finish(config)
    }

    /// Reads and validates a config file.
    pub fn load(path: &std::path::Path, env: Env<'_>) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, &file, env),
            Err(e) => {
                let mut errors = Errors::new(&file);
                errors.at(&KeyPath::root(), format!("cannot read the file: {e}"));
                errors.finish(Config::default())
            }
        }
    }

    /// The built-in defaults (no tasks, no templates) with the environment's overrides.
    pub fn defaults_with_env(env: Env<'_>) -> Config {
        let mut config = Config::default();
        apply_env_overrides(&mut config, env);
        config
    }
}

fn apply_env_overrides(config: &mut Config, env: Env<'_>) {
    if let Some(url) = env("ONRAMP_DATABASE_URL").filter(|v| !v.is_empty()) {
        config.store.url = url;
    }
    if let Some(listen) = env("ONRAMP_LISTEN").filter(|v| !v.is_empty()) {
        config.server.listen = listen;
    }
}

fn check_server_and_store(config: &Config, errors: &mut Errors) {
    if config.server.listen.parse::<SocketAddr>().is_err() {
        errors.at_unless_reported(
            &KeyPath::root().key("server").key("listen"),
            format!(
                "`{}` is not an IP address and port, like \"127.0.0.1:8080\"",
                config.server.listen
            ),
        );
    }
    let url = &config.store.url;
    let known = ["sqlite:", "postgres://", "postgresql://"];
    if !known.iter().any(|scheme| url.starts_with(scheme)) {
        errors.at_unless_reported(
            &KeyPath::root().key("store").key("url"),
            "use sqlite://PATH or postgres://USER@HOST/DATABASE",
        );
    }
}

/// The 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

// ---------------------------------------------------------------------------------------
// ${VAR} expansion

fn expand_table(table: &mut Table, path: &KeyPath, env: Env<'_>, errors: &mut Errors) {
    for (key, value) in table.iter_mut() {
        expand_value(value, &path.key(key.as_str()), env, errors);
    }
}

fn expand_value(value: &mut Value, path: &KeyPath, env: Env<'_>, errors: &mut Errors) {
    match value {
        Value::String(s) => match expand(s, env) {
            Ok(expanded) => *s = expanded,
            Err(message) => errors.at(path, message),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(item, &path.index(i), env, errors);
            }
        }
        Value::Table(t) => expand_table(t, path, env, errors),
        _ => {}
    }
}

/// Replaces each `${NAME}` with the variable's value; `$${` writes a literal `${`.
///
/// ```
/// # use onramp_config::expand;
/// let env = |name: &str| (name == "TOKEN").then(|| "s3cret".to_owned());
/// assert_eq!(expand("Bearer ${TOKEN}", &env).unwrap(), "Bearer s3cret");
/// assert_eq!(expand("costs $${5}", &env).unwrap(), "costs ${5}");
/// assert!(expand("${MISSING}", &env).unwrap_err().contains("MISSING"));
/// ```
pub fn expand(s: &str, env: Env<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| "unclosed `${`: write ${NAME}, or $${ for a literal".to_owned())?;
            let name = &tail[..end];
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(format!(
                    "`${{{name}}}` is not a valid variable reference: use letters, digits and _"
                ));
            }
            let value =
                env(name).ok_or_else(|| format!("environment variable `{name}` is not set"))?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Raw, serde-facing shapes: every leaf optional and durations as strings, so that each
// problem is reported by our checks with a precise message.

#[derive(Deserialize, Default)]
struct RawServer {
    listen: Option<String>,
    rate_limit: Option<String>,
    request_timeout: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawStore {
    url: Option<String>,
    max_connections: Option<i64>,
}

#[derive(Deserialize)]
struct RawService {
    base_url: Option<String>,
    timeout: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    rate_limit: Option<String>,
    breaker: Option<RawBreaker>,
}

#[derive(Deserialize)]
struct RawBreaker {
    failure_threshold: Option<i64>,
    open_for: Option<String>,
}

#[derive(Deserialize)]
struct RawStage {
    concurrency: Option<i64>,
    max_attempts: Option<i64>,
    backoff: Option<RawBackoff>,
    visibility_timeout: Option<String>,
    pickup_timeout: Option<String>,
}

#[derive(Deserialize)]
struct RawBackoff {
    initial: Option<String>,
    max: Option<String>,
    multiplier: Option<f64>,
}

#[derive(Deserialize)]
struct RawTask {
    kind: Option<String>,
    stage: Option<String>,
    // http
    service: Option<String>,
    request: Option<RawRequest>,
    compensate: Option<RawRequest>,
    // human
    skill: Option<String>,
    duration: Option<String>,
    due_within: Option<String>,
    // signal
    signal: Option<String>,
    timeout: Option<String>,
    // sim
    latency: Option<String>,
    fail_rate: Option<f64>,
}

#[derive(Deserialize)]
struct RawRequest {
    method: Option<String>,
    path: Option<String>,
    #[serde(default)]
    query: BTreeMap<String, String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawTemplate {
    tasks: Option<Vec<String>>,
    on_failure: Option<String>,
}

#[derive(Deserialize)]
struct RawEvents {
    amqp: Option<RawAmqp>,
    webhooks: Option<RawWebhooks>,
    keep_alive: Option<String>,
}

#[derive(Deserialize)]
struct RawWebhooks {
    timeout: Option<String>,
    retry_for: Option<String>,
    backoff: Option<RawBackoff>,
    concurrency: Option<i64>,
}

#[derive(Deserialize)]
struct RawAmqp {
    url: Option<String>,
    exchange: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawWorker {
    poll_interval: Option<String>,
    scheduler_interval: Option<String>,
}

/// Which keys apply to which task kind; any other known key is an error for that kind.
const KIND_FIELDS: &[(&str, &[&str])] = &[
    ("http", &["service", "request", "compensate"]),
    ("human", &["skill", "duration", "due_within"]),
    ("signal", &["signal", "timeout"]),
    ("delay", &["duration"]),
    ("sim", &["latency", "fail_rate"]),
];

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

// ---------------------------------------------------------------------------------------
// Decoding and validation

struct Decoder<'e> {
    errors: &'e mut Errors,
}

impl Decoder<'_> {
    fn config(&mut self, table: Table) -> Config {
        let root = KeyPath::root();
        let mut config = Config::default();
        let mut raw_tasks = BTreeMap::new();
        let mut raw_templates = BTreeMap::new();
        for (key, value) in table {
            let path = root.key(key.as_str());
            match key.as_str() {
                "server" => {
                    let raw: RawServer = self.decode(value, &path).unwrap_or_default();
                    if let Some(listen) = raw.listen {
                        config.server.listen = listen;
                    }
                    match raw.rate_limit.as_deref() {
                        None => {}
                        Some("off") => config.server.rate_limit = None,
                        Some(text) => match parse_rate(text) {
                            Ok(rate) => config.server.rate_limit = Some(rate),
                            Err(e) => self
                                .errors
                                .at(&path.key("rate_limit"), format!("{e} (or \"off\")")),
                        },
                    }
                    config.server.request_timeout = self.positive_duration(
                        raw.request_timeout,
                        &path.key("request_timeout"),
                        config.server.request_timeout,
                    );
                }
                "store" => {
                    let raw: RawStore = self.decode(value, &path).unwrap_or_default();
                    if let Some(url) = raw.url {
                        config.store.url = url;
                    }
                    config.store.max_connections = self.integer(
                        raw.max_connections,
                        &path.key("max_connections"),
                        (2, 1000),
                        config.store.max_connections as i64,
                    ) as u32;
                }
                "services" => {
                    for (name, entry) in self.entries(value, &path) {
                        if let Some(raw) = self.decode(entry, &path.key(name.as_str())) {
                            let service = self.service(raw, &path.key(name.as_str()));
                            if let (Some(name), Some(service)) =
                                (self.name(&name, &path.key(name.as_str())), service)
                            {
                                config.services.insert(name, service);
                            }
                        }
                    }
                }
                "stages" => {
                    for (name, entry) in self.entries(value, &path) {
                        let entry_path = path.key(name.as_str());
                        if let Some(raw) = self.decode(entry, &entry_path) {
                            let stage = self.stage(raw, &entry_path);
                            if let Some(name) = self.name(&name, &entry_path) {
                                config.stages.insert(name, stage);
                            }
                        }
                    }
                }
                "tasks" => {
                    for (name, entry) in self.entries(value, &path) {
                        let entry_path = path.key(name.as_str());
                        let keys = entry
                            .as_table()
                            .map(|t| t.keys().cloned().collect::<Vec<_>>())
                            .unwrap_or_default();
                        if let Some(raw) = self.decode::<RawTask>(entry, &entry_path) {
                            raw_tasks.insert(name, (raw, keys));
                        }
                    }
                }
                "templates" => {
                    for (name, entry) in self.entries(value, &path) {
                        let entry_path = path.key(name.as_str());
                        if let Some(raw) = self.decode::<RawTemplate>(entry, &entry_path) {
                            raw_templates.insert(name, raw);
                        }
                    }
                }
                "events" => {
                    if let Some(raw) = self.decode::<RawEvents>(value, &path) {
                        config.events.amqp = raw.amqp.and_then(|a| self.amqp(a, &path.key("amqp")));
                        config.events.keep_alive = self.positive_duration(
                            raw.keep_alive,
                            &path.key("keep_alive"),
                            config.events.keep_alive,
                        );
                        if let Some(w) = raw.webhooks {
                            config.events.webhooks = self.webhooks(w, &path.key("webhooks"));
                        }
                    }
                }
                "worker" => {
                    let raw: RawWorker = self.decode(value, &path).unwrap_or_default();
                    let defaults = WorkerConfig::default();
                    config.worker = WorkerConfig {
                        poll_interval: self.positive_duration(
                            raw.poll_interval,
                            &path.key("poll_interval"),
                            defaults.poll_interval,
                        ),
                        scheduler_interval: self.positive_duration(
                            raw.scheduler_interval,
                            &path.key("scheduler_interval"),
                            defaults.scheduler_interval,
                        ),
                    };
                }
                _ => self.errors.at(
                    &path,
                    "unknown section: expected server, store, services, stages, tasks, \
                     templates, events or worker",
                ),
            }
        }
        for (name, (raw, keys)) in raw_tasks {
            let path = root.key("tasks").key(name.as_str());
            let task = self.task(raw, &keys, &path, &config);
            if let (Some(name), Some(task)) = (self.name(&name, &path), task) {
                config.tasks.insert(name, task);
            }
        }
        self.check_task_references(&config);
        for (name, raw) in raw_templates {
            let path = root.key("templates").key(name.as_str());
            let template = self.template(raw, &path, &config);
            if let (Some(name), Some(template)) = (self.name(&name, &path), template) {
                config.templates.insert(name, template);
            }
        }
        self.check_timeouts_fit_leases(&config);
        config
    }

    /// Decodes one entry, recording a type error or unknown keys at their paths.
    fn decode<T: DeserializeOwned>(&mut self, value: Value, path: &KeyPath) -> Option<T> {
        let mut unknown = Vec::new();
        let mut record = |p: serde_ignored::Path<'_>| unknown.push(ignored_path(&p));
        let ignored = serde_ignored::Deserializer::new(value, &mut record);
        let result: Result<T, _> = serde_path_to_error::deserialize(ignored);
        for rest in unknown {
            self.errors.at(&path.join(rest), "unknown key");
        }
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                let at = path.join(e.path().iter().filter_map(|s| match s {
                    serde_path_to_error::Segment::Map { key } => Some(Segment::Key(key.clone())),
                    serde_path_to_error::Segment::Seq { index } => Some(Segment::Index(*index)),
                    _ => None,
                }));
                self.errors.at(&at, e.into_inner().to_string());
                None
            }
        }
    }

    /// The entries of a `[section.<name>]` table.
    fn entries(&mut self, value: Value, path: &KeyPath) -> Vec<(String, Value)> {
        match value {
            Value::Table(t) => t.into_iter().collect(),
            other => {
                self.errors.at(
                    path,
                    format!("expected a table, found {}", other.type_str()),
                );
                Vec::new()
            }
        }
    }

    fn name<N: FromStr>(&mut self, name: &str, path: &KeyPath) -> Option<N>
    where
        N::Err: std::fmt::Display,
    {
        match name.parse() {
            Ok(n) => Some(n),
            Err(e) => {
                self.errors.at(path, e.to_string());
                None
            }
        }
    }

    fn duration(&mut self, text: Option<String>, path: &KeyPath, default: Duration) -> Duration {
        match text {
            None => default,
            Some(t) => parse_duration(&t).unwrap_or_else(|e| {
                self.errors.at(path, e);
                default
            }),
        }
    }

    fn positive_duration(
        &mut self,
        text: Option<String>,
        path: &KeyPath,
        default: Duration,
    ) -> Duration {
        let d = self.duration(text, path, default);
        if d.is_zero() {
            self.errors.at(path, "must be longer than zero");
            return default;
        }
        d
    }

    fn integer(
        &mut self,
        value: Option<i64>,
        path: &KeyPath,
        range: (i64, i64),
        default: i64,
    ) -> i64 {
        match value {
            None => default,
            Some(v) if (range.0..=range.1).contains(&v) => v,
            Some(v) => {
                self.errors.at(
                    path,
                    format!("{v} is out of range: use {} to {}", range.0, range.1),
                );
                default
            }
        }
    }

    fn required<T>(&mut self, value: Option<T>, path: &KeyPath, what: &str) -> Option<T> {
        if value.is_none() {
            self.errors.missing(path, format!("missing: {what}"));
        }
        value
    }

    fn service(&mut self, raw: RawService, path: &KeyPath) -> Option<ServiceConfig> {
        let base_url = self.required(
            raw.base_url,
            &path.key("base_url"),
            "the service's URL, like \"http://127.0.0.1:9001\"",
        );
        if let Some(url) = &base_url {
            let valid = ["http://", "https://"]
                .iter()
                .any(|s| url.strip_prefix(s).is_some_and(|host| !host.is_empty()));
            if !valid {
                self.errors.at(
                    &path.key("base_url"),
                    format!("`{url}` is not an http:// or https:// URL"),
                );
            }
        }
        let timeout =
            self.positive_duration(raw.timeout, &path.key("timeout"), Duration::from_secs(10));
        let rate_limit = raw.rate_limit.and_then(|r| {
            parse_rate(&r)
                .map_err(|e| self.errors.at(&path.key("rate_limit"), e))
                .ok()
        });
        let defaults = BreakerConfig::default();
        let breaker = match raw.breaker {
            None => defaults,
            Some(b) => {
                let at = path.key("breaker");
                BreakerConfig {
                    failure_threshold: self.integer(
                        b.failure_threshold,
                        &at.key("failure_threshold"),
                        (1, 1_000_000),
                        i64::from(defaults.failure_threshold),
                    ) as u32,
                    open_for: self.positive_duration(
                        b.open_for,
                        &at.key("open_for"),
                        defaults.open_for,
                    ),
                }
            }
        };
        for name in raw.headers.keys() {
            if is_invalid_header_name(name) {
                self.errors.at(
                    &path.key("headers").key(name.as_str()),
                    "not a valid HTTP header name",
                );
            }
        }
        Some(ServiceConfig {
            base_url: base_url?,
            timeout,
            headers: raw.headers,
            rate_limit,
            breaker,
        })
    }

    fn stage(&mut self, raw: RawStage, path: &KeyPath) -> StageConfig {
        let d = StageConfig::default();
        let backoff = self.backoff(raw.backoff, &path.key("backoff"), d.backoff);
        StageConfig {
            concurrency: self.integer(
                raw.concurrency,
                &path.key("concurrency"),
                (1, 4096),
                d.concurrency as i64,
            ) as usize,
            max_attempts: self.integer(
                raw.max_attempts,
                &path.key("max_attempts"),
                (1, 1000),
                i64::from(d.max_attempts),
            ) as u32,
            backoff,
            visibility_timeout: self.positive_duration(
                raw.visibility_timeout,
                &path.key("visibility_timeout"),
                d.visibility_timeout,
            ),
            pickup_timeout: self.positive_duration(
                raw.pickup_timeout,
                &path.key("pickup_timeout"),
                d.pickup_timeout,
            ),
        }
    }

    fn task(
        &mut self,
        raw: RawTask,
        keys: &[String],
        path: &KeyPath,
        config: &Config,
    ) -> Option<TaskConfig> {
        let kinds = KIND_FIELDS
            .iter()
            .map(|(k, _)| *k)
            .collect::<Vec<_>>()
            .join(", ");
        let kind = self.required(raw.kind, &path.key("kind"), &format!("one of {kinds}"));
        let stage = self
            .required(
                raw.stage,
                &path.key("stage"),
                "the stage that runs this task",
            )
            .and_then(|s| self.name(&s, &path.key("stage")));
        let kind = kind?;
        let Some((_, own_fields)) = KIND_FIELDS.iter().find(|(k, _)| *k == kind) else {
            self.errors.at(
                &path.key("kind"),
                format!("unknown kind `{kind}`: use one of {kinds}"),
            );
            return None;
        };
        for key in keys {
            let belongs_elsewhere = KIND_FIELDS
                .iter()
                .any(|(_, fields)| fields.contains(&key.as_str()));
            if belongs_elsewhere && !own_fields.contains(&key.as_str()) {
                self.errors.at(
                    &path.key(key.as_str()),
                    format!("does not apply to `{kind}` tasks"),
                );
            }
        }
        let task_kind = match kind.as_str() {
            "http" => {
                let service = self
                    .required(raw.service, &path.key("service"), "the service to call")
                    .and_then(|s| self.name::<onramp_core::ServiceName>(&s, &path.key("service")));
                if let Some(s) = &service
                    && !config.services.contains_key(s)
                {
                    self.errors.at(
                        &path.key("service"),
                        format!("no [services.{s}] is configured"),
                    );
                }
                let request = self
                    .required(raw.request, &path.key("request"), "the request to send")
                    .and_then(|r| self.request(r, &path.key("request")));
                let compensate = raw
                    .compensate
                    .and_then(|r| self.request(r, &path.key("compensate")));
                TaskKind::Http(Box::new(HttpTask {
                    service: service?,
                    request: request?,
                    compensate,
                }))
            }
            "human" => {
                let skill = self.required(raw.skill, &path.key("skill"), "the skill a rep needs");
                if let Some(s) = &skill {
                    self.name::<onramp_core::TaskTypeName>(s, &path.key("skill"));
                }
                TaskKind::Human {
                    skill: skill?,
                    duration: self.positive_duration(
                        raw.duration,
                        &path.key("duration"),
                        Duration::from_secs(30 * 60),
                    ),
                    due_within: raw.due_within.map(|d| {
                        self.positive_duration(Some(d), &path.key("due_within"), Duration::ZERO)
                    }),
                }
            }
            "signal" => {
                let signal = self
                    .required(raw.signal, &path.key("signal"), "the signal's name")
                    .and_then(|s| self.name(&s, &path.key("signal")));
                TaskKind::Signal {
                    signal: signal?,
                    timeout: raw.timeout.map(|t| {
                        self.positive_duration(Some(t), &path.key("timeout"), Duration::ZERO)
                    }),
                }
            }
            "delay" => {
                let duration =
                    self.required(raw.duration, &path.key("duration"), "how long to wait");
                TaskKind::Delay {
                    duration: self.duration(duration, &path.key("duration"), Duration::ZERO),
                }
            }
            _ => {
                let fail_rate = raw.fail_rate.unwrap_or(0.0);
                if !(0.0..=1.0).contains(&fail_rate) {
                    self.errors
                        .at(&path.key("fail_rate"), "must be between 0.0 and 1.0");
                }
                TaskKind::Sim {
                    latency: self.duration(raw.latency, &path.key("latency"), Duration::ZERO),
                    fail_rate: fail_rate.clamp(0.0, 1.0),
                }
            }
        };
        Some(TaskConfig {
            stage: stage?,
            kind: task_kind,
        })
    }

    fn request(&mut self, raw: RawRequest, path: &KeyPath) -> Option<RequestTemplate> {
        let method = self
            .required(raw.method, &path.key("method"), "the HTTP method")
            .map(|m| m.to_ascii_uppercase());
        if let Some(m) = &method
            && !METHODS.contains(&m.as_str())
        {
            self.errors.at(
                &path.key("method"),
                format!("unknown method `{m}`: use one of {}", METHODS.join(", ")),
            );
        }
        let request_path = self.required(raw.path, &path.key("path"), "the request path");
        if let Some(p) = &request_path {
            if !p.starts_with('/') {
                self.errors.at(&path.key("path"), "must start with `/`");
            }
            self.template_syntax(p, &path.key("path"));
        }
        for (key, value) in &raw.query {
            self.template_syntax(value, &path.key("query").key(key.as_str()));
        }
        for (key, value) in &raw.headers {
            let at = path.key("headers").key(key.as_str());
            if is_invalid_header_name(key) {
                self.errors.at(&at, "not a valid HTTP header name");
            }
            self.template_syntax(value, &at);
        }
        if let Some(body) = &raw.body {
            self.body_syntax(body, &path.key("body"));
        }
        Some(RequestTemplate {
            method: method?,
            path: request_path?,
            query: raw.query,
            headers: raw.headers,
            body: raw.body,
        })
    }

    fn body_syntax(&mut self, value: &serde_json::Value, path: &KeyPath) {
        match value {
            serde_json::Value::String(s) => self.template_syntax(s, path),
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.body_syntax(item, &path.index(i));
                }
            }
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    self.body_syntax(v, &path.key(k.as_str()));
                }
            }
            _ => {}
        }
    }

    fn template_syntax(&mut self, text: &str, path: &KeyPath) {
        let env = minijinja::Environment::new();
        if let Err(e) = env.template_from_str(text) {
            self.errors.at(
                path,
                format!("invalid template: {}", e.detail().unwrap_or("syntax error")),
            );
        }
    }

    fn template(
        &mut self,
        raw: RawTemplate,
        path: &KeyPath,
        config: &Config,
    ) -> Option<TemplateConfig> {
        let at = path.key("tasks");
        let names = self.required(raw.tasks, &at, "the ordered list of task types")?;
        if names.is_empty() {
            self.errors.at(&at, "must list at least one task type");
        }
        let on_failure = match raw.on_failure.as_deref().map(str::parse::<FailurePolicy>) {
            None => Some(FailurePolicy::Hold),
            Some(Ok(policy)) => Some(policy),
            Some(Err(why)) => {
                self.errors.at(&path.key("on_failure"), why);
                None
            }
        };
        let mut tasks = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let Some(task) = self.name::<onramp_core::TaskTypeName>(name, &at.index(i)) else {
                continue;
            };
            match config.tasks.get(&task).map(|t| &t.kind) {
                None => self
                    .errors
                    .at(&at.index(i), format!("no [tasks.{task}] is configured")),
                Some(TaskKind::Http(http)) => {
                    for problem in references::check(&task, http, &tasks) {
                        if let references::BadReference::StepNotBefore { .. } = problem {
                            self.errors
                                .at(&at.index(i), format!("task `{task}`: {problem}"));
                        }
                    }
                }
                Some(_) => {}
            }
            tasks.push(task);
        }
        (tasks.len() == names.len() && !names.is_empty()).then_some(TemplateConfig {
            tasks,
            on_failure: on_failure?,
        })
    }

    fn backoff(&mut self, raw: Option<RawBackoff>, at: &KeyPath, default: Backoff) -> Backoff {
        let Some(b) = raw else {
            return default;
        };
        let initial = self.duration(b.initial, &at.key("initial"), default.initial);
        let max = self.duration(b.max, &at.key("max"), default.max);
        let multiplier = b.multiplier.unwrap_or(default.multiplier);
        if !(1.0..=100.0).contains(&multiplier) {
            self.errors
                .at(&at.key("multiplier"), "must be between 1.0 and 100.0");
        }
        if initial > max {
            self.errors.at(
                &at.key("initial"),
                format!(
                    "is longer than backoff.max ({})",
                    humantime::format_duration(max)
                ),
            );
        }
        Backoff {
            initial,
            max,
            multiplier: multiplier.clamp(1.0, 100.0),
        }
    }

    fn webhooks(&mut self, raw: RawWebhooks, path: &KeyPath) -> WebhooksConfig {
        let d = WebhooksConfig::default();
        WebhooksConfig {
            timeout: self.positive_duration(raw.timeout, &path.key("timeout"), d.timeout),
            retry_for: self.positive_duration(raw.retry_for, &path.key("retry_for"), d.retry_for),
            backoff: self.backoff(raw.backoff, &path.key("backoff"), d.backoff),
            concurrency: self.integer(
                raw.concurrency,
                &path.key("concurrency"),
                (1, 256),
                d.concurrency as i64,
            ) as usize,
        }
    }

    fn amqp(&mut self, raw: RawAmqp, path: &KeyPath) -> Option<AmqpConfig> {
        let url = self.required(raw.url, &path.key("url"), "the broker URL")?;
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            self.errors
                .at(&path.key("url"), "use an amqp:// or amqps:// URL");
        }
        Some(AmqpConfig {
            url,
            exchange: raw.exchange.unwrap_or_else(|| "onramp.events".to_owned()),
        })
    }

    /// Variables no onboarding can define (`{{custmer.email}}`) are errors of the task itself;
    /// whether the steps a task uses run before it depends on the template (checked there).
    fn check_task_references(&mut self, config: &Config) {
        let all: Vec<_> = config.tasks.keys().cloned().collect();
        for (name, task) in &config.tasks {
            let TaskKind::Http(http) = &task.kind else {
                continue;
            };
            for problem in references::check(name, http, &all) {
                self.errors.at(
                    &KeyPath::root().key("tasks").key(name.as_str()),
                    problem.to_string(),
                );
            }
        }
    }

    /// A lease must outlast the request it covers; otherwise another worker takes over a step
    /// that is still being called, and the service sees the request twice.
    fn check_timeouts_fit_leases(&mut self, config: &Config) {
        for (task_name, task) in &config.tasks {
            let TaskKind::Http(http) = &task.kind else {
                continue;
            };
            let Some(service) = config.services.get(&http.service) else {
                continue;
            };
            let lease = config.stage(&task.stage).visibility_timeout;
            if service.timeout >= lease {
                self.errors.at(
                    &KeyPath::root()
                        .key("services")
                        .key(http.service.as_str())
                        .key("timeout"),
                    format!(
                        "{} is not shorter than the visibility_timeout ({}) of stage `{}`, \
                         which runs task `{task_name}`",
                        humantime::format_duration(service.timeout),
                        humantime::format_duration(lease),
                        task.stage
                    ),
                );
            }
        }
    }
}

/// Header names are RFC 7230 tokens.
fn is_invalid_header_name(name: &str) -> bool {
    name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    let mut segments = Vec::new();
    collect_ignored(path, &mut segments);
    segments
}

fn collect_ignored(path: &serde_ignored::Path<'_>, out: &mut Vec<Segment>) {
    use serde_ignored::Path;
    match path {
        Path::Root => {}
        Path::Seq { parent, index } => {
            collect_ignored(parent, out);
            out.push(Segment::Index(*index));
        }
        Path::Map { parent, key } => {
            collect_ignored(parent, out);
            out.push(Segment::Key(key.clone()));
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => collect_ignored(parent, out),
    }
}
