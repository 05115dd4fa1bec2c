//! Wake-ups for live status streams, without a database poll per subscriber.
//!
//! One task per process reads the store's change broadcast ([`Signals`]) — which on
//! PostgreSQL also carries the changes other processes announce — and wakes only the
//! subscribers of the onboarding that changed. A woken subscriber then reads its own
//! onboarding's new status rows. Thousands of idle subscribers cost one map entry and one
//! `watch` receiver each.
//!
//! Notifications can be lost (a lagging broadcast, a PostgreSQL listener that reconnected),
//! so every `resync` interval — and at once when the broadcast lagged — every subscriber is
//! woken to look for itself; that is the only time idle subscribers touch the database.

use onramp_core::OnboardingId;
use onramp_store::Signals;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
struct Inner {
    watchers: Mutex<HashMap<OnboardingId, watch::Sender<u64>>>,
    everyone: watch::Sender<u64>,
    closing: CancellationToken,
}

/// The per-process hub of live status wake-ups.
#[derive(Debug, Clone)]
pub struct LiveUpdates {
    inner: Arc<Inner>,
}

impl LiveUpdates {
    /// Starts the hub's task on the store's signals; it ends when the hub or the store goes.
    pub fn start(signals: &Signals, resync: Duration) -> LiveUpdates {
        let inner = Arc::new(Inner {
            watchers: Mutex::new(HashMap::new()),
            everyone: watch::channel(0).0,
            closing: CancellationToken::new(),
        });
        tokio::spawn(forward(signals.subscribe(), Arc::downgrade(&inner), resync));
        LiveUpdates { inner }
    }

    /// Wake-ups for one onboarding, from now on.
    pub fn watch(&self, id: &OnboardingId) -> Watch {
        let own = self
            .inner
            .watchers
            .lock()
            .entry(id.clone())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        Watch {
            id: id.clone(),
            own,
            everyone: self.inner.everyone.subscribe(),
            hub: self.inner.clone(),
        }
    }

    /// Ends every live stream: the server is shutting down, and a graceful shutdown waits for
    /// open connections.
    pub fn close(&self) {
        self.inner.closing.cancel();
    }

    /// Cancelled once [`close`](Self::close) was called.
    pub fn closing(&self) -> CancellationToken {
        self.inner.closing.clone()
    }

    /// Onboardings with at least one subscriber.
    pub fn watched(&self) -> usize {
        self.inner.watchers.lock().len()
    }
}

/// A subscriber's wake-ups; dropping it unsubscribes.
#[derive(Debug)]
pub struct Watch {
    id: OnboardingId,
    own: watch::Receiver<u64>,
    everyone: watch::Receiver<u64>,
    hub: Arc<Inner>,
}

impl Watch {
    /// Resolves at the next change of the onboarding (or the next resync) with `true`, or
    /// with `false` once the hub is closing.
    pub async fn changed(&mut self) -> bool {
        let closing = self.hub.closing.clone();
        tokio::select! {
            () = closing.cancelled() => false,
            Ok(()) = self.own.changed() => true,
            Ok(()) = self.everyone.changed() => true,
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut watchers = self.hub.watchers.lock();
        // Our own receiver is still alive here: one receiver left means it is ours.
        if watchers
            .get(&self.id)
            .is_some_and(|tx| tx.receiver_count() <= 1)
        {
            watchers.remove(&self.id);
        }
    }
}

async fn forward(
    mut changes: broadcast::Receiver<onramp_store::Changed>,
    hub: Weak<Inner>,
    resync: Duration,
) {
    let mut tick = tokio::time::interval(resync);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            change = changes.recv() => {
                let Some(hub) = hub.upgrade() else { return };
                match change {
                    Ok(change) => {
                        if let Some(tx) = hub.watchers.lock().get(&change.id) {
                            tx.send_modify(|n| *n = n.wrapping_add(1));
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "live updates lagged; waking every subscriber");
                        hub.everyone.send_modify(|n| *n = n.wrapping_add(1));
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
            _ = tick.tick() => {
                let Some(hub) = hub.upgrade() else { return };
                hub.everyone.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onramp_core::onboarding::OnboardingStatus;
    use onramp_store::Changed;

    fn change(id: &OnboardingId) -> Changed {
        Changed {
            id: id.clone(),
            status: OnboardingStatus::Running,
        }
    }

    #[tokio::test]
    async fn only_the_changed_onboardings_subscribers_wake_and_closing_ends_them() {
        let signals = Signals::default();
        let live = LiveUpdates::start(&signals, Duration::from_secs(3600));
        let (a, b) = (OnboardingId::new(), OnboardingId::new());
        let mut watch_a = live.watch(&a);
        let mut also_a = live.watch(&a);
        let watch_b = live.watch(&b);
        assert_eq!(live.watched(), 2);

        signals.changed(change(&b));
        let woke = tokio::time::timeout(Duration::from_millis(100), watch_a.changed()).await;
        assert!(woke.is_err(), "a change of b does not wake a");
        signals.changed(change(&a));
        let woke = tokio::time::timeout(Duration::from_secs(5), watch_a.changed()).await;
        assert_eq!(woke, Ok(true));
        let woke = tokio::time::timeout(Duration::from_secs(5), also_a.changed()).await;
        assert_eq!(woke, Ok(true), "every subscriber of a wakes");

        drop(watch_b);
        assert_eq!(live.watched(), 1, "b's last subscriber left");
        drop(also_a);
        assert_eq!(live.watched(), 1, "a still has a subscriber");

        live.close();
        let woke = tokio::time::timeout(Duration::from_secs(5), watch_a.changed()).await;
        assert_eq!(woke, Ok(false), "closing ends the wait");
    }
}
