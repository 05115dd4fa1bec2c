//! Exponential backoff with full jitter.
//!
//! The cap for attempt `n` is `min(max, initial * multiplier^(n-1))`; the delay is drawn
//! uniformly from `[0, cap]` ("full jitter"), which spreads retries of many failed steps
//! so that a recovering service is not hit by a synchronized wave.

use std::time::Duration;

/// Backoff parameters of a stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The cap of the first retry.
    pub initial: Duration,
    /// The largest cap.
    pub max: Duration,
    /// How much the cap grows per attempt (≥ 1).
    pub multiplier: f64,
}

impl Backoff {
    /// The upper bound of the delay after attempt `attempt` (1-based).
    ///
    /// ```
    /// # use onramp_core::backoff::Backoff;
    /// # use std::time::Duration;
    /// let b = Backoff { initial: Duration::from_millis(500), max: Duration::from_secs(5), multiplier: 2.0 };
    /// assert_eq!(b.cap(1), Duration::from_millis(500));
    /// assert_eq!(b.cap(3), Duration::from_secs(2));
    /// assert_eq!(b.cap(30), Duration::from_secs(5));
    /// ```
    pub fn cap(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let factor = self.multiplier.max(1.0).powi(exponent);
        let secs = (self.initial.as_secs_f64() * factor).min(self.max.as_secs_f64());
        Duration::try_from_secs_f64(secs).unwrap_or(self.max)
    }

    /// The jittered delay after attempt `attempt`, given a uniform random `unit` in `[0, 1)`.
    ///
    /// ```
    /// # use onramp_core::backoff::Backoff;
    /// # use std::time::Duration;
    /// let b = Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(60), multiplier: 2.0 };
    /// assert_eq!(b.delay(2, 0.5), Duration::from_secs(1));
    /// assert_eq!(b.delay(2, 0.0), Duration::ZERO);
    /// ```
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        self.cap(attempt).mul_f64(unit.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn delays_stay_within_zero_and_the_cap(
            initial_ms in 1u64..10_000, max_ms in 1u64..1_000_000, mult in 1.0f64..10.0,
            attempt in 1u32..200, unit in 0.0f64..1.0,
        ) {
            let b = Backoff { initial: Duration::from_millis(initial_ms), max: Duration::from_millis(max_ms), multiplier: mult };
            let d = b.delay(attempt, unit);
            prop_assert!(d <= b.cap(attempt));
            prop_assert!(b.cap(attempt) <= Duration::from_millis(max_ms).max(Duration::from_millis(initial_ms)));
        }

        #[test]
        fn caps_never_shrink_with_more_attempts(attempt in 1u32..100) {
            let b = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(300), multiplier: 2.0 };
            prop_assert!(b.cap(attempt) <= b.cap(attempt + 1));
        }
    }
}
