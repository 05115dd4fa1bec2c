//! Many step transitions in a handful of statements.
//!
//! A claim of 16 steps or a batch of 50 finishes, done one transition at a time, costs six or
//! seven round trips per step; on a busy two-core machine those round trips, not the disk, set
//! the pace. Here a batch is read with one statement ([`load`]) and written with one more
//! ([`apply_all`]), whatever its size. The decisions still come from
//! [`onramp_core::plan`], one onboarding at a time, exactly as on the one-at-a-time path.
//!
//! The caller must hold the row locks of every onboarding in the batch, taken before
//! [`load`] runs (at `READ COMMITTED` each statement sees what was committed before it began,
//! so a read after the lock sees the last holder's writes). Every onboarding appears at most
//! once in a batch: its changes are planned from one reading of its state.

use crate::apply::{Leases, error_update, storable_json, write_dead_letter};
use crate::db_error;
use crate::rows::{column, count, int, parsed};
use crate::store::Notices;
use onramp_core::audit::{self, AuditHead, GENESIS};
use onramp_core::events::NewEvent;
use onramp_core::plan::{AttemptsUpdate, Changes, OnboardingState, StepState};
use onramp_core::time::Millis;
use onramp_core::{OnboardingId, StepSeq};
use onramp_store::{Changed, LeaseId, StoreError, StoreResult};
use sqlx::PgConnection;
use std::collections::HashMap;

/// What [`load`] read of one onboarding.
#[derive(Debug)]
pub struct Loaded {
    /// The planner's view of the onboarding.
    pub state: OnboardingState,
    /// The end of its audit chain.
    pub head: AuditHead,
    /// The requested step and the one after it (when it exists), with their leases; every
    /// step when [`OnboardingState::needs_every_step`].
    pub steps: Vec<(StepState, Option<LeaseId>)>,
}

impl Loaded {
    /// The step at `seq`, with its lease.
    pub fn step(&self, seq: StepSeq) -> Option<&(StepState, Option<LeaseId>)> {
        self.steps.iter().find(|(s, _)| s.seq == seq)
    }

    /// Every step read except the one at `seq`: what the planner may need besides it.
    pub fn others(&self, seq: StepSeq) -> Vec<StepState> {
        self.steps
            .iter()
            .filter(|(s, _)| s.seq != seq)
            .map(|(s, _)| s.clone())
            .collect()
    }
}

/// Reads, for each `(onboarding, seq)`, the onboarding's state, its audit head, and its steps
/// `seq` and `seq + 1` (all its steps when the planner needs them), in one statement.
pub async fn load(
    conn: &mut PgConnection,
    keys: &[(OnboardingId, StepSeq)],
) -> StoreResult<HashMap<OnboardingId, Loaded>> {
    let mut ids = Vec::with_capacity(keys.len());
    let mut seqs = Vec::with_capacity(keys.len());
    for (id, seq) in keys {
        ids.push(id.as_str().to_owned());
        seqs.push(int(seq.0)?);
    }
    let rows = sqlx::query(
        "SELECT o.id, o.status, o.current_seq, o.total_steps, o.succeeded_steps, o.on_failure,
                h.seq AS head_seq, h.hash AS head_hash,
                s.seq, s.task, s.stage, s.status AS step_status, s.attempts, s.lease_id,
                s.lease_expires_at, s.compensable
         FROM unnest($1::text[], $2::int[]) AS k(id, seq)
         JOIN onboardings o ON o.id = k.id
         JOIN steps s ON s.onboarding_id = o.id
              AND (s.seq IN (k.seq, k.seq + 1) OR o.status = 'cancelling'
                   OR o.on_failure = 'compensate')
         LEFT JOIN LATERAL (
             SELECT a.seq, a.hash FROM audit a WHERE a.onboarding_id = o.id
             ORDER BY a.seq DESC LIMIT 1
         ) h ON true
         ORDER BY o.id, s.seq",
    )
    .bind(ids)
    .bind(seqs)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;

    let mut loaded: HashMap<OnboardingId, Loaded> = HashMap::with_capacity(keys.len());
    for row in &rows {
        let id: OnboardingId = parsed(row, "id")?;
        let step = (
            StepState {
                seq: StepSeq(count(row, "seq")?),
                task: parsed(row, "task")?,
                stage: parsed(row, "stage")?,
                status: parsed(row, "step_status")?,
                attempts: count(row, "attempts")?,
                compensable: column(row, "compensable")?,
                lease_expires_at: crate::rows::opt_millis(row, "lease_expires_at")?,
            },
            column::<Option<i64>>(row, "lease_id")?.map(LeaseId),
        );
        if let Some(entry) = loaded.get_mut(&id) {
            entry.steps.push(step);
            continue;
        }
        let head = match column::<Option<i64>>(row, "head_seq")? {
            Some(seq) => AuditHead {
                seq: u64::try_from(seq)
                    .map_err(|_| StoreError::Corrupt(format!("audit seq {seq}")))?,
                hash: column(row, "head_hash")?,
            },
            None => AuditHead {
                seq: 0,
                hash: GENESIS.to_owned(),
            },
        };
        let state = OnboardingState {
            id: id.clone(),
            status: parsed(row, "status")?,
            current_seq: StepSeq(count(row, "current_seq")?),
            total_steps: count(row, "total_steps")?,
            succeeded_steps: count(row, "succeeded_steps")?,
            on_failure: parsed(row, "on_failure")?,
        };
        loaded.insert(
            id,
            Loaded {
                state,
                head,
                steps: vec![step],
            },
        );
    }
    Ok(loaded)
}

/// One onboarding's planned changes, ready to write.
#[derive(Debug)]
pub struct Planned {
    /// The onboarding as the plan saw it.
    pub state: OnboardingState,
    /// Where its audit chain ends.
    pub head: AuditHead,
    /// What the plan decided.
    pub changes: Changes,
    /// The time of the decision.
    pub now: Millis,
    /// The lease to grant or require.
    pub leases: Leases,
}

/// Columns of the step updates, one array each.
#[derive(Default)]
struct StepColumns {
    onboarding_id: Vec<String>,
    seq: Vec<i32>,
    from: Vec<&'static str>,
    required_lease: Vec<Option<i64>>,
    to: Vec<&'static str>,
    available_at: Vec<Option<i64>>,
    enqueued: Vec<bool>,
    now: Vec<i64>,
    lease: Vec<Option<i64>>,
    lease_expires_at: Vec<Option<i64>>,
    attempts: Vec<&'static str>,
    output: Vec<Option<String>>,
    error_mode: Vec<&'static str>,
    error: Vec<Option<String>>,
    finished_at: Vec<Option<i64>>,
}

/// Columns of the onboarding updates.
#[derive(Default)]
struct OnboardingColumns {
    id: Vec<String>,
    from: Vec<&'static str>,
    to: Vec<&'static str>,
    stage: Vec<Option<String>>,
    current_seq: Vec<i32>,
    succeeded_steps: Vec<i32>,
    error_mode: Vec<&'static str>,
    error: Vec<Option<String>>,
    retry_available: Vec<bool>,
    finished_at: Vec<Option<i64>>,
    now: Vec<i64>,
}

/// Columns of the audit rows.
#[derive(Default)]
pub(crate) struct AuditColumns {
    pub onboarding_id: Vec<String>,
    pub seq: Vec<i64>,
    pub at: Vec<i64>,
    pub actor: Vec<String>,
    pub action: Vec<String>,
    pub from: Vec<Option<String>>,
    pub to: Vec<Option<String>>,
    pub detail: Vec<String>,
    pub prev_hash: Vec<String>,
    pub hash: Vec<String>,
}

impl AuditColumns {
    /// Appends `records` to the chain of onboarding `id` that ends at `head`.
    pub fn chain(
        &mut self,
        id: &OnboardingId,
        head: &mut AuditHead,
        records: Vec<audit::AuditRecord>,
    ) -> StoreResult<()> {
        for record in records {
            let e = audit::chain(head, record);
            self.onboarding_id.push(id.as_str().to_owned());
            self.seq.push(i64::try_from(e.seq).map_err(|_| {
                StoreError::Internal(format!("audit sequence {} is out of range", e.seq))
            })?);
            self.at.push(e.at.0);
            self.actor.push(e.actor);
            self.action.push(e.action);
            self.from.push(e.from);
            self.to.push(e.to);
            self.detail.push(e.detail.to_string());
            self.prev_hash.push(e.prev_hash);
            self.hash.push(e.hash);
        }
        Ok(())
    }
}

/// Writes every plan in one statement: the step updates, the onboarding updates, the audit
/// rows and the outbox events, each a data-modifying `WITH` of one `unnest`. (Dead-letter and
/// human-task changes, rare, follow in statements of their own.) Every update is still a
/// compare-and-set on the status the plan started from; if any misses, the whole batch is
/// refused with [`StoreError::Conflict`] — with whatever the statement wrote still in the
/// caller's transaction, which the caller undoes (its savepoint, or the whole transaction).
///
/// One statement rather than one per table: on a busy machine every round trip waits for the
/// scheduler on both ends, and this write is on the path of every create, claim and finish.
pub async fn apply_all(conn: &mut PgConnection, planned: Vec<Planned>) -> StoreResult<Notices> {
    let mut notices = Notices::default();
    let mut steps = StepColumns::default();
    let mut onboardings = OnboardingColumns::default();
    let mut audits = AuditColumns::default();
    let mut events = Vec::new();
    let mut dead_letters = Vec::new();
    let mut task_changes = Vec::new();

    for Planned {
        state,
        mut head,
        changes,
        now,
        leases,
    } in planned
    {
        for step in &changes.steps {
            let (error_mode, error) = error_update(&step.error);
            let (lease, expires) = match (step.claimed, leases.grant) {
                (true, Some((lease, until))) => (Some(lease.0), Some(until.0)),
                _ => (None, None),
            };
            steps.onboarding_id.push(state.id.as_str().to_owned());
            steps.seq.push(int(step.seq.0)?);
            steps.from.push(step.from.as_str());
            steps.required_lease.push(if step.from.holds_lease() {
                leases.require.map(|l| l.0)
            } else {
                None
            });
            steps.to.push(step.to.as_str());
            steps.available_at.push(step.available_at.map(|m| m.0));
            steps.enqueued.push(step.enqueued);
            steps.now.push(now.0);
            steps.lease.push(lease);
            steps.lease_expires_at.push(expires);
            steps.attempts.push(match (step.claimed, step.attempts) {
                (true, _) => "claim",
                (_, AttemptsUpdate::Refund) => "refund",
                (_, AttemptsUpdate::Reset) => "reset",
                (_, AttemptsUpdate::Keep) => "keep",
            });
            steps
                .output
                .push(step.output.as_ref().map(|v| v.to_string()));
            steps.error_mode.push(error_mode);
            steps.error.push(error);
            steps.finished_at.push(step.finished_at.map(|m| m.0));
        }
        if let Some(row) = &changes.onboarding {
            let (error_mode, error) = error_update(&row.error);
            onboardings.id.push(state.id.as_str().to_owned());
            onboardings.from.push(row.from.as_str());
            onboardings.to.push(row.to.as_str());
            onboardings
                .stage
                .push(row.stage.as_ref().map(|s| s.as_str().to_owned()));
            onboardings.current_seq.push(int(row.current_seq.0)?);
            onboardings.succeeded_steps.push(int(row.succeeded_steps)?);
            onboardings.error_mode.push(error_mode);
            onboardings.error.push(error);
            onboardings.retry_available.push(row.retry_available);
            onboardings.finished_at.push(row.finished_at.map(|m| m.0));
            onboardings.now.push(now.0);
            notices.changed.push(Changed {
                id: state.id.clone(),
                status: row.to,
            });
        }
        audits.chain(&state.id, &mut head, changes.audit)?;
        for change in changes.dead_letters {
            dead_letters.push((state.clone(), change, now));
        }
        events.extend(changes.events);
        notices.wake.extend(changes.wake);
        if !changes.new_tasks.is_empty() || !changes.close_tasks.is_empty() {
            task_changes.push((
                state.id.clone(),
                changes.new_tasks,
                changes.close_tasks,
                now,
            ));
        }
    }

    write_all(
        conn,
        steps,
        onboardings,
        audits,
        OutboxColumns::from(events),
    )
    .await?;
    // After the step updates: a dead letter copies its step's attempts.
    for (state, change, now) in &dead_letters {
        write_dead_letter(conn, state, change, *now).await?;
    }
    for (id, new_tasks, close_tasks, now) in task_changes {
        crate::human::write_task_changes(conn, &id, &new_tasks, &close_tasks, now).await?;
    }
    Ok(notices)
}

/// Columns of the outbox rows, in their given order.
#[derive(Default)]
pub(crate) struct OutboxColumns {
    pub id: Vec<String>,
    pub kind: Vec<&'static str>,
    pub onboarding_id: Vec<String>,
    pub at: Vec<i64>,
    pub data: Vec<String>,
}

impl From<Vec<NewEvent>> for OutboxColumns {
    fn from(events: Vec<NewEvent>) -> Self {
        let mut c = OutboxColumns::default();
        for event in events {
            c.id.push(event.id.as_str().to_owned());
            c.kind.push(event.kind.as_str());
            c.onboarding_id
                .push(event.onboarding_id.as_str().to_owned());
            c.at.push(event.at.0);
            c.data.push(storable_json(&event.data));
        }
        c
    }
}

/// The one statement of [`apply_all`]. Its parts cannot see each other's writes (they share
/// one snapshot), and none needs to: each writes a different table, and the audit and outbox
/// rows are computed in full by the plan.
async fn write_all(
    conn: &mut PgConnection,
    s: StepColumns,
    o: OnboardingColumns,
    a: AuditColumns,
    e: OutboxColumns,
) -> StoreResult<()> {
    let (steps_expected, onboardings_expected) = (s.seq.len() as u64, o.id.len() as u64);
    if steps_expected == 0 && onboardings_expected == 0 && a.seq.is_empty() && e.id.is_empty() {
        return Ok(());
    }
    let row = sqlx::query(
        "WITH s AS (
           UPDATE steps s SET
             status = u.to_status,
             available_at = u.available_at,
             queued_at = CASE WHEN u.enqueued THEN u.now ELSE s.queued_at END,
             lease_id = u.lease,
             lease_expires_at = u.lease_expires_at,
             attempts = CASE u.attempts WHEN 'claim' THEN s.attempts + 1
                                        WHEN 'refund' THEN greatest(s.attempts - 1, 0)
                                        WHEN 'reset' THEN 0 ELSE s.attempts END,
             output = CASE WHEN u.output IS NOT NULL THEN u.output::json ELSE s.output END,
             error = CASE u.error_mode WHEN 'set' THEN u.error WHEN 'clear' THEN NULL
                                       ELSE s.error END,
             started_at = CASE WHEN u.to_status = 'running' THEN coalesce(s.started_at, u.now)
                               ELSE s.started_at END,
             finished_at = CASE WHEN u.finished_at IS NOT NULL THEN u.finished_at
                                WHEN u.to_status IN ('queued', 'retrying', 'running', 'waiting')
                                THEN NULL
                                ELSE s.finished_at END
           FROM unnest($1::text[], $2::int[], $3::text[], $4::bigint[], $5::text[], $6::bigint[],
                       $7::bool[], $8::bigint[], $9::bigint[], $10::bigint[], $11::text[],
                       $12::text[], $13::text[], $14::text[], $15::bigint[])
                AS u(onboarding_id, seq, from_status, required_lease, to_status, available_at,
                     enqueued, now, lease, lease_expires_at, attempts, output, error_mode, error,
                     finished_at)
           WHERE s.onboarding_id = u.onboarding_id AND s.seq = u.seq
             AND s.status = u.from_status
             AND (u.required_lease IS NULL OR s.lease_id = u.required_lease)
           RETURNING 1
         ),
         o AS (
           UPDATE onboardings o SET status = u.to_status, stage = u.stage,
             current_seq = u.current_seq, succeeded_steps = u.succeeded_steps,
             error = CASE u.error_mode WHEN 'set' THEN u.error WHEN 'clear' THEN NULL
                                       ELSE o.error END,
             retry_available = u.retry_available,
             completed_at = coalesce(u.finished_at, o.completed_at), updated_at = u.now
           FROM unnest($16::text[], $17::text[], $18::text[], $19::text[], $20::int[],
                       $21::int[], $22::text[], $23::text[], $24::bool[], $25::bigint[],
                       $26::bigint[])
                AS u(id, from_status, to_status, stage, current_seq, succeeded_steps,
                     error_mode, error, retry_available, finished_at, now)
           WHERE o.id = u.id AND o.status = u.from_status
           RETURNING 1
         ),
         a AS (
           INSERT INTO audit (onboarding_id, seq, at, actor, action, from_state, to_state,
                              detail, prev_hash, hash)
           SELECT a.onboarding_id, a.seq, a.at, a.actor, a.action, a.from_state, a.to_state,
                  a.detail::json, a.prev_hash, a.hash
           FROM unnest($27::text[], $28::bigint[], $29::bigint[], $30::text[], $31::text[],
                       $32::text[], $33::text[], $34::text[], $35::text[], $36::text[])
                AS a(onboarding_id, seq, at, actor, action, from_state, to_state, detail,
                     prev_hash, hash)
         ),
         e AS (
           INSERT INTO outbox (id, type, onboarding_id, at, data)
           SELECT e.id, e.type, e.onboarding_id, e.at, e.data::jsonb
           FROM unnest($37::text[], $38::text[], $39::text[], $40::bigint[], $41::text[])
                WITH ORDINALITY AS e(id, type, onboarding_id, at, data, position)
           ORDER BY e.position
         )
         SELECT (SELECT count(*) FROM s) AS steps, (SELECT count(*) FROM o) AS onboardings",
    )
    .bind(s.onboarding_id)
    .bind(s.seq)
    .bind(s.from)
    .bind(s.required_lease)
    .bind(s.to)
    .bind(s.available_at)
    .bind(s.enqueued)
    .bind(s.now)
    .bind(s.lease)
    .bind(s.lease_expires_at)
    .bind(s.attempts)
    .bind(s.output)
    .bind(s.error_mode)
    .bind(s.error)
    .bind(s.finished_at)
    .bind(o.id)
    .bind(o.from)
    .bind(o.to)
    .bind(o.stage)
    .bind(o.current_seq)
    .bind(o.succeeded_steps)
    .bind(o.error_mode)
    .bind(o.error)
    .bind(o.retry_available)
    .bind(o.finished_at)
    .bind(o.now)
    .bind(a.onboarding_id)
    .bind(a.seq)
    .bind(a.at)
    .bind(a.actor)
    .bind(a.action)
    .bind(a.from)
    .bind(a.to)
    .bind(a.detail)
    .bind(a.prev_hash)
    .bind(a.hash)
    .bind(e.id)
    .bind(e.kind)
    .bind(e.onboarding_id)
    .bind(e.at)
    .bind(e.data)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_error)?;
    let steps_updated = u64::try_from(column::<i64>(&row, "steps")?).unwrap_or(0);
    let onboardings_updated = u64::try_from(column::<i64>(&row, "onboardings")?).unwrap_or(0);
    if steps_updated != steps_expected {
        return Err(StoreError::Conflict(format!(
            "{} of {steps_expected} step updates found their step moved on",
            steps_expected - steps_updated.min(steps_expected)
        )));
    }
    if onboardings_updated != onboardings_expected {
        return Err(StoreError::Conflict(format!(
            "{} of {onboardings_expected} onboarding updates found their onboarding moved on",
            onboardings_expected - onboardings_updated.min(onboardings_expected)
        )));
    }
    Ok(())
}
