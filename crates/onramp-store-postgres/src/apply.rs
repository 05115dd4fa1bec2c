//! Writes a [`Changes`] computed by `onramp_core::plan`, inside the caller's transaction.
//!
//! The caller holds the onboarding's row lock and read `head` after taking it. Every status
//! update is still a compare-and-set on the status the plan started from (and, for a step
//! leaving `running`, on its lease): zero rows updated means somebody else moved the row
//! first, and the caller's transaction (or savepoint) is undone with
//! [`StoreError::Conflict`]. Audit entries and outbox events go in with one statement each.

use crate::db_error;
use crate::rows::int;
use crate::store::Notices;
use onramp_core::DeadLetterId;
use onramp_core::audit::{self, AuditHead};
use onramp_core::plan::{
    AttemptsUpdate, Changes, DeadLetterChange, ErrorUpdate, OnboardingChange, OnboardingState,
    StepChange,
};
use onramp_core::step::StepStatus;
use onramp_core::time::Millis;
use onramp_store::{Changed, LeaseId, StoreError, StoreResult};
use sqlx::PgConnection;

/// A lease to set on a step entering `running`, or to require of a step leaving it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Leases {
    /// Granted to a step entering `running`: (lease, expiry).
    pub grant: Option<(LeaseId, Millis)>,
    /// Required of a step leaving `running`.
    pub require: Option<LeaseId>,
}

/// Applies `changes` to onboarding `ob` whose audit chain ends at `head`.
pub async fn apply(
    conn: &mut PgConnection,
    ob: &OnboardingState,
    head: AuditHead,
    changes: Changes,
    now: Millis,
    leases: Leases,
) -> StoreResult<Notices> {
    let mut notices = Notices::default();
    for step in &changes.steps {
        update_step(conn, ob, step, now, leases).await?;
    }
    if let Some(row) = &changes.onboarding {
        update_onboarding(conn, ob, row, now).await?;
        notices.changed.push(Changed {
            id: ob.id.clone(),
            status: row.to,
        });
    }
    if let Some(change) = &changes.dead_letter {
        write_dead_letter(conn, ob, change, now).await?;
    }
    append_audit(conn, ob, head, changes.audit).await?;
    write_outbox(conn, changes.events).await?;
    notices.wake.extend(changes.wake);
    Ok(notices)
}

/// The mode and value of an error column update, as the SQL `CASE` expects them.
pub(crate) fn error_update(error: &ErrorUpdate) -> (&'static str, Option<&str>) {
    match error {
        ErrorUpdate::Keep => ("keep", None),
        ErrorUpdate::Set(e) => ("set", Some(e.as_str())),
        ErrorUpdate::Clear => ("clear", None),
    }
}

async fn update_step(
    conn: &mut PgConnection,
    ob: &OnboardingState,
    step: &StepChange,
    now: Millis,
    leases: Leases,
) -> StoreResult<()> {
    let (error_mode, error_value) = error_update(&step.error);
    let attempts_mode = match (step.to, step.attempts) {
        (StepStatus::Running, _) => "claim",
        (_, AttemptsUpdate::Refund) => "refund",
        (_, AttemptsUpdate::Reset) => "reset",
        (_, AttemptsUpdate::Keep) => "keep",
    };
    let (grant_lease, grant_expiry) = match (step.to, leases.grant) {
        (StepStatus::Running, Some((lease, until))) => (Some(lease.0), Some(until.0)),
        _ => (None, None),
    };
    let required_lease = if step.from == StepStatus::Running {
        leases.require.map(|l| l.0)
    } else {
        None
    };
    let output = step.output.as_ref().map(|v| v.to_string());
    let updated = sqlx::query(
        "UPDATE steps SET
            status = $1,
            available_at = $2,
            queued_at = CASE WHEN $3 THEN $4 ELSE queued_at END,
            lease_id = $5,
            lease_expires_at = $6,
            attempts = CASE $7 WHEN 'claim' THEN attempts + 1
                               WHEN 'refund' THEN greatest(attempts - 1, 0)
                               WHEN 'reset' THEN 0 ELSE attempts END,
            output = CASE WHEN $8::text IS NOT NULL THEN $8::text::json ELSE output END,
            error = CASE $9 WHEN 'set' THEN $10 WHEN 'clear' THEN NULL ELSE error END,
            started_at = CASE WHEN $1 = 'running' THEN coalesce(started_at, $4) ELSE started_at END,
            finished_at = CASE WHEN $11::bigint IS NOT NULL THEN $11
                               WHEN $1 IN ('queued', 'retrying', 'running', 'waiting') THEN NULL
                               ELSE finished_at END
         WHERE onboarding_id = $12 AND seq = $13 AND status = $14
           AND ($15::bigint IS NULL OR lease_id = $15)",
    )
    .bind(step.to.as_str())
    .bind(step.available_at.map(|m| m.0))
    .bind(step.enqueued)
    .bind(now.0)
    .bind(grant_lease)
    .bind(grant_expiry)
    .bind(attempts_mode)
    .bind(output)
    .bind(error_mode)
    .bind(error_value)
    .bind(step.finished_at.map(|m| m.0))
    .bind(ob.id.as_str())
    .bind(int(step.seq.0)?)
    .bind(step.from.as_str())
    .bind(required_lease)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?
    .rows_affected();
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
    Ok(())
}

async fn update_onboarding(
    conn: &mut PgConnection,
    ob: &OnboardingState,
    row: &OnboardingChange,
    now: Millis,
) -> StoreResult<()> {
    let (error_mode, error_value) = error_update(&row.error);
    let updated = sqlx::query(
        "UPDATE onboardings SET status = $1, stage = $2, current_seq = $3,
            succeeded_steps = $4,
            error = CASE $5 WHEN 'set' THEN $6 WHEN 'clear' THEN NULL ELSE error END,
            retry_available = $7,
            completed_at = coalesce($8, completed_at), updated_at = $9
         WHERE id = $10 AND status = $11",
    )
    .bind(row.to.as_str())
    .bind(row.stage.as_ref().map(|s| s.as_str()))
    .bind(int(row.current_seq.0)?)
    .bind(int(row.succeeded_steps)?)
    .bind(error_mode)
    .bind(error_value)
    .bind(row.retry_available)
    .bind(row.finished_at.map(|m| m.0))
    .bind(now.0)
    .bind(ob.id.as_str())
    .bind(row.from.as_str())
    .execute(&mut *conn)
    .await
    .map_err(db_error)?
    .rows_affected();
    if updated == 0 {
        return Err(StoreError::Conflict(format!(
            "onboarding {} is no longer {}",
            ob.id, row.from
        )));
    }
    Ok(())
}

pub(crate) async fn write_dead_letter(
    conn: &mut PgConnection,
    ob: &OnboardingState,
    change: &DeadLetterChange,
    now: Millis,
) -> StoreResult<()> {
    match change {
        DeadLetterChange::Add { seq, error } => {
            sqlx::query(
                "INSERT INTO dead_letters (id, onboarding_id, step_seq, task, stage, attempts, error, dead_at)
                 SELECT $1, onboarding_id, seq, task, stage, attempts, $2, $3
                 FROM steps WHERE onboarding_id = $4 AND seq = $5",
            )
            .bind(DeadLetterId::new().as_str())
            .bind(error.as_str())
            .bind(now.0)
            .bind(ob.id.as_str())
            .bind(int(seq.0)?)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        }
        DeadLetterChange::Resolve { resolution } => {
            sqlx::query(
                "UPDATE dead_letters SET resolved_at = $1, resolution = $2
                 WHERE onboarding_id = $3 AND resolved_at IS NULL",
            )
            .bind(now.0)
            .bind(*resolution)
            .bind(ob.id.as_str())
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        }
    }
    Ok(())
}

/// Chains `records` after `head` and inserts them in one statement.
async fn append_audit(
    conn: &mut PgConnection,
    ob: &OnboardingState,
    mut head: AuditHead,
    records: Vec<audit::AuditRecord>,
) -> StoreResult<()> {
    if records.is_empty() {
        return Ok(());
    }
    let n = records.len();
    let (mut seqs, mut ats, mut actors, mut actions) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut froms, mut tos, mut details, mut prev_hashes, mut hashes) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for record in records {
        let e = audit::chain(&mut head, record);
        seqs.push(i64::try_from(e.seq).map_err(|_| {
            StoreError::Internal(format!("audit sequence {} is out of range", e.seq))
        })?);
        ats.push(e.at.0);
        actors.push(e.actor);
        actions.push(e.action);
        froms.push(e.from);
        tos.push(e.to);
        details.push(e.detail.to_string());
        prev_hashes.push(e.prev_hash);
        hashes.push(e.hash);
    }
    sqlx::query(
        "INSERT INTO audit (onboarding_id, seq, at, actor, action, from_state, to_state, detail,
                            prev_hash, hash)
         SELECT $1, a.seq, a.at, a.actor, a.action, a.from_state, a.to_state, a.detail::json,
                a.prev_hash, a.hash
         FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::text[], $9::text[], $10::text[])
              AS a(seq, at, actor, action, from_state, to_state, detail, prev_hash, hash)",
    )
    .bind(ob.id.as_str())
    .bind(seqs)
    .bind(ats)
    .bind(actors)
    .bind(actions)
    .bind(froms)
    .bind(tos)
    .bind(details)
    .bind(prev_hashes)
    .bind(hashes)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Inserts outbox events in one statement, in their given order.
pub(crate) async fn write_outbox(
    conn: &mut PgConnection,
    events: Vec<onramp_core::events::NewEvent>,
) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let n = events.len();
    let (mut ids, mut kinds, mut onboardings, mut ats, mut data) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for event in events {
        ids.push(event.id.as_str().to_owned());
        kinds.push(event.kind.as_str());
        onboardings.push(event.onboarding_id.as_str().to_owned());
        ats.push(event.at.0);
        data.push(event.data.to_string());
    }
    sqlx::query(
        "INSERT INTO outbox (id, type, onboarding_id, at, data)
         SELECT e.id, e.type, e.onboarding_id, e.at, e.data::jsonb
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[])
              WITH ORDINALITY AS e(id, type, onboarding_id, at, data, position)
         ORDER BY e.position",
    )
    .bind(ids)
    .bind(kinds)
    .bind(onboardings)
    .bind(ats)
    .bind(data)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(())
}
