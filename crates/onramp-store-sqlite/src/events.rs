//! Live status history, event publication, webhook endpoints and deliveries.
//!
//! Publication needs no lock here: the single writer runs one publication at a time, so the
//! places it hands out (`outbox.seq`) are gapless and follow commit order. Claims need no
//! `SKIP LOCKED` for the same reason.

use crate::db_error;
use crate::rows::*;
use crate::store::Notices;
use onramp_core::delivery::{self, DeliveryEvent, DeliveryStatus};
use onramp_core::events::EventType;
use onramp_core::time::Millis;
use onramp_core::{DeliveryId, OnboardingId, WebhookId};
use onramp_store::*;
use rusqlite::{Connection, OptionalExtension, params};
use std::time::Duration;

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn refused(e: delivery::InvalidDeliveryTransition) -> StoreError {
    StoreError::InvalidTransition(e.to_string())
}

// ----- live status -----

fn status_change_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StatusChange> {
    Ok(StatusChange {
        seq: r.get("seq")?,
        onboarding_id: get_parsed(r, "onboarding_id")?,
        status: get_parsed(r, "status")?,
        stage: get_opt_parsed(r, "stage")?,
        succeeded_steps: r.get("succeeded_steps")?,
        total_steps: r.get("total_steps")?,
        error: r.get("error")?,
        retry_available: r.get("retry_available")?,
        at: get_ms(r, "at")?,
    })
}

const STATUS_COLUMNS: &str = "seq, onboarding_id, status, stage, succeeded_steps, total_steps, \
                              error, retry_available, at";

/// An onboarding's status changes after `after` (only the latest without it).
pub fn status_changes(
    conn: &Connection,
    id: &OnboardingId,
    after: Option<i64>,
    limit: usize,
) -> StoreResult<Vec<StatusChange>> {
    let exists = conn
        .prepare_cached("SELECT 1 FROM onboardings WHERE id = ?1")
        .map_err(db_error)?
        .exists([id.as_str()])
        .map_err(db_error)?;
    if !exists {
        return Err(StoreError::NotFound(format!("onboarding {id}")));
    }
    let rows = match after {
        Some(after) => conn
            .prepare_cached(&format!(
                "SELECT {STATUS_COLUMNS} FROM status_changes
                 WHERE onboarding_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
            ))
            .map_err(db_error)?
            .query_map(
                params![id.as_str(), after, limit as i64],
                status_change_from_row,
            )
            .map_err(db_error)?
            .collect::<Result<Vec<_>, _>>(),
        None => conn
            .prepare_cached(&format!(
                "SELECT {STATUS_COLUMNS} FROM status_changes
                 WHERE onboarding_id = ?1 ORDER BY seq DESC LIMIT 1"
            ))
            .map_err(db_error)?
            .query_map(params![id.as_str()], status_change_from_row)
            .map_err(db_error)?
            .collect::<Result<Vec<_>, _>>(),
    };
    rows.map_err(db_error)
}

// ----- publication -----

fn published_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PublishedEvent> {
    Ok(PublishedEvent {
        seq: r.get("seq")?,
        id: get_parsed(r, "id")?,
        kind: get_parsed(r, "type")?,
        onboarding_id: get_parsed(r, "onboarding_id")?,
        at: get_ms(r, "at")?,
        data: r.get::<_, Json<serde_json::Value>>("data")?.0,
    })
}

/// Gives unpublished events their place and creates their deliveries.
pub fn publish(
    conn: &Connection,
    limit: usize,
    amqp: bool,
    now: Millis,
) -> StoreResult<(Published, Notices)> {
    let pending: Vec<(i64, EventType, String)> = conn
        .prepare_cached(
            "SELECT position, type, onboarding_id FROM outbox
             WHERE seq IS NULL ORDER BY position LIMIT ?1",
        )
        .map_err(db_error)?
        .query_map([limit as i64], |r| {
            Ok((
                r.get("position")?,
                get_parsed(r, "type")?,
                r.get("onboarding_id")?,
            ))
        })
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    if pending.is_empty() {
        return Ok((Published::default(), Notices::default()));
    }
    let mut next: i64 = conn
        .query_row("SELECT coalesce(max(seq), 0) FROM outbox", [], |r| r.get(0))
        .map_err(db_error)?;
    let webhooks = list_webhooks(conn)?;
    let mut set_seq = conn
        .prepare_cached("UPDATE outbox SET seq = ?1 WHERE position = ?2")
        .map_err(db_error)?;
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO deliveries (id, target, event_seq, onboarding_id, status, available_at,
                                     created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5, ?5)",
        )
        .map_err(db_error)?;
    let mut published = Published::default();
    for (position, kind, onboarding_id) in pending {
        next += 1;
        set_seq.execute(params![next, position]).map_err(db_error)?;
        published.events += 1;
        let targets = webhooks
            .iter()
            .filter(|w| w.events.contains(&kind))
            .map(|w| w.id.as_str())
            .chain(amqp.then_some("amqp"));
        for target in targets {
            insert
                .execute(params![
                    DeliveryId::new().as_str(),
                    target,
                    next,
                    onboarding_id,
                    ms(now)
                ])
                .map_err(db_error)?;
            published.deliveries += 1;
        }
    }
    let notices = Notices {
        published: true,
        ..Notices::default()
    };
    Ok((published, notices))
}

/// Published events after `after`, optionally of some types only.
pub fn published_events(
    conn: &Connection,
    after: i64,
    types: &[EventType],
    limit: usize,
) -> StoreResult<Vec<PublishedEvent>> {
    let types: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
    let types = serde_json::to_string(&types).map_err(|e| StoreError::Internal(e.to_string()))?;
    conn.prepare_cached(
        "SELECT seq, id, type, onboarding_id, at, data FROM outbox
         WHERE seq > ?1
           AND (?2 = '[]' OR type IN (SELECT value FROM json_each(?2)))
         ORDER BY seq LIMIT ?3",
    )
    .map_err(db_error)?
    .query_map(params![after, types, limit as i64], published_from_row)
    .map_err(db_error)?
    .collect::<Result<_, _>>()
    .map_err(db_error)
}

/// The last place handed out.
pub fn last_published_seq(conn: &Connection) -> StoreResult<i64> {
    conn.query_row("SELECT coalesce(max(seq), 0) FROM outbox", [], |r| r.get(0))
        .map_err(db_error)
}

// ----- webhooks -----

fn webhook_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WebhookRecord> {
    Ok(WebhookRecord {
        id: get_parsed(r, "id")?,
        url: r.get("url")?,
        events: r.get::<_, Json<Vec<EventType>>>("events")?.0,
        secret: r.get("secret")?,
        created_at: get_ms(r, "created_at")?,
    })
}

/// Stores a webhook endpoint.
pub fn create_webhook(conn: &Connection, new: NewWebhook) -> StoreResult<(WebhookRecord, Notices)> {
    let events =
        serde_json::to_string(&new.events).map_err(|e| StoreError::Internal(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO webhooks (id, url, events, secret, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .map_err(db_error)?
    .execute(params![
        new.id.as_str(),
        new.url,
        events,
        new.secret,
        ms(new.now)
    ])
    .map_err(db_error)?;
    let record = WebhookRecord {
        id: new.id,
        url: new.url,
        events: new.events,
        secret: new.secret,
        created_at: new.now,
    };
    Ok((record, Notices::default()))
}

/// Every webhook endpoint, oldest first.
pub fn list_webhooks(conn: &Connection) -> StoreResult<Vec<WebhookRecord>> {
    conn.prepare_cached("SELECT id, url, events, secret, created_at FROM webhooks ORDER BY id")
        .map_err(db_error)?
        .query_map([], webhook_from_row)
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)
}

/// One webhook endpoint.
pub fn get_webhook(conn: &Connection, id: &WebhookId) -> StoreResult<WebhookRecord> {
    conn.prepare_cached("SELECT id, url, events, secret, created_at FROM webhooks WHERE id = ?1")
        .map_err(db_error)?
        .query_row([id.as_str()], webhook_from_row)
        .optional()
        .map_err(db_error)?
        .ok_or_else(|| StoreError::NotFound(format!("webhook {id}")))
}

/// Deletes an endpoint and its deliveries.
pub fn delete_webhook(conn: &Connection, id: &WebhookId) -> StoreResult<((), Notices)> {
    let deleted = conn
        .prepare_cached("DELETE FROM webhooks WHERE id = ?1")
        .map_err(db_error)?
        .execute([id.as_str()])
        .map_err(db_error)?;
    if deleted == 0 {
        return Err(StoreError::NotFound(format!("webhook {id}")));
    }
    conn.prepare_cached("DELETE FROM deliveries WHERE target = ?1")
        .map_err(db_error)?
        .execute([id.as_str()])
        .map_err(db_error)?;
    Ok(((), Notices::default()))
}

// ----- deliveries -----

/// Claims the due heads of the target's per-onboarding lines.
pub fn claim_deliveries(
    conn: &Connection,
    target: &DeliveryTarget,
    limit: usize,
    now: Millis,
    lease_for: Duration,
) -> StoreResult<(Vec<ClaimedDelivery>, Notices)> {
    // No SKIP LOCKED: the single writer serialises claims.
    let candidates: Vec<(String, DeliveryStatus, u32, Option<i64>, PublishedEvent)> = conn
        .prepare_cached(
            "SELECT d.id AS delivery_id, d.status, d.attempts, d.window_start,
                    o.seq, o.id, o.type, o.onboarding_id, o.at, o.data
             FROM deliveries d JOIN outbox o ON o.seq = d.event_seq
             WHERE d.target = ?1
               AND ((d.status IN ('pending', 'retrying') AND d.available_at <= ?2)
                    OR (d.status = 'sending' AND d.lease_expires_at <= ?2))
               AND NOT EXISTS (
                   SELECT 1 FROM deliveries e
                   WHERE e.target = d.target AND e.onboarding_id = d.onboarding_id
                     AND e.event_seq < d.event_seq
                     AND e.status IN ('pending', 'sending', 'retrying'))
             ORDER BY d.event_seq LIMIT ?3",
        )
        .map_err(db_error)?
        .query_map(params![target.as_str(), ms(now), limit as i64], |r| {
            Ok((
                r.get("delivery_id")?,
                get_parsed(r, "status")?,
                r.get("attempts")?,
                r.get("window_start")?,
                published_from_row(r)?,
            ))
        })
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    let mut update = conn
        .prepare_cached(
            "UPDATE deliveries SET status = ?1, attempts = attempts + 1, lease_id = ?2,
                lease_expires_at = ?3, window_start = coalesce(window_start, ?4), updated_at = ?4
             WHERE id = ?5 AND status = ?6",
        )
        .map_err(db_error)?;
    let expires = now.plus(lease_for);
    let mut claimed = Vec::with_capacity(candidates.len());
    for (id, status, attempts, window_start, event) in candidates {
        let to = delivery::transition(status, DeliveryEvent::Claim).map_err(refused)?;
        let lease = LeaseId(rand::random::<i64>());
        update
            .execute(params![
                to.as_str(),
                lease.0,
                ms(expires),
                ms(now),
                id,
                status.as_str()
            ])
            .map_err(db_error)?;
        claimed.push(ClaimedDelivery {
            id: id.parse().map_err(corrupt)?,
            lease,
            attempt: attempts + 1,
            window_start: Millis(window_start.unwrap_or(now.0)),
            event,
        });
    }
    Ok((claimed, Notices::default()))
}

/// Records how one attempt ended, if its lease still holds.
pub fn finish_delivery(conn: &Connection, finish: DeliveryFinish) -> StoreResult<((), Notices)> {
    let to =
        delivery::transition(DeliveryStatus::Sending, finish.outcome.event()).map_err(refused)?;
    let (available_at, error) = match &finish.outcome {
        DeliveryOutcome::Delivered => (None, None),
        DeliveryOutcome::Retry { at, error } => (Some(ms(*at)), Some(error.as_str())),
        DeliveryOutcome::Dead { error } => (None, Some(error.as_str())),
    };
    let changed = conn
        .prepare_cached(
            "UPDATE deliveries SET status = ?1, available_at = ?2,
                last_error = coalesce(?3, last_error), lease_id = NULL, lease_expires_at = NULL,
                updated_at = ?4
             WHERE id = ?5 AND status = 'sending' AND lease_id = ?6",
        )
        .map_err(db_error)?
        .execute(params![
            to.as_str(),
            available_at,
            error,
            ms(finish.now),
            finish.id.as_str(),
            finish.lease.0
        ])
        .map_err(db_error)?;
    if changed == 0 {
        return Err(StoreError::Conflict(format!(
            "delivery {} is no longer held under this lease",
            finish.id
        )));
    }
    Ok(((), Notices::default()))
}

fn delivery_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    let status: DeliveryStatus = get_parsed(r, "status")?;
    Ok(DeliveryRecord {
        id: get_parsed(r, "id")?,
        target: get_parsed(r, "target")?,
        event_id: get_parsed(r, "event_id")?,
        event_type: get_parsed(r, "type")?,
        onboarding_id: get_parsed(r, "onboarding_id")?,
        status,
        attempts: r.get("attempts")?,
        last_error: r.get("last_error")?,
        next_attempt_at: if matches!(status, DeliveryStatus::Pending | DeliveryStatus::Retrying) {
            get_opt_ms(r, "available_at")?
        } else {
            None
        },
        created_at: get_ms(r, "created_at")?,
        updated_at: get_ms(r, "updated_at")?,
    })
}

/// Deliveries to a target, oldest first.
pub fn list_deliveries(
    conn: &Connection,
    filter: &DeliveryFilter,
    page: &PageRequest<DeliveryId>,
) -> StoreResult<Page<DeliveryRecord, DeliveryId>> {
    let items: Vec<DeliveryRecord> = conn
        .prepare_cached(
            "SELECT d.id, d.target, o.id AS event_id, o.type, d.onboarding_id, d.status,
                    d.attempts, d.last_error, d.available_at, d.created_at, d.updated_at
             FROM deliveries d JOIN outbox o ON o.seq = d.event_seq
             WHERE d.target = ?1 AND (?2 IS NULL OR d.status = ?2) AND (?3 IS NULL OR d.id > ?3)
             ORDER BY d.id LIMIT ?4",
        )
        .map_err(db_error)?
        .query_map(
            params![
                filter.target.as_str(),
                filter.status.map(|s| s.as_str()),
                page.cursor.as_ref().map(|c| c.as_str()),
                (page.limit + 1) as i64
            ],
            delivery_from_row,
        )
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    Ok(Page::from_overfetch(items, page.limit, |d| d.id.clone()))
}

/// Replays dead deliveries to a target.
pub fn replay_deliveries(
    conn: &Connection,
    target: &DeliveryTarget,
    only: Option<&DeliveryId>,
    now: Millis,
) -> StoreResult<(u64, Notices)> {
    let found: Vec<(String, DeliveryStatus)> = conn
        .prepare_cached(
            "SELECT id, status FROM deliveries
             WHERE target = ?1 AND (?2 IS NULL OR id = ?2) AND (?2 IS NOT NULL OR status = 'dead')",
        )
        .map_err(db_error)?
        .query_map(params![target.as_str(), only.map(|d| d.as_str())], |r| {
            Ok((r.get("id")?, get_parsed(r, "status")?))
        })
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    if let Some(id) = only
        && found.is_empty()
    {
        return Err(StoreError::NotFound(format!("delivery {id}")));
    }
    let mut update = conn
        .prepare_cached(
            "UPDATE deliveries SET status = ?1, available_at = ?2, window_start = NULL,
                updated_at = ?2
             WHERE id = ?3 AND status = ?4",
        )
        .map_err(db_error)?;
    let mut replayed = 0;
    for (id, status) in found {
        let to = delivery::transition(status, DeliveryEvent::Replay).map_err(refused)?;
        replayed += update
            .execute(params![to.as_str(), ms(now), id, status.as_str()])
            .map_err(db_error)? as u64;
    }
    let notices = Notices {
        published: replayed > 0,
        ..Notices::default()
    };
    Ok((replayed, notices))
}
