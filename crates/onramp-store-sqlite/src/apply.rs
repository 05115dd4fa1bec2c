//! Writes a [`Changes`] computed by `onramp_core::plan`, inside the caller's transaction.
//!
//! Every status update is a compare-and-set on the status the plan started from (and, for a
//! step leaving `running`, on its lease): zero rows updated means somebody else moved the row
//! first, and the whole job is refused with [`StoreError::Conflict`].

use crate::db_error;
use crate::rows::{Text, ms, opt_ms};
use crate::store::Notices;
use onramp_core::DeadLetterId;
use onramp_core::audit::{self, AuditHead};
use onramp_core::plan::{AttemptsUpdate, Changes, DeadLetterChange, ErrorUpdate, OnboardingState};
use onramp_core::time::Millis;
use onramp_store::{Changed, LeaseId, StoreError, StoreResult};
use rusqlite::{Connection, params};

/// A lease to set on a step entering `running`, or to require of a step leaving it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Leases {
    /// Granted to a step entering `running`: (lease, expiry).
    pub grant: Option<(LeaseId, Millis)>,
    /// Required of a step leaving `running`.
    pub require: Option<LeaseId>,
}

/// Applies `changes` to onboarding `ob` whose audit chain ends at `head`.
pub fn apply(
    conn: &Connection,
    ob: &OnboardingState,
    mut head: AuditHead,
    changes: Changes,
    now: Millis,
    leases: Leases,
) -> StoreResult<Notices> {
    let mut notices = Notices::default();
    for step in &changes.steps {
        let (error_mode, error_value) = match &step.error {
            ErrorUpdate::Keep => ("keep", None),
            ErrorUpdate::Set(e) => ("set", Some(e.as_str())),
            ErrorUpdate::Clear => ("clear", None),
        };
        let attempts_mode = match (step.claimed, step.attempts) {
            (true, _) => "claim",
            (_, AttemptsUpdate::Refund) => "refund",
            (_, AttemptsUpdate::Reset) => "reset",
            (_, AttemptsUpdate::Keep) => "keep",
        };
        let (grant_lease, grant_expiry) = match (step.claimed, leases.grant) {
            (true, Some((lease, until))) => (Some(lease.0), Some(until.0)),
            _ => (None, None),
        };
        let required_lease = if step.from.holds_lease() {
            leases.require.map(|l| l.0)
        } else {
            None
        };
        let output = step.output.as_ref().map(|v| v.to_string());
        let updated = conn
            .prepare_cached(
                "UPDATE steps SET
                    status = ?1,
                    available_at = ?2,
                    queued_at = CASE WHEN ?3 THEN ?4 ELSE queued_at END,
                    lease_id = ?5,
                    lease_expires_at = ?6,
                    attempts = CASE ?7 WHEN 'claim' THEN attempts + 1
                                       WHEN 'refund' THEN max(attempts - 1, 0)
                                       WHEN 'reset' THEN 0 ELSE attempts END,
                    output = CASE WHEN ?8 IS NOT NULL THEN ?8 ELSE output END,
                    error = CASE ?9 WHEN 'set' THEN ?10 WHEN 'clear' THEN NULL ELSE error END,
                    started_at = CASE WHEN ?1 = 'running' THEN coalesce(started_at, ?4) ELSE started_at END,
                    finished_at = CASE WHEN ?11 IS NOT NULL THEN ?11
                                       WHEN ?1 IN ('queued', 'retrying', 'running', 'waiting') THEN NULL
                                       ELSE finished_at END
                 WHERE onboarding_id = ?12 AND seq = ?13 AND status = ?14
                   AND (?15 IS NULL OR lease_id = ?15)",
            )
            .map_err(db_error)?
            .execute(params![
                step.to.as_str(),
                opt_ms(step.available_at),
                step.enqueued,
                ms(now),
                grant_lease,
                grant_expiry,
                attempts_mode,
                output,
                error_mode,
                error_value,
                opt_ms(step.finished_at),
                ob.id.as_str(),
                step.seq.0,
                step.from.as_str(),
                required_lease,
            ])
            .map_err(db_error)?;
        if updated == 0 {
            return Err(StoreError::Conflict(format!(
                "step {} of {} is no longer {}{}",
                step.seq,
                ob.id,
                step.from,
                if required_lease.is_some() {
                    " under this lease"
                } else {
                    ""
                }
            )));
        }
    }

    if let Some(row) = &changes.onboarding {
        let (error_mode, error_value) = match &row.error {
            ErrorUpdate::Keep => ("keep", None),
            ErrorUpdate::Set(e) => ("set", Some(e.as_str())),
            ErrorUpdate::Clear => ("clear", None),
        };
        let updated = conn
            .prepare_cached(
                "UPDATE onboardings SET status = ?1, stage = ?2, current_seq = ?3,
                    succeeded_steps = ?4,
                    error = CASE ?5 WHEN 'set' THEN ?6 WHEN 'clear' THEN NULL ELSE error END,
                    retry_available = ?7,
                    completed_at = coalesce(?8, completed_at), updated_at = ?9
                 WHERE id = ?10 AND status = ?11",
            )
            .map_err(db_error)?
            .execute(params![
                row.to.as_str(),
                row.stage.as_ref().map(|s| s.as_str()),
                row.current_seq.0,
                row.succeeded_steps,
                error_mode,
                error_value,
                row.retry_available,
                opt_ms(row.finished_at),
                ms(now),
                ob.id.as_str(),
                row.from.as_str(),
            ])
            .map_err(db_error)?;
        if updated == 0 {
            return Err(StoreError::Conflict(format!(
                "onboarding {} is no longer {}",
                ob.id, row.from
            )));
        }
        notices.changed.push(Changed {
            id: ob.id.clone(),
            status: row.to,
        });
    }

    for change in &changes.dead_letters {
        match change {
            DeadLetterChange::Add { seq, error } => {
                conn.prepare_cached(
                "INSERT INTO dead_letters (id, onboarding_id, step_seq, task, stage, attempts, error, dead_at)
                 SELECT ?1, onboarding_id, seq, task, stage, attempts, ?2, ?3
                 FROM steps WHERE onboarding_id = ?4 AND seq = ?5",
            )
            .map_err(db_error)?
            .execute(params![
                DeadLetterId::new().as_str(),
                error,
                ms(now),
                ob.id.as_str(),
                seq.0
            ])
            .map_err(db_error)?;
            }
            DeadLetterChange::Resolve { resolution } => {
                conn.prepare_cached(
                    "UPDATE dead_letters SET resolved_at = ?1, resolution = ?2
                 WHERE onboarding_id = ?3 AND resolved_at IS NULL",
                )
                .map_err(db_error)?
                .execute(params![ms(now), resolution, ob.id.as_str()])
                .map_err(db_error)?;
            }
        }
    }

    if !changes.audit.is_empty() {
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO audit (onboarding_id, seq, at, actor, action, from_state, to_state, detail, prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .map_err(db_error)?;
        for record in changes.audit {
            let e = audit::chain(&mut head, record);
            insert
                .execute(params![
                    ob.id.as_str(),
                    e.seq as i64,
                    ms(e.at),
                    e.actor,
                    e.action,
                    e.from,
                    e.to,
                    e.detail.to_string(),
                    e.prev_hash,
                    e.hash,
                ])
                .map_err(db_error)?;
        }
    }

    if !changes.events.is_empty() {
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO outbox (id, type, onboarding_id, at, data) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(db_error)?;
        for event in changes.events {
            insert
                .execute(params![
                    event.id.as_str(),
                    Text(event.kind),
                    event.onboarding_id.as_str(),
                    ms(event.at),
                    event.data.to_string(),
                ])
                .map_err(db_error)?;
        }
    }

    for task in &changes.new_tasks {
        conn.prepare_cached(
            "INSERT INTO tasks (id, onboarding_id, step_seq, task, skill, duration_ms, status,
                                due_by, created_at)
             SELECT ?1, onboarding_id, seq, task, ?2, ?3, 'unassigned', ?4, ?5
             FROM steps WHERE onboarding_id = ?6 AND seq = ?7",
        )
        .map_err(db_error)?
        .execute(params![
            task.id.as_str(),
            task.spec.skill,
            i64::try_from(task.spec.duration.as_millis()).unwrap_or(i64::MAX),
            opt_ms(task.spec.due_by),
            ms(now),
            ob.id.as_str(),
            task.seq.0,
        ])
        .map_err(db_error)?;
    }
    for (seq, to) in &changes.close_tasks {
        conn.prepare_cached(
            "UPDATE tasks SET status = ?1, closed_at = ?2
             WHERE onboarding_id = ?3 AND step_seq = ?4 AND status IN ('unassigned', 'assigned')",
        )
        .map_err(db_error)?
        .execute(params![to.as_str(), ms(now), ob.id.as_str(), seq.0])
        .map_err(db_error)?;
    }

    notices.wake.extend(changes.wake);
    Ok(notices)
}
