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

/// A stage's wake-up as announced to other processes.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WakePayload {
    pub(crate) stage: String,
    /// The announcing store instance: it has already woken its own workers, and a second
    /// wake-up would only send them claiming again for nothing.
    pub(crate) origin: String,
}

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
        WAKE_CHANNEL => match parse_wake(notification.payload()) {
            Some((stage, from)) if from.as_deref() != Some(origin) => signals.wake(&stage),
            Some(_) => {}
            None => tracing::debug!(payload = notification.payload(), "ignoring a bad wake-up"),
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

/// A wake-up's stage and origin. Versions before the origin was sent announce the bare stage
/// name, which is still heard (without an origin, it is never this process's own).
fn parse_wake(payload: &str) -> Option<(StageName, Option<String>)> {
    match serde_json::from_str::<WakePayload>(payload) {
        Ok(wake) => Some((wake.stage.parse().ok()?, Some(wake.origin))),
        Err(_) => Some((payload.parse().ok()?, None)),
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

    #[test]
    fn wake_ups_carry_their_origin_and_bare_stage_names_are_still_heard() {
        let payload = serde_json::to_string(&WakePayload {
            stage: "billing".into(),
            origin: "a".into(),
        })
        .expect("json");
        let (stage, origin) = parse_wake(&payload).expect("parses");
        assert_eq!(stage.as_str(), "billing");
        assert_eq!(origin.as_deref(), Some("a"));
        let (stage, origin) = parse_wake("billing").expect("a bare stage name parses");
        assert_eq!(stage.as_str(), "billing");
        assert_eq!(origin, None);
        assert!(parse_wake("not a stage!").is_none());
    }
}
