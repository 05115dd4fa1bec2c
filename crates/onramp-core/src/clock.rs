//! The only place that reads the wall clock.
//!
//! Everything that needs "now" takes a [`Clock`], so tests can use a [`ManualClock`] and
//! move time by hand instead of sleeping.

use crate::time::Millis;
use parking_lot_free::AtomicMillis;
use std::sync::Arc;
use std::time::Duration;

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> Millis;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one sanctioned read of the wall clock
    fn now(&self) -> Millis {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Millis(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicMillis>);

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Millis) -> Self {
        Self(Arc::new(AtomicMillis::new(start)))
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.0.add(d);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.0.get()
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

mod parking_lot_free {
    //! An atomic timestamp without locks.
    use crate::time::Millis;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::time::Duration;

    #[derive(Debug)]
    pub struct AtomicMillis(AtomicI64);

    impl AtomicMillis {
        pub fn new(m: Millis) -> Self {
            Self(AtomicI64::new(m.0))
        }
        pub fn get(&self) -> Millis {
            Millis(self.0.load(Ordering::SeqCst))
        }
        pub fn add(&self, d: Duration) {
            let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            self.0.fetch_add(ms, Ordering::SeqCst);
        }
    }
}
