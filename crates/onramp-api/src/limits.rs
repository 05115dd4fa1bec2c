//! Per-token request rate limits: each API token has its own token bucket (`[server]
//! rate_limit`, `count` requests per period in bursts of up to `count`). A request beyond it is
//! answered 429 with `Retry-After`, before any work is done for it.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use onramp_config::RateLimit;
use std::num::NonZeroU32;
use std::time::Duration;

/// The buckets of every token of this process.
#[derive(Debug)]
pub struct TokenLimits {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
}

impl TokenLimits {
    /// Buckets refilled at `rate`; `None` lets every request through.
    pub fn new(rate: Option<RateLimit>) -> TokenLimits {
        let limiter = rate.and_then(|rate| {
            let burst = NonZeroU32::new(rate.count)?;
            let quota = Quota::with_period(rate.per / rate.count)?.allow_burst(burst);
            Some(RateLimiter::keyed(quota))
        });
        TokenLimits { limiter }
    }

    /// Takes one request from `token`'s bucket; when it is empty, how long until it is not.
    pub fn take(&self, token: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&token.to_owned())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_gets_its_burst_then_waits_while_others_are_unaffected() {
        let limits = TokenLimits::new(Some(RateLimit {
            count: 3,
            per: Duration::from_secs(60),
        }));
        for _ in 0..3 {
            assert_eq!(limits.take("alice"), Ok(()));
        }
        let wait = limits
            .take("alice")
            .expect_err("the fourth request is refused");
        assert!(wait > Duration::from_secs(15) && wait <= Duration::from_secs(20));
        assert_eq!(limits.take("bob"), Ok(()));
    }

    #[test]
    fn without_a_limit_everything_passes() {
        let limits = TokenLimits::new(None);
        for _ in 0..10_000 {
            assert_eq!(limits.take("alice"), Ok(()));
        }
    }
}
