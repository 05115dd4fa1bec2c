//! Cross-process wake-ups, the sending end: after a commit, tell the other processes which
//! stages got claimable work and which onboardings changed.
//!
//! The notifications are sent after the commit, not inside the transaction. A `NOTIFY` in a
//! write transaction takes PostgreSQL's global notification lock at commit and keeps it until
//! the commit record is on disk, so every notifying commit waits for the fsync of the one
//! before: group commit stops, and W1 measured about 450 steps/s that way. Here the commit
//! path only queues its notices; one task per process sends whatever has queued up in one
//! statement, in a transaction of its own with `synchronous_commit = off` (it holds the lock
//! for microseconds). A notification is only a hint: one lost to a crash between the commit
//! and the send costs the listener a poll interval, never data.

use crate::listener::{
    CHANGED_CHANNEL, ChangedPayload, PUBLISHED_CHANNEL, WAKE_CHANNEL, WakePayload,
};
use crate::store::Notices;
use sqlx::PgPool;
use std::collections::HashSet;
use tokio::sync::mpsc;

/// Most notifications sent in one statement.
const MAX_BATCH: usize = 1024;

/// One notification: (channel, payload).
type Notification = (&'static str, String);

/// Queues notifications for the sending task; the task ends when the announcer is dropped.
#[derive(Debug)]
pub struct Announcer {
    queue: mpsc::UnboundedSender<Notification>,
    origin: String,
}

impl Announcer {
    /// Starts the sending task on `pool`; `origin` names this store instance in its change
    /// notifications.
    pub fn start(pool: PgPool, origin: &str) -> Announcer {
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(send_all(pool, pending));
        Announcer {
            queue,
            origin: origin.to_owned(),
        }
    }

    /// Queues the notifications of a committed transaction.
    pub fn announce(&self, notices: &Notices) {
        for stage in notices.distinct_wakes() {
            self.queue_json(
                WAKE_CHANNEL,
                &WakePayload {
                    stage: stage.as_str().to_owned(),
                    origin: self.origin.clone(),
                },
            );
        }
        for change in &notices.changed {
            self.queue_json(
                CHANGED_CHANNEL,
                &ChangedPayload {
                    id: change.id.as_str().to_owned(),
                    status: change.status.as_str().to_owned(),
                    origin: self.origin.clone(),
                },
            );
        }
        if notices.published {
            let _ = self.queue.send((PUBLISHED_CHANNEL, String::new()));
        }
    }

    fn queue_json(&self, channel: &'static str, payload: &impl serde::Serialize) {
        match serde_json::to_string(payload) {
            Ok(json) => {
                let _ = self.queue.send((channel, json));
            }
            Err(e) => tracing::debug!(error = %e, channel, "could not encode a notification"),
        }
    }
}

async fn send_all(pool: PgPool, mut pending: mpsc::UnboundedReceiver<Notification>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while pending.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // One wake-up per stage is as good as many, and one "published" as good as many.
        let mut seen = HashSet::new();
        batch.retain(|(channel, payload)| {
            *channel == CHANGED_CHANNEL || seen.insert((*channel, payload.clone()))
        });
        if let Err(e) = send(&pool, &batch).await {
            tracing::debug!(error = %e, count = batch.len(), "could not send notifications; listeners will poll");
        }
        batch.clear();
    }
}

async fn send(pool: &PgPool, batch: &[Notification]) -> Result<(), sqlx::Error> {
    let (channels, payloads): (Vec<&str>, Vec<&str>) = batch
        .iter()
        .map(|(channel, payload)| (*channel, payload.as_str()))
        .unzip();
    let mut tx = pool
        .begin_with("BEGIN; SET LOCAL synchronous_commit = off")
        .await?;
    sqlx::query(
        "SELECT pg_notify(n.channel, n.payload)
         FROM unnest($1::text[], $2::text[]) AS n(channel, payload)",
    )
    .bind(channels)
    .bind(payloads)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
