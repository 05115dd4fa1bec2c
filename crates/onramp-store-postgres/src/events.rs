//! Live status history, event publication, webhook endpoints and deliveries.
//!
//! - **Publication** runs under a transaction-scoped advisory lock taken with
//!   `pg_try_advisory_xact_lock`: one process publishes at a time and the others skip their
//!   turn instead of waiting. Places (`outbox.seq`) are handed out as `max(seq) + 1, ...`
//!   while the lock is held, so they are gapless, and since the next publisher starts only
//!   after this one committed, a reader that sees place n sees every place before it.
//!   Within one onboarding, a later event is only visible once the earlier one is (its
//!   writer waited for the onboarding's row lock), so publication keeps commit order.
//! - **Claims** lock the due heads of the target's per-onboarding lines with
//!   `FOR UPDATE SKIP LOCKED`; the status and lease conditions are re-checked on the locked
//!   row, so a delivery another process just claimed is passed over, and the later events of
//!   an onboarding are not heads while an earlier one is open.

use crate::db_error;
use crate::rows::*;
use crate::store::Notices;
use onramp_core::delivery::{self, DeliveryEvent, DeliveryStatus};
use onramp_core::events::EventType;
use onramp_core::time::Millis;
use onramp_core::{DeliveryId, OnboardingId, WebhookId};
use onramp_store::*;
use sqlx::PgConnection;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use std::time::Duration;

/// The advisory lock that makes publication one process at a time ("outb" in ASCII).
const PUBLISH_LOCK: i64 = 0x6f75_7462;

fn refused(e: delivery::InvalidDeliveryTransition) -> StoreError {
    StoreError::InvalidTransition(e.to_string())
}

// ----- live status -----

const STATUS_COLUMNS: &str = "seq, onboarding_id, status, stage, succeeded_steps, total_steps, \
                              error, retry_available, at";

fn status_change_from_row(r: &PgRow) -> StoreResult<StatusChange> {
    Ok(StatusChange {
        seq: column(r, "seq")?,
        onboarding_id: parsed(r, "onboarding_id")?,
        status: parsed(r, "status")?,
        stage: opt_parsed(r, "stage")?,
        succeeded_steps: count(r, "succeeded_steps")?,
        total_steps: count(r, "total_steps")?,
        error: column(r, "error")?,
        retry_available: column(r, "retry_available")?,
        at: millis(r, "at")?,
    })
}

/// An onboarding's status changes after `after` (only the latest without it).
pub async fn status_changes(
    conn: &mut PgConnection,
    id: &OnboardingId,
    after: Option<i64>,
    limit: usize,
) -> StoreResult<Vec<StatusChange>> {
    let rows = match after {
        Some(after) => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {STATUS_COLUMNS} FROM status_changes
                 WHERE onboarding_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            )))
            .bind(id.as_str())
            .bind(after)
            .bind(crate::rows::limit(limit))
            .fetch_all(&mut *conn)
            .await
        }
        None => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {STATUS_COLUMNS} FROM status_changes
                 WHERE onboarding_id = $1 ORDER BY seq DESC LIMIT 1"
            )))
            .bind(id.as_str())
            .fetch_all(&mut *conn)
            .await
        }
    }
    .map_err(db_error)?;
    if rows.is_empty() {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM onboardings WHERE id = $1)")
                .bind(id.as_str())
                .fetch_one(&mut *conn)
                .await
                .map_err(db_error)?;
        if !exists {
            return Err(StoreError::NotFound(format!("onboarding {id}")));
        }
    }
    rows.iter().map(status_change_from_row).collect()
}

// ----- publication -----

fn published_from_row(r: &PgRow) -> StoreResult<PublishedEvent> {
    Ok(PublishedEvent {
        seq: column(r, "seq")?,
        id: parsed(r, "id")?,
        kind: parsed(r, "type")?,
        onboarding_id: parsed(r, "onboarding_id")?,
        at: millis(r, "at")?,
        data: json(r, "data")?,
    })
}

/// Gives unpublished events their place and creates their deliveries, unless another
/// process is publishing right now.
pub async fn publish(
    conn: &mut PgConnection,
    limit: usize,
    amqp: bool,
    now: Millis,
) -> StoreResult<(Published, Notices)> {
    let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(PUBLISH_LOCK)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error)?;
    if !ours {
        return Ok((Published::default(), Notices::default()));
    }
    let pending = sqlx::query(
        "SELECT position, type, onboarding_id FROM outbox
         WHERE seq IS NULL ORDER BY position LIMIT $1",
    )
    .bind(crate::rows::limit(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    if pending.is_empty() {
        return Ok((Published::default(), Notices::default()));
    }
    let last: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM outbox")
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error)?;
    let webhooks = list_webhooks(conn).await?;

    let mut positions = Vec::with_capacity(pending.len());
    let mut seqs = Vec::with_capacity(pending.len());
    let (mut ids, mut targets, mut event_seqs, mut onboardings) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, row) in pending.iter().enumerate() {
        let seq = last + 1 + i as i64;
        let kind: EventType = parsed(row, "type")?;
        let onboarding: &str = column(row, "onboarding_id")?;
        positions.push(column::<i64>(row, "position")?);
        seqs.push(seq);
        let subscribed = webhooks
            .iter()
            .filter(|w| w.events.contains(&kind))
            .map(|w| w.id.as_str().to_owned());
        for target in subscribed.chain(amqp.then(|| "amqp".to_owned())) {
            ids.push(DeliveryId::new().as_str().to_owned());
            targets.push(target);
            event_seqs.push(seq);
            onboardings.push(onboarding.to_owned());
        }
    }
    sqlx::query(
        "UPDATE outbox SET seq = u.seq
         FROM unnest($1::bigint[], $2::bigint[]) AS u(position, seq)
         WHERE outbox.position = u.position",
    )
    .bind(&positions)
    .bind(&seqs)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    sqlx::query(
        "INSERT INTO deliveries (id, target, event_seq, onboarding_id, status, available_at,
                                 created_at, updated_at)
         SELECT d.id, d.target, d.event_seq, d.onboarding_id, 'pending', $5, $5, $5
         FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[])
              AS d(id, target, event_seq, onboarding_id)",
    )
    .bind(&ids)
    .bind(&targets)
    .bind(&event_seqs)
    .bind(&onboardings)
    .bind(now.0)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    let published = Published {
        events: positions.len(),
        deliveries: ids.len(),
    };
    let notices = Notices {
        published: true,
        ..Notices::default()
    };
    Ok((published, notices))
}

/// Published events after `after`, optionally of some types only.
pub async fn published_events(
    conn: &mut PgConnection,
    after: i64,
    types: &[EventType],
    limit: usize,
) -> StoreResult<Vec<PublishedEvent>> {
    let types: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
    sqlx::query(
        "SELECT seq, id, type, onboarding_id, at, data FROM outbox
         WHERE seq > $1 AND (cardinality($2::text[]) = 0 OR type = ANY($2))
         ORDER BY seq LIMIT $3",
    )
    .bind(after)
    .bind(&types)
    .bind(crate::rows::limit(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?
    .iter()
    .map(published_from_row)
    .collect()
}

/// The last place handed out.
pub async fn last_published_seq(conn: &mut PgConnection) -> StoreResult<i64> {
    sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM outbox")
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error)
}

// ----- webhooks -----

fn webhook_from_row(r: &PgRow) -> StoreResult<WebhookRecord> {
    Ok(WebhookRecord {
        id: parsed(r, "id")?,
        url: column(r, "url")?,
        events: json(r, "events")?,
        secret: column(r, "secret")?,
        created_at: millis(r, "created_at")?,
    })
}

/// Stores a webhook endpoint.
pub async fn create_webhook(
    conn: &mut PgConnection,
    new: NewWebhook,
) -> StoreResult<WebhookRecord> {
    sqlx::query(
        "INSERT INTO webhooks (id, url, events, secret, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(new.id.as_str())
    .bind(&new.url)
    .bind(Json(&new.events))
    .bind(&new.secret)
    .bind(new.now.0)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(WebhookRecord {
        id: new.id,
        url: new.url,
        events: new.events,
        secret: new.secret,
        created_at: new.now,
    })
}

/// Every webhook endpoint, oldest first.
pub async fn list_webhooks(conn: &mut PgConnection) -> StoreResult<Vec<WebhookRecord>> {
    sqlx::query("SELECT id, url, events, secret, created_at FROM webhooks ORDER BY id")
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?
        .iter()
        .map(webhook_from_row)
        .collect()
}

/// One webhook endpoint.
pub async fn get_webhook(conn: &mut PgConnection, id: &WebhookId) -> StoreResult<WebhookRecord> {
    let row = sqlx::query("SELECT id, url, events, secret, created_at FROM webhooks WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?
        .ok_or_else(|| StoreError::NotFound(format!("webhook {id}")))?;
    webhook_from_row(&row)
}

/// Deletes an endpoint and its deliveries (in the caller's transaction).
pub async fn delete_webhook(conn: &mut PgConnection, id: &WebhookId) -> StoreResult<()> {
    let deleted = sqlx::query("DELETE FROM webhooks WHERE id = $1")
        .bind(id.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db_error)?
        .rows_affected();
    if deleted == 0 {
        return Err(StoreError::NotFound(format!("webhook {id}")));
    }
    sqlx::query("DELETE FROM deliveries WHERE target = $1")
        .bind(id.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

// ----- deliveries -----

/// Claims the due heads of the target's per-onboarding lines (in the caller's transaction).
pub async fn claim_deliveries(
    conn: &mut PgConnection,
    target: &DeliveryTarget,
    limit: usize,
    now: Millis,
    lease_for: Duration,
) -> StoreResult<Vec<ClaimedDelivery>> {
    let candidates = sqlx::query(
        "SELECT d.id, d.status, d.attempts, d.window_start, d.event_seq
         FROM deliveries d
         WHERE d.target = $1
           AND ((d.status IN ('pending', 'retrying') AND d.available_at <= $2)
                OR (d.status = 'sending' AND d.lease_expires_at <= $2))
           AND NOT EXISTS (
               SELECT 1 FROM deliveries e
               WHERE e.target = d.target AND e.onboarding_id = d.onboarding_id
                 AND e.event_seq < d.event_seq
                 AND e.status IN ('pending', 'sending', 'retrying'))
         ORDER BY d.event_seq LIMIT $3
         FOR UPDATE OF d SKIP LOCKED",
    )
    .bind(target.as_str())
    .bind(now.0)
    .bind(crate::rows::limit(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let (mut ids, mut leases, mut statuses) = (Vec::new(), Vec::new(), Vec::new());
    let mut claimed = Vec::with_capacity(candidates.len());
    let mut event_seqs = Vec::with_capacity(candidates.len());
    for row in &candidates {
        let status: DeliveryStatus = parsed(row, "status")?;
        let to = delivery::transition(status, DeliveryEvent::Claim).map_err(refused)?;
        let id: DeliveryId = parsed(row, "id")?;
        let lease = LeaseId(rand::random::<i64>());
        ids.push(id.as_str().to_owned());
        leases.push(lease.0);
        statuses.push(to.as_str());
        event_seqs.push(column::<i64>(row, "event_seq")?);
        claimed.push((
            id,
            lease,
            count(row, "attempts")? + 1,
            column::<Option<i64>>(row, "window_start")?,
        ));
    }
    sqlx::query(
        "UPDATE deliveries d SET status = u.status, attempts = d.attempts + 1,
            lease_id = u.lease, lease_expires_at = $4,
            window_start = coalesce(d.window_start, $5), updated_at = $5
         FROM unnest($1::text[], $2::bigint[], $3::text[]) AS u(id, lease, status)
         WHERE d.id = u.id",
    )
    .bind(&ids)
    .bind(&leases)
    .bind(&statuses)
    .bind(now.plus(lease_for).0)
    .bind(now.0)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    let events = sqlx::query(
        "SELECT o.seq, o.id, o.type, o.onboarding_id, o.at, o.data
         FROM unnest($1::bigint[]) AS k(seq) JOIN outbox o ON o.seq = k.seq",
    )
    .bind(&event_seqs)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?
    .iter()
    .map(published_from_row)
    .collect::<StoreResult<Vec<_>>>()?;
    claimed
        .into_iter()
        .zip(event_seqs)
        .map(|((id, lease, attempt, window_start), seq)| {
            let event = events
                .iter()
                .find(|e| e.seq == seq)
                .cloned()
                .ok_or_else(|| StoreError::Corrupt(format!("delivery {id}: no event {seq}")))?;
            Ok(ClaimedDelivery {
                id,
                lease,
                attempt,
                window_start: Millis(window_start.unwrap_or(now.0)),
                event,
            })
        })
        .collect()
}

/// Records how attempts ended, each only if its lease still holds; results in input order.
pub async fn finish_deliveries(
    conn: &mut PgConnection,
    finishes: &[DeliveryFinish],
) -> StoreResult<Vec<StoreResult<()>>> {
    let mut results = Vec::with_capacity(finishes.len());
    let (mut ids, mut leases, mut statuses, mut available, mut errors, mut nows) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for finish in finishes {
        match delivery::transition(DeliveryStatus::Sending, finish.outcome.event()) {
            Ok(to) => {
                let (at, error) = match &finish.outcome {
                    DeliveryOutcome::Delivered => (None, None),
                    DeliveryOutcome::Retry { at, error } => (Some(at.0), Some(error.clone())),
                    DeliveryOutcome::Dead { error } => (None, Some(error.clone())),
                };
                ids.push(finish.id.as_str().to_owned());
                leases.push(finish.lease.0);
                statuses.push(to.as_str());
                available.push(at);
                errors.push(error);
                nows.push(finish.now.0);
                results.push(Ok(()));
            }
            Err(e) => results.push(Err(refused(e))),
        }
    }
    let updated: Vec<String> = sqlx::query_scalar(
        "UPDATE deliveries d SET status = u.status, available_at = u.available_at,
            last_error = coalesce(u.error, d.last_error), lease_id = NULL,
            lease_expires_at = NULL, updated_at = u.now
         FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::bigint[])
              AS u(id, lease, status, available_at, error, now)
         WHERE d.id = u.id AND d.status = 'sending' AND d.lease_id = u.lease
         RETURNING d.id",
    )
    .bind(&ids)
    .bind(&leases)
    .bind(&statuses)
    .bind(&available)
    .bind(&errors)
    .bind(&nows)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    for (finish, result) in finishes.iter().zip(results.iter_mut()) {
        if result.is_ok() && !updated.iter().any(|id| id == finish.id.as_str()) {
            *result = Err(StoreError::Conflict(format!(
                "delivery {} is no longer held under this lease",
                finish.id
            )));
        }
    }
    Ok(results)
}

fn delivery_from_row(r: &PgRow) -> StoreResult<DeliveryRecord> {
    let status: DeliveryStatus = parsed(r, "status")?;
    Ok(DeliveryRecord {
        id: parsed(r, "id")?,
        target: parsed(r, "target")?,
        event_id: parsed(r, "event_id")?,
        event_type: parsed(r, "type")?,
        onboarding_id: parsed(r, "onboarding_id")?,
        status,
        attempts: count(r, "attempts")?,
        last_error: column(r, "last_error")?,
        next_attempt_at: if matches!(status, DeliveryStatus::Pending | DeliveryStatus::Retrying) {
            opt_millis(r, "available_at")?
        } else {
            None
        },
        created_at: millis(r, "created_at")?,
        updated_at: millis(r, "updated_at")?,
    })
}

/// Deliveries to a target, oldest first.
pub async fn list_deliveries(
    conn: &mut PgConnection,
    filter: &DeliveryFilter,
    page: &PageRequest<DeliveryId>,
) -> StoreResult<Page<DeliveryRecord, DeliveryId>> {
    let items = sqlx::query(
        "SELECT d.id, d.target, o.id AS event_id, o.type, d.onboarding_id, d.status,
                d.attempts, d.last_error, d.available_at, d.created_at, d.updated_at
         FROM deliveries d JOIN outbox o ON o.seq = d.event_seq
         WHERE d.target = $1 AND ($2::text IS NULL OR d.status = $2)
           AND ($3::text IS NULL OR d.id > $3)
         ORDER BY d.id LIMIT $4",
    )
    .bind(filter.target.as_str())
    .bind(filter.status.map(|s| s.as_str()))
    .bind(page.cursor.as_ref().map(|c| c.as_str()))
    .bind(crate::rows::limit(page.limit + 1))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?
    .iter()
    .map(delivery_from_row)
    .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_overfetch(items, page.limit, |d| d.id.clone()))
}

/// Replays dead deliveries to a target (in the caller's transaction).
pub async fn replay_deliveries(
    conn: &mut PgConnection,
    target: &DeliveryTarget,
    only: Option<&DeliveryId>,
    now: Millis,
) -> StoreResult<(u64, Notices)> {
    let found = sqlx::query(
        "SELECT id, status FROM deliveries
         WHERE target = $1 AND ($2::text IS NULL OR id = $2)
           AND ($2::text IS NOT NULL OR status = 'dead')
         FOR UPDATE",
    )
    .bind(target.as_str())
    .bind(only.map(|d| d.as_str()))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    if let Some(id) = only
        && found.is_empty()
    {
        return Err(StoreError::NotFound(format!("delivery {id}")));
    }
    let (mut ids, mut statuses) = (Vec::with_capacity(found.len()), Vec::new());
    for row in &found {
        let status: DeliveryStatus = parsed(row, "status")?;
        let to = delivery::transition(status, DeliveryEvent::Replay).map_err(refused)?;
        ids.push(column::<String>(row, "id")?);
        statuses.push(to.as_str());
    }
    let replayed = sqlx::query(
        "UPDATE deliveries d SET status = u.status, available_at = $3, window_start = NULL,
            updated_at = $3
         FROM unnest($1::text[], $2::text[]) AS u(id, status)
         WHERE d.id = u.id AND d.status = 'dead'",
    )
    .bind(&ids)
    .bind(&statuses)
    .bind(now.0)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?
    .rows_affected();
    let notices = Notices {
        published: replayed > 0,
        ..Notices::default()
    };
    Ok((replayed, notices))
}
