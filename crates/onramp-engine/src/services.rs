//! The external services of this process: a circuit breaker, a pacer and recent statistics
//! per `[services.<name>]`.
//!
//! Before an `http` step calls its service it asks the service's [`Gate`]: an open breaker,
//! or a rate limit that would keep the step waiting too long, defers the step (requeued for
//! later without charging an attempt) instead of calling. Otherwise the step waits for its
//! paced slot and calls, and hands the result back through its [`Pass`], which feeds the
//! breaker and the statistics `GET /v1/services` shows.
//!
//! Breakers and pacers are per process, as in most resilience libraries: with several worker
//! processes each opens its own breaker after its own failures, and a limit of `20/s` holds
//! per process.

use onramp_config::{Config, ServiceConfig};
use onramp_core::ServiceName;
use onramp_core::breaker::{Admission, Breaker, BreakerChange, BreakerState, CallResult, Ticket};
use onramp_core::pacer::Pacer;
use onramp_core::time::Millis;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// How far back the error rate looks.
pub const STATS_WINDOW: Duration = Duration::from_secs(60);

/// Most calls remembered for the error rate.
const STATS_MAX_CALLS: usize = 1_000;

/// Every configured service's gate.
#[derive(Debug, Default)]
pub struct Services {
    gates: BTreeMap<ServiceName, Arc<Gate>>,
}

impl Services {
    /// A gate for every `[services.<name>]`.
    pub fn from_config(config: &Config) -> Services {
        let gates = config
            .services
            .iter()
            .map(|(name, service)| (name.clone(), Arc::new(Gate::new(name.clone(), service))))
            .collect();
        Services { gates }
    }

    /// A service's gate.
    pub fn gate(&self, name: &ServiceName) -> Option<&Arc<Gate>> {
        self.gates.get(name)
    }

    /// The status of every service, by name.
    pub fn statuses(&self, now: Millis) -> Vec<ServiceStatus> {
        self.gates.values().map(|g| g.status(now)).collect()
    }
}

/// What a step may do about its service now.
#[derive(Debug)]
pub enum Entry {
    /// Call at `at` (now, or the paced slot reserved for it), then report through the pass.
    Call {
        /// When to send the request.
        at: Millis,
        /// Hands the result back.
        pass: Pass,
    },
    /// Do not call; defer the step until `until`.
    Defer {
        /// Why.
        reason: String,
        /// When it may be tried again.
        until: Millis,
    },
}

/// One service's breaker, pacer and statistics.
#[derive(Debug)]
pub struct Gate {
    name: ServiceName,
    base_url: String,
    rate_limit: Option<String>,
    open_for: Duration,
    breaker: Mutex<Breaker>,
    pacer: Option<Mutex<Pacer>>,
    stats: Mutex<Stats>,
}

#[derive(Debug, Default)]
struct Stats {
    calls: VecDeque<(Millis, bool)>,
    last_error: Option<(Millis, String)>,
    last_change: Option<(Millis, BreakerState)>,
}

impl Gate {
    fn new(name: ServiceName, config: &ServiceConfig) -> Gate {
        Gate {
            name,
            base_url: config.base_url.clone(),
            rate_limit: config.rate_limit.map(|r| r.to_string()),
            open_for: config.breaker.open_for,
            breaker: Mutex::new(Breaker::new(
                config.breaker.failure_threshold,
                config.breaker.open_for,
            )),
            pacer: config
                .rate_limit
                .map(|r| Mutex::new(Pacer::new(r.count, r.per))),
            stats: Mutex::new(Stats::default()),
        }
    }

    /// Asks to call the service at `now`, waiting at most `max_wait` for a paced slot.
    pub fn enter(self: &Arc<Self>, now: Millis, max_wait: Duration) -> Entry {
        let (admission, ticket, change) = self.breaker.lock().admit(now);
        if let Some(change) = change {
            self.changed(change, now, None);
        }
        if let Admission::Refuse { until } = admission {
            return Entry::Defer {
                reason: format!(
                    "the circuit breaker of service `{}` is open; not calling it",
                    self.name
                ),
                until: until.plus(spread(self.open_for)),
            };
        }
        let pass = Pass {
            gate: self.clone(),
            ticket,
        };
        let Some(pacer) = &self.pacer else {
            return Entry::Call { at: now, pass };
        };
        let reserved = pacer.lock().reserve(now, max_wait);
        match reserved {
            Ok(at) => Entry::Call { at, pass },
            Err(earliest) => {
                drop(pass); // gives the breaker ticket back
                Entry::Defer {
                    reason: format!(
                        "service `{}` is at its rate limit of {}",
                        self.name,
                        self.rate_limit.as_deref().unwrap_or("?")
                    ),
                    until: earliest,
                }
            }
        }
    }

    fn record(
        &self,
        ticket: Option<Ticket>,
        result: CallResult,
        error: Option<String>,
        now: Millis,
    ) {
        let change = ticket.and_then(|t| self.breaker.lock().record(t, result, now));
        {
            let mut stats = self.stats.lock();
            stats.calls.push_back((now, result == CallResult::Failed));
            if stats.calls.len() > STATS_MAX_CALLS {
                stats.calls.pop_front();
            }
            if let Some(error) = &error {
                stats.last_error = Some((now, error.clone()));
            }
        }
        if let Some(change) = change {
            self.changed(change, now, error.as_deref());
        }
    }

    fn changed(&self, change: BreakerChange, now: Millis, error: Option<&str>) {
        self.stats.lock().last_change = Some((now, change.to));
        let (from, to) = (change.from.as_str(), change.to.as_str());
        match change.to {
            BreakerState::Open => tracing::warn!(
                service = %self.name, from, to, last_error = error.unwrap_or(""),
                "circuit breaker opened: steps calling this service are deferred"
            ),
            BreakerState::HalfOpen => {
                tracing::info!(service = %self.name, from, to, "circuit breaker half-open: probing")
            }
            BreakerState::Closed => {
                tracing::info!(service = %self.name, from, to, "circuit breaker closed: calls resume")
            }
        }
    }

    /// What `GET /v1/services` shows of this service.
    pub fn status(&self, now: Millis) -> ServiceStatus {
        let breaker = self.breaker.lock().clone();
        let stats = self.stats.lock();
        let since = now.minus(STATS_WINDOW);
        let recent: Vec<bool> = stats
            .calls
            .iter()
            .filter(|(at, _)| *at >= since)
            .map(|(_, failed)| *failed)
            .collect();
        let failures = recent.iter().filter(|f| **f).count();
        ServiceStatus {
            name: self.name.clone(),
            base_url: self.base_url.clone(),
            breaker: breaker.state(),
            consecutive_failures: breaker.consecutive_failures(),
            open_until: breaker.open_period().map(|(_, until)| until.to_rfc3339()),
            breaker_changed_at: stats.last_change.map(|(at, _)| at.to_rfc3339()),
            rate_limit: self.rate_limit.clone(),
            recent_calls: recent.len() as u64,
            recent_failures: failures as u64,
            error_rate: if recent.is_empty() {
                0.0
            } else {
                failures as f64 / recent.len() as f64
            },
            last_error: stats.last_error.as_ref().map(|(at, message)| LastError {
                at: at.to_rfc3339(),
                message: message.clone(),
            }),
        }
    }
}

/// Leave to call the service once; report how it went with [`Pass::report`]. Dropped
/// without a report (the attempt was abandoned), it gives its breaker ticket back, so an
/// abandoned probe does not keep the breaker half-open for ever.
#[derive(Debug)]
pub struct Pass {
    gate: Arc<Gate>,
    ticket: Option<Ticket>,
}

impl Pass {
    /// Reports the call's result (`error` for the statistics when it failed or was refused).
    pub fn report(mut self, result: CallResult, error: Option<String>, now: Millis) {
        let ticket = self.ticket.take();
        self.gate.record(ticket, result, error, now);
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.gate.breaker.lock().release(ticket);
        }
    }
}

/// A little randomness (at most a quarter of the open period, and 250 ms), so the steps
/// deferred by one open breaker do not all come back at the same instant.
fn spread(open_for: Duration) -> Duration {
    let max = (open_for / 4).min(Duration::from_millis(250));
    Duration::from_micros(rand::random_range(0..=max.as_micros() as u64))
}

/// One service as `GET /v1/services` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceStatus {
    /// The service.
    pub name: ServiceName,
    /// Where it is.
    pub base_url: String,
    /// `closed`, `open` or `half_open`.
    pub breaker: BreakerState,
    /// Retryable failures in a row (the threshold while open).
    pub consecutive_failures: u32,
    /// While open: when the next probe may go out.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub open_until: Option<String>,
    /// When the breaker last changed state.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub breaker_changed_at: Option<String>,
    /// The configured limit, like `20/s`.
    pub rate_limit: Option<String>,
    /// Calls in the last minute.
    pub recent_calls: u64,
    /// Of which failed retryably.
    pub recent_failures: u64,
    /// `recent_failures / recent_calls` (0 without calls).
    pub error_rate: f64,
    /// The last error and when it happened.
    pub last_error: Option<LastError>,
}

/// A service's last error.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LastError {
    /// When (RFC 3339).
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub at: String,
    /// What.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use onramp_config::BreakerConfig;

    fn gate(threshold: u32) -> Arc<Gate> {
        let config = ServiceConfig {
            base_url: "http://127.0.0.1:1".into(),
            timeout: Duration::from_secs(1),
            headers: BTreeMap::new(),
            rate_limit: None,
            breaker: BreakerConfig {
                failure_threshold: threshold,
                open_for: Duration::from_secs(10),
            },
        };
        Arc::new(Gate::new("crm".parse().unwrap(), &config))
    }

    fn call(g: &Arc<Gate>, now: Millis) -> Pass {
        match g.enter(now, Duration::ZERO) {
            Entry::Call { pass, .. } => pass,
            other => panic!("expected a call, got {other:?}"),
        }
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_call_probe() {
        let g = gate(1);
        call(&g, Millis(0)).report(CallResult::Failed, Some("HTTP 503".into()), Millis(0));
        assert!(matches!(
            g.enter(Millis(1), Duration::ZERO),
            Entry::Defer { .. }
        ));
        drop(call(&g, Millis(10_000)));
        let probe = call(&g, Millis(10_001));
        probe.report(CallResult::Healthy, None, Millis(10_002));
        assert_eq!(g.status(Millis(10_003)).breaker, BreakerState::Closed);
    }

    #[test]
    fn the_status_shows_the_error_rate_and_last_error_of_the_last_minute() {
        let g = gate(5);
        call(&g, Millis(0)).report(CallResult::Failed, Some("HTTP 502".into()), Millis(0));
        call(&g, Millis(1)).report(CallResult::Healthy, None, Millis(1));
        let s = g.status(Millis(2));
        assert_eq!(
            (s.recent_calls, s.recent_failures, s.error_rate),
            (2, 1, 0.5)
        );
        assert_eq!(s.last_error.unwrap().message, "HTTP 502");
        assert_eq!(g.status(Millis(120_000)).recent_calls, 0);
    }
}
