//! Pacing calls to a rate-limited service (`rate_limit = "20/s"`).
//!
//! A service's limit usually means "no more than N requests in any period", so calls are
//! spaced evenly, one every `period / N`, with no burst: a burst of N followed by the steady
//! rate would put nearly 2N requests into some window. Each call reserves the next free slot
//! (the generic cell rate algorithm without burst tolerance), so waiting callers are served
//! in order and none is starved. A caller that would wait too long does not reserve at all.

use crate::time::Millis;
use std::time::Duration;

/// Paces calls: one every `interval`.
#[derive(Debug, Clone)]
pub struct Pacer {
    interval_micros: i64,
    /// The earliest time the next call may go out, in microseconds since the epoch.
    next_micros: i64,
}

impl Pacer {
    /// At most `count` calls per `per` (count ≥ 1).
    pub fn new(count: u32, per: Duration) -> Pacer {
        let interval = per.as_micros() / u128::from(count.max(1));
        Pacer {
            interval_micros: i64::try_from(interval).unwrap_or(i64::MAX),
            next_micros: i64::MIN,
        }
    }

    /// Reserves a slot for a call at or after `now`: the time to call, if it is within
    /// `max_wait` of `now`. Otherwise `Err` with the earliest time a call could go out, and
    /// nothing is reserved.
    pub fn reserve(&mut self, now: Millis, max_wait: Duration) -> Result<Millis, Millis> {
        let now_micros = now.0.saturating_mul(1000);
        let at = self.next_micros.max(now_micros);
        let wait = at - now_micros;
        if wait > i64::try_from(max_wait.as_micros()).unwrap_or(i64::MAX) {
            return Err(Millis(at.div_euclid(1000) + 1));
        }
        self.next_micros = at.saturating_add(self.interval_micros);
        Ok(Millis((at + 999).div_euclid(1000)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn calls_are_spaced_evenly_without_a_burst() {
        let mut p = Pacer::new(10, Duration::from_secs(1));
        let long = Duration::from_secs(60);
        let slots: Vec<i64> = (0..4)
            .map(|_| p.reserve(Millis(1_000), long).unwrap().0)
            .collect();
        assert_eq!(slots, vec![1_000, 1_100, 1_200, 1_300]);
        // After a quiet spell the next call goes at once.
        assert_eq!(p.reserve(Millis(5_000), long), Ok(Millis(5_000)));
    }

    #[test]
    fn a_caller_that_would_wait_too_long_reserves_nothing() {
        let mut p = Pacer::new(1, Duration::from_secs(10));
        assert_eq!(p.reserve(Millis(0), Duration::ZERO), Ok(Millis(0)));
        assert_eq!(
            p.reserve(Millis(1), Duration::from_secs(1)),
            Err(Millis(10_001))
        );
        assert_eq!(
            p.reserve(Millis(2), Duration::from_secs(20)),
            Ok(Millis(10_000))
        );
    }

    proptest! {
        /// However callers arrive, no window of one period ever holds more than `count` calls.
        #[test]
        fn no_period_holds_more_than_the_limit(
            count in 1u32..50,
            arrivals in proptest::collection::vec(0i64..3_000, 1..300),
        ) {
            let mut p = Pacer::new(count, Duration::from_secs(1));
            let mut now = 0;
            let mut calls = Vec::new();
            for gap in arrivals {
                now += gap / 10;
                if let Ok(at) = p.reserve(Millis(now), Duration::from_secs(3_600)) {
                    prop_assert!(at.0 >= now);
                    calls.push(at.0);
                }
            }
            calls.sort_unstable();
            for (i, start) in calls.iter().enumerate() {
                let in_window = calls[i..].iter().take_while(|&&c| c < start + 1_000).count();
                prop_assert!(in_window <= count as usize, "{in_window} calls in 1 s from {start}");
            }
        }
    }
}
