//! Cross-process wake-ups, the receiving end: a background task per process `LISTEN`s for
//! what other processes announce (see [`crate::announcer`]) and turns it into [`Signals`].
//!
//! The listener outlives database restarts: when its connection dies it reconnects (and
//! listens again) by itself, logging at `warn`. Notifications sent while it was away are
//! lost, which only costs latency: workers poll.

use crate::db_error;
use onramp_core::OnboardingId;
use onramp_core::StageName;
use onramp_core::onboarding::OnboardingStatus;
use onramp_store::{Changed, Signals, StoreResult};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgNotification};
use std::sync::Arc;
use std::time::Duration;

/// The channel whose payload is a stage name with claimable work.
pub const WAKE_CHANNEL: &str = "onramp_wake";
/// The channel whose payload is a [`ChangedPayload`] as JSON.
pub const CHANGED_CHANNEL: &str = "onramp_changed";
/// The channel that says "events were published" (no payload).
pub const PUBLISHED_CHANNEL: &str = "onramp_published";

/// Longest pause between reconnection attempts while the database is down.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// An onboarding change as announced to other processes.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ChangedPayload {
    pub(crate) id: String,
    pub(crate) status: String,
    /// The announcing store instance: it has already signalled its own commit, and hearing
    /// it again would count one change twice for anyone counting changes.
    pub(crate) origin: String,
}

/// The listener task; stops when dropped.
#[derive(Debug)]
pub struct ListenerTask(tokio::task::JoinHandle<()>);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts listening before returning, so that every commit after `start` returns is heard.
pub async fn start(
    pool: &PgPool,
    signals: Arc<Signals>,
    origin: Arc<str>,
) -> StoreResult<ListenerTask> {
    let mut listener = PgListener::connect_with(pool).await.map_err(db_error)?;
    listener
        .listen_all([WAKE_CHANNEL, CHANGED_CHANNEL, PUBLISHED_CHANNEL])
        .await
        .map_err(db_error)?;
    Ok(ListenerTask(tokio::spawn(listen(
        listener, signals, origin,
    ))))
}

async fn listen(mut listener: PgListener, signals: Arc<Signals>, origin: Arc<str>) {
    let mut delay = Duration::from_millis(100);
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                delay = Duration::from_millis(100);
                dispatch(&notification, &signals, &origin);
            }
            // The connection dropped; the next receive reconnects and listens again. Whatever
            // was announced meanwhile is lost: say "published" so that event dispatchers
            // and streams look for themselves.
            Ok(None) => {
                tracing::warn!("lost the PostgreSQL notification connection; reconnecting");
                signals.published();
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "PostgreSQL notification listener failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RECONNECT_DELAY);
            }
        }
    }
}

fn dispatch(notification: &PgNotification, signals: &Signals, origin: &str) {
    match notification.channel() {
        WAKE_CHANNEL => match notification.payload().parse::<StageName>() {
            Ok(stage) => signals.wake(&stage),
            Err(e) => {
                tracing::debug!(payload = notification.payload(), error = %e, "ignoring a bad wake-up")
            }
        },
        CHANGED_CHANNEL => match parse_changed(notification.payload()) {
            Some((change, from)) if from != origin => signals.changed(change),
            Some(_) => {}
            None => tracing::debug!(
                payload = notification.payload(),
                "ignoring a bad change notice"
            ),
        },
        PUBLISHED_CHANNEL => signals.published(),
        _ => {}
    }
}

fn parse_changed(payload: &str) -> Option<(Changed, String)> {
    let payload: ChangedPayload = serde_json::from_str(payload).ok()?;
    let id: OnboardingId = payload.id.parse().ok()?;
    let status: OnboardingStatus = payload.status.parse().ok()?;
    Some((Changed { id, status }, payload.origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_notices_round_trip() {
        let id = OnboardingId::new();
        let payload = serde_json::to_string(&ChangedPayload {
            id: id.as_str().to_owned(),
            status: "running".into(),
            origin: "a".into(),
        })
        .expect("json");
        let (change, origin) = parse_changed(&payload).expect("parses");
        assert_eq!(change.id, id);
        assert_eq!(change.status, OnboardingStatus::Running);
        assert_eq!(origin, "a");
        assert!(parse_changed("{\"id\":\"nope\"}").is_none());
    }
}
