//! In-process notifications: "stage X has claimable work", "onboarding Y changed" and "events
//! were published".
//!
//! A store fires them after a commit (and, for PostgreSQL, when another process's commit is
//! announced). They only shorten waits; workers poll as well, so nothing depends on them.

use onramp_core::OnboardingId;
use onramp_core::StageName;
use onramp_core::onboarding::OnboardingStatus;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{Notify, broadcast, watch};

/// An onboarding changed (status, step, or anything visible in its status JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct Changed {
    /// Which onboarding.
    pub id: OnboardingId,
    /// Its status after the change.
    pub status: OnboardingStatus,
}

/// Wake-ups per stage and a broadcast of onboarding changes.
#[derive(Debug)]
pub struct Signals {
    stages: Mutex<HashMap<StageName, Arc<Notify>>>,
    changes: broadcast::Sender<Changed>,
    published: watch::Sender<u64>,
}

impl Default for Signals {
    fn default() -> Self {
        Self {
            stages: Mutex::new(HashMap::new()),
            changes: broadcast::channel(4096).0,
            published: watch::channel(0).0,
        }
    }
}

impl Signals {
    /// The wake-up of a stage; workers wait on it.
    pub fn stage(&self, stage: &StageName) -> Arc<Notify> {
        self.stages.lock().entry(stage.clone()).or_default().clone()
    }

    /// Tells the workers of `stage` that there is work.
    pub fn wake(&self, stage: &StageName) {
        self.stage(stage).notify_one();
    }

    /// Announces that an onboarding changed.
    pub fn changed(&self, change: Changed) {
        // No subscribers is fine: nobody is watching.
        let _ = self.changes.send(change);
    }

    /// Subscribes to onboarding changes.
    pub fn subscribe(&self) -> broadcast::Receiver<Changed> {
        self.changes.subscribe()
    }

    /// Announces that events were published (they now have deliveries and a place on the
    /// event stream).
    pub fn published(&self) {
        self.published.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Subscribes to "events were published"; `changed()` on the receiver resolves after
    /// the next publication.
    pub fn subscribe_published(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }
}
