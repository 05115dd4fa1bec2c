//! The circuit breaker of an external service, as a pure state machine.
//!
//! ```text
//! closed --(failure_threshold consecutive retryable failures)--> open
//! open --(open_for has passed; the next call is the probe)--> half_open
//! half_open --(probe succeeded)--> closed
//! half_open --(probe failed)--> open
//! ```
//! While open, calls are refused until the breaker may close, and the engine defers those
//! steps without charging an attempt. In `half_open` exactly one call (the probe) goes out;
//! the others wait a moment for its result. Results of calls that started before the breaker
//! opened no longer count. Time is passed in, so the machine is tested without sleeping.

use crate::time::Millis;
use serde::Serialize;
use std::time::Duration;

/// The breaker's state, as `GET /v1/services` shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go out.
    Closed,
    /// Calls are refused until the open period ends.
    Open,
    /// One probe call decides whether to close.
    HalfOpen,
}

impl BreakerState {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// Whether a call may go out now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Call.
    Call,
    /// Call: this is the half-open probe; its result decides.
    Probe,
    /// Do not call before `until`.
    Refuse {
        /// When to ask again.
        until: Millis,
    },
}

/// How a call went, for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    /// The service answered (2xx, or a 4xx that says the request, not the service, is wrong).
    Healthy,
    /// A retryable failure: 408, 429, 5xx, timeout, connection error.
    Failed,
}

/// A state change, for logs and audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerChange {
    /// Before.
    pub from: BreakerState,
    /// After.
    pub to: BreakerState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    Closed { consecutive_failures: u32 },
    Open { since: Millis, until: Millis },
    HalfOpen { probing: bool },
}

/// One service's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    failure_threshold: u32,
    open_for: Duration,
    inner: Inner,
    /// Bumped whenever the breaker opens, so results of calls admitted before are ignored.
    generation: u64,
}

/// What a call must hand back with its result: which breaker period admitted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    generation: u64,
    probe: bool,
}

impl Breaker {
    /// A closed breaker that opens after `failure_threshold` consecutive failures (at least
    /// 1) and stays open for `open_for`.
    pub fn new(failure_threshold: u32, open_for: Duration) -> Breaker {
        Breaker {
            failure_threshold: failure_threshold.max(1),
            open_for,
            inner: Inner::Closed {
                consecutive_failures: 0,
            },
            generation: 0,
        }
    }

    /// The current state (an open breaker whose period has ended still says `open` until
    /// the next call asks).
    pub fn state(&self) -> BreakerState {
        match self.inner {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Consecutive failures counted while closed.
    pub fn consecutive_failures(&self) -> u32 {
        match self.inner {
            Inner::Closed {
                consecutive_failures,
            } => consecutive_failures,
            _ => self.failure_threshold,
        }
    }

    /// When it opened and until when, while open.
    pub fn open_period(&self) -> Option<(Millis, Millis)> {
        match self.inner {
            Inner::Open { since, until } => Some((since, until)),
            _ => None,
        }
    }

    /// Asks whether a call may go out at `now`; on `Call` or `Probe` the returned ticket must
    /// come back with the result ([`Breaker::record`]) or be given back ([`Breaker::release`]).
    pub fn admit(&mut self, now: Millis) -> (Admission, Option<Ticket>, Option<BreakerChange>) {
        let ticket = |probe| Ticket {
            generation: self.generation,
            probe,
        };
        match self.inner {
            Inner::Closed { .. } => (Admission::Call, Some(ticket(false)), None),
            Inner::Open { until, .. } if now < until => (Admission::Refuse { until }, None, None),
            Inner::Open { .. } => {
                self.inner = Inner::HalfOpen { probing: true };
                let change = BreakerChange {
                    from: BreakerState::Open,
                    to: BreakerState::HalfOpen,
                };
                (Admission::Probe, Some(ticket(true)), Some(change))
            }
            Inner::HalfOpen { probing: false } => {
                self.inner = Inner::HalfOpen { probing: true };
                (Admission::Probe, Some(ticket(true)), None)
            }
            Inner::HalfOpen { probing: true } => {
                let wait = self.open_for.min(Duration::from_secs(1));
                (
                    Admission::Refuse {
                        until: now.plus(wait),
                    },
                    None,
                    None,
                )
            }
        }
    }

    /// Records the result of an admitted call.
    pub fn record(
        &mut self,
        ticket: Ticket,
        result: CallResult,
        now: Millis,
    ) -> Option<BreakerChange> {
        if ticket.generation != self.generation {
            return None;
        }
        match (self.inner, result, ticket.probe) {
            (Inner::Closed { .. }, CallResult::Healthy, _) => {
                self.inner = Inner::Closed {
                    consecutive_failures: 0,
                };
                None
            }
            (
                Inner::Closed {
                    consecutive_failures,
                },
                CallResult::Failed,
                _,
            ) => {
                let failures = consecutive_failures + 1;
                if failures >= self.failure_threshold {
                    Some(self.open(BreakerState::Closed, now))
                } else {
                    self.inner = Inner::Closed {
                        consecutive_failures: failures,
                    };
                    None
                }
            }
            (Inner::HalfOpen { .. }, CallResult::Healthy, true) => {
                self.inner = Inner::Closed {
                    consecutive_failures: 0,
                };
                Some(BreakerChange {
                    from: BreakerState::HalfOpen,
                    to: BreakerState::Closed,
                })
            }
            (Inner::HalfOpen { .. }, CallResult::Failed, true) => {
                Some(self.open(BreakerState::HalfOpen, now))
            }
            _ => None,
        }
    }

    /// Gives back a ticket whose call never happened (the attempt was abandoned): a probe
    /// that did not go out lets the next call probe instead.
    pub fn release(&mut self, ticket: Ticket) {
        if ticket.probe
            && ticket.generation == self.generation
            && self.inner == (Inner::HalfOpen { probing: true })
        {
            self.inner = Inner::HalfOpen { probing: false };
        }
    }

    fn open(&mut self, from: BreakerState, now: Millis) -> BreakerChange {
        self.generation += 1;
        self.inner = Inner::Open {
            since: now,
            until: now.plus(self.open_for),
        };
        BreakerChange {
            from,
            to: BreakerState::Open,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OPEN_FOR: Duration = Duration::from_secs(30);

    fn fail(b: &mut Breaker, now: Millis) -> Option<BreakerChange> {
        let (admission, ticket, _) = b.admit(now);
        assert!(matches!(admission, Admission::Call | Admission::Probe));
        b.record(ticket.unwrap(), CallResult::Failed, now)
    }

    #[test]
    fn opens_after_the_threshold_of_consecutive_failures() {
        let mut b = Breaker::new(3, OPEN_FOR);
        assert_eq!(fail(&mut b, Millis(0)), None);
        assert_eq!(fail(&mut b, Millis(1)), None);
        assert_eq!(
            fail(&mut b, Millis(2)),
            Some(BreakerChange {
                from: BreakerState::Closed,
                to: BreakerState::Open
            })
        );
        assert_eq!(
            b.admit(Millis(3)).0,
            Admission::Refuse {
                until: Millis(30_002)
            }
        );
    }

    #[test]
    fn a_success_resets_the_count() {
        let mut b = Breaker::new(2, OPEN_FOR);
        fail(&mut b, Millis(0));
        let (_, t, _) = b.admit(Millis(1));
        b.record(t.unwrap(), CallResult::Healthy, Millis(1));
        assert_eq!(fail(&mut b, Millis(2)), None);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn after_the_open_period_one_probe_goes_out_and_decides() {
        let mut b = Breaker::new(1, OPEN_FOR);
        fail(&mut b, Millis(0));
        let (admission, probe, change) = b.admit(Millis(30_000));
        assert_eq!(admission, Admission::Probe);
        assert_eq!(change.unwrap().to, BreakerState::HalfOpen);
        assert!(matches!(
            b.admit(Millis(30_001)).0,
            Admission::Refuse { .. }
        ));
        let change = b.record(probe.unwrap(), CallResult::Healthy, Millis(30_002));
        assert_eq!(change.unwrap().to, BreakerState::Closed);
        assert_eq!(b.admit(Millis(30_003)).0, Admission::Call);
    }

    #[test]
    fn a_failed_probe_reopens_for_another_period() {
        let mut b = Breaker::new(1, OPEN_FOR);
        fail(&mut b, Millis(0));
        let (_, probe, _) = b.admit(Millis(40_000));
        let change = b.record(probe.unwrap(), CallResult::Failed, Millis(40_001));
        assert_eq!(
            change,
            Some(BreakerChange {
                from: BreakerState::HalfOpen,
                to: BreakerState::Open
            })
        );
        assert_eq!(b.open_period(), Some((Millis(40_001), Millis(70_001))));
    }

    #[test]
    fn results_of_calls_admitted_before_it_opened_are_ignored() {
        let mut b = Breaker::new(1, OPEN_FOR);
        let (_, early, _) = b.admit(Millis(0));
        fail(&mut b, Millis(1));
        let (_, probe, _) = b.admit(Millis(31_000));
        assert_eq!(
            b.record(early.unwrap(), CallResult::Healthy, Millis(31_001)),
            None
        );
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.release(probe.unwrap());
        assert_eq!(b.admit(Millis(31_002)).0, Admission::Probe);
    }

    proptest! {
        /// Whatever happens, at most one probe is out at a time, and an open breaker refuses
        /// every call until its period ends.
        #[test]
        fn never_two_probes_and_never_a_call_while_open(
            ops in proptest::collection::vec((0u8..4, 0u64..5_000), 1..200)
        ) {
            let mut b = Breaker::new(3, Duration::from_secs(2));
            let mut now = 0u64;
            let mut outstanding: Vec<Ticket> = Vec::new();
            for (op, dt) in ops {
                now += dt;
                let t = Millis(now as i64);
                match op {
                    0 | 1 => {
                        let before = b.clone();
                        let (admission, ticket, _) = b.admit(t);
                        if let Some((_, until)) = before.open_period() {
                            let refused = matches!(admission, Admission::Refuse { .. });
                            prop_assert!(t >= until || refused);
                        }
                        if admission == Admission::Probe {
                            let probing = outstanding.iter().any(|o| o.probe && o.generation == b.generation);
                            prop_assert!(!probing);
                        }
                        outstanding.extend(ticket);
                    }
                    2 if !outstanding.is_empty() => {
                        let ticket = outstanding.remove(0);
                        b.record(ticket, CallResult::Failed, t);
                    }
                    3 if !outstanding.is_empty() => {
                        let ticket = outstanding.remove(0);
                        b.record(ticket, CallResult::Healthy, t);
                    }
                    _ => {}
                }
            }
        }
    }
}
