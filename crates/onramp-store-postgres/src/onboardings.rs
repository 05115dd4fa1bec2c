//! Onboardings: create (with idempotency), read, list, audit chain, and the locked snapshots
//! the planner works from.

use crate::apply::storable_text;
use crate::batch::{AuditColumns, OutboxColumns};
use crate::db_error;
use crate::rows::*;
use crate::store::Notices;
use onramp_core::audit::{AuditEntry, AuditHead, GENESIS};
use onramp_core::onboarding::OnboardingStatus;
use onramp_core::plan::{Changes, OnboardingState, StepState};
use onramp_core::{OnboardingId, StepId, StepSeq};
use onramp_store::*;
use sqlx::PgConnection;
use sqlx::postgres::PgRow;
use sqlx::types::Json;

/// Creates an onboarding (or replays the answer to an earlier identical request) with one
/// statement, so that on a connection outside a transaction it is one round trip and one
/// commit: the rows are inserted as the creation plan leaves them (see
/// [`NewOnboarding::created_record`]), and the idempotency key is stored with its answer.
pub async fn create(
    conn: &mut PgConnection,
    new: NewOnboarding,
    idempotency: Option<IdempotencyClaim>,
) -> StoreResult<(Created, Notices)> {
    let (_, mut changes) = new.plan_creation()?;
    let record = new.created_record(new.steps.iter().map(|_| StepId::new()).collect(), &changes)?;
    let wake = std::mem::take(&mut changes.wake);
    if !insert(conn, &new, &record, changes, idempotency.as_ref()).await? {
        let claim = idempotency.as_ref().ok_or_else(|| {
            StoreError::Internal("an onboarding without a key was not inserted".into())
        })?;
        return Ok((replay(conn, claim).await?, Notices::default()));
    }
    let notices = Notices {
        wake,
        changed: vec![Changed {
            id: new.id.clone(),
            status: OnboardingStatus::Pending,
        }],
        published: false,
    };
    Ok((Created::New(record), notices))
}

/// Refuses an onboarding without steps, unless its idempotency key answers from an earlier
/// request. Runs in a transaction the caller rolls back: the key is reserved only to wait
/// for a request that holds it and has not committed yet.
pub async fn refuse_empty(
    conn: &mut PgConnection,
    new: &NewOnboarding,
    idempotency: Option<&IdempotencyClaim>,
) -> StoreResult<Created> {
    if let Some(claim) = idempotency
        && let Some(earlier) = reserve_key(conn, claim, new).await?
    {
        return Ok(earlier);
    }
    Err(StoreError::InvalidTransition(
        "an onboarding needs at least one step".into(),
    ))
}

/// Onboardings per status.
pub async fn counts(conn: &mut PgConnection) -> StoreResult<Vec<(OnboardingStatus, u64)>> {
    sqlx::query("SELECT status, count(*) AS n FROM onboardings GROUP BY status ORDER BY status")
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?
        .iter()
        .map(|r| Ok((parsed(r, "status")?, big_count(r, "n")?)))
        .collect()
}

/// Reserves the idempotency key (if any) with its answer, and inserts the onboarding, its
/// steps, audit entries and events, in one statement; `false` when the key was already
/// reserved, and nothing was inserted.
///
/// The key's insert waits while another transaction holds an uncommitted reservation of the
/// same key; once that one commits, the insert does nothing and [`replay`] reads the earlier
/// response (a new statement sees the commit at `READ COMMITTED`). So concurrent creates with
/// one key make exactly one onboarding, and every other one replays it. The foreign keys of
/// the steps and audit rows are checked at the end of the statement, when the onboarding row
/// exists.
async fn insert(
    conn: &mut PgConnection,
    new: &NewOnboarding,
    record: &OnboardingRecord,
    changes: Changes,
    idempotency: Option<&IdempotencyClaim>,
) -> StoreResult<bool> {
    let first_stage = record.stage.as_ref().map(|s| s.as_str());
    let mut steps = NewStepColumns::default();
    for step in &record.steps {
        let change = changes.steps.iter().find(|c| c.seq == step.seq);
        steps.id.push(step.id.as_str());
        steps.seq.push(int(step.seq.0)?);
        steps.task.push(step.task.as_str());
        steps.stage.push(step.stage.as_str());
        steps.kind.push(step.kind.as_str());
        steps.status.push(step.status.as_str());
        steps
            .available_at
            .push(change.and_then(|c| c.available_at).map(|m| m.0));
        steps
            .queued_at
            .push(change.filter(|c| c.enqueued).map(|_| new.now.0));
    }
    steps.compensable = new.steps.iter().map(|s| s.compensable).collect();
    let mut audits = AuditColumns::default();
    audits.chain(&new.id, &mut AuditHead::genesis(), changes.audit)?;
    let events = OutboxColumns::from(changes.events);
    let inserted: bool = sqlx::query_scalar(
        "WITH k AS (
           INSERT INTO idempotency_keys (scope, key, request_hash, onboarding_id, created_at,
                                         response)
           SELECT $13::text, $14::text, $15::text, $1::text, $11::bigint, $16::jsonb
           WHERE $13::text IS NOT NULL
           ON CONFLICT (scope, key) DO NOTHING
           RETURNING 1
         ),
         o AS (
           INSERT INTO onboardings (id, customer, customer_name, customer_email, customer_ref,
               template_name, template_version, status, stage, current_seq, total_steps,
               priority, created_at, updated_at, on_failure, succeeded_steps, error,
               retry_available, completed_at)
           SELECT $1, $2, $3, $4, $5, $6, $7, $39, $8, $40, $9, $10, $11, $11, $12, $41, $42,
                  $43, $44
           WHERE $13::text IS NULL OR EXISTS (SELECT 1 FROM k)
           RETURNING 1
         ),
         s AS (
           INSERT INTO steps (id, onboarding_id, seq, task, stage, kind, status, priority,
                              compensable, available_at, queued_at)
           SELECT s.id, $1, s.seq, s.task, s.stage, s.kind, s.status, $10, s.compensable,
                  s.available_at, s.queued_at
           FROM unnest($17::text[], $18::int[], $19::text[], $20::text[], $21::text[],
                       $22::text[], $23::bool[], $24::bigint[], $25::bigint[])
                AS s(id, seq, task, stage, kind, status, compensable, available_at, queued_at)
           WHERE EXISTS (SELECT 1 FROM o)
         ),
         a AS (
           INSERT INTO audit (onboarding_id, seq, at, actor, action, from_state, to_state,
                              detail, prev_hash, hash)
           SELECT $1, a.seq, a.at, a.actor, a.action, a.from_state, a.to_state,
                  a.detail::json, a.prev_hash, a.hash
           FROM unnest($26::bigint[], $27::bigint[], $28::text[], $29::text[], $30::text[],
                       $31::text[], $32::text[], $33::text[], $34::text[])
                AS a(seq, at, actor, action, from_state, to_state, detail, prev_hash, hash)
           WHERE EXISTS (SELECT 1 FROM o)
         ),
         e AS (
           INSERT INTO outbox (id, type, onboarding_id, at, data)
           SELECT e.id, e.type, $1, e.at, e.data::jsonb
           FROM unnest($35::text[], $36::text[], $37::bigint[], $38::text[])
                WITH ORDINALITY AS e(id, type, at, data, position)
           WHERE EXISTS (SELECT 1 FROM o)
           ORDER BY e.position
         )
         SELECT EXISTS (SELECT 1 FROM o)",
    )
    .bind(new.id.as_str())
    .bind(Json(&new.customer))
    .bind(&new.customer.name)
    .bind(&new.customer.email)
    .bind(new.customer.external_ref.as_deref())
    .bind(new.template.as_ref().map(|t| t.name.as_str()))
    .bind(new.template.as_ref().map(|t| int(t.version)).transpose()?)
    .bind(first_stage)
    .bind(int(record.total_steps)?)
    .bind(i16::from(new.priority))
    .bind(new.now.0)
    .bind(new.on_failure.as_str())
    .bind(idempotency.map(|c| c.scope.as_str()))
    .bind(idempotency.map(|c| c.key.as_str()))
    .bind(idempotency.map(|c| c.request_hash.as_str()))
    .bind(idempotency.map(|_| Json(record)))
    .bind(steps.id)
    .bind(steps.seq)
    .bind(steps.task)
    .bind(steps.stage)
    .bind(steps.kind)
    .bind(steps.status)
    .bind(steps.compensable)
    .bind(steps.available_at)
    .bind(steps.queued_at)
    .bind(audits.seq)
    .bind(audits.at)
    .bind(audits.actor)
    .bind(audits.action)
    .bind(audits.from)
    .bind(audits.to)
    .bind(audits.detail)
    .bind(audits.prev_hash)
    .bind(audits.hash)
    .bind(events.id)
    .bind(events.kind)
    .bind(events.at)
    .bind(events.data)
    .bind(record.status.as_str())
    .bind(int(record.current_seq.0)?)
    .bind(int(record.succeeded_steps)?)
    .bind(record.error.as_deref().map(storable_text))
    .bind(record.retry_available)
    .bind(record.completed_at.map(|m| m.0))
    .fetch_one(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(inserted)
}

/// Columns of a new onboarding's steps.
#[derive(Default)]
struct NewStepColumns<'a> {
    id: Vec<&'a str>,
    seq: Vec<i32>,
    task: Vec<&'a str>,
    stage: Vec<&'a str>,
    kind: Vec<&'a str>,
    status: Vec<&'static str>,
    compensable: Vec<bool>,
    available_at: Vec<Option<i64>>,
    queued_at: Vec<Option<i64>>,
}

/// Reserves an idempotency key for this create, or answers from the request that holds it
/// (see [`insert`], which does the same together with the inserts).
async fn reserve_key(
    conn: &mut PgConnection,
    claim: &IdempotencyClaim,
    new: &NewOnboarding,
) -> StoreResult<Option<Created>> {
    let reserved = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, request_hash, onboarding_id, created_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (scope, key) DO NOTHING",
    )
    .bind(&claim.scope)
    .bind(&claim.key)
    .bind(&claim.request_hash)
    .bind(new.id.as_str())
    .bind(new.now.0)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?
    .rows_affected();
    if reserved == 1 {
        return Ok(None);
    }
    replay(conn, claim).await.map(Some)
}

/// The answer to the earlier request that holds the key: a replay of it, or
/// [`StoreError::IdempotencyKeyReused`] when that request was a different one.
async fn replay(conn: &mut PgConnection, claim: &IdempotencyClaim) -> StoreResult<Created> {
    let row = sqlx::query(
        "SELECT request_hash, response FROM idempotency_keys WHERE scope = $1 AND key = $2",
    )
    .bind(&claim.scope)
    .bind(&claim.key)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?
    .ok_or_else(|| {
        StoreError::Unavailable(format!(
            "the idempotency key `{}` was released while this request waited; try again",
            claim.key
        ))
    })?;
    let hash: String = column(&row, "request_hash")?;
    if hash != claim.request_hash {
        return Err(StoreError::IdempotencyKeyReused);
    }
    let record: OnboardingRecord = opt_json(&row, "response")?.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "the idempotency key `{}` has no stored response",
            claim.key
        ))
    })?;
    Ok(Created::Replayed(record))
}

const ONBOARDING_COLUMNS: &str = "id, customer, template_name, template_version, status, stage,
    current_seq, succeeded_steps, total_steps, priority, error, retry_available, created_at,
    updated_at, completed_at";

fn onboarding_from_row(r: &PgRow) -> StoreResult<OnboardingRecord> {
    let template = match (
        opt_parsed(r, "template_name")?,
        column::<Option<i32>>(r, "template_version")?,
    ) {
        (Some(name), Some(version)) => Some(TemplateRef {
            name,
            version: u32::try_from(version)
                .map_err(|_| StoreError::Corrupt(format!("template version {version}")))?,
        }),
        _ => None,
    };
    let priority: i16 = column(r, "priority")?;
    Ok(OnboardingRecord {
        id: parsed(r, "id")?,
        customer: json(r, "customer")?,
        template,
        status: parsed(r, "status")?,
        stage: opt_parsed(r, "stage")?,
        current_seq: StepSeq(count(r, "current_seq")?),
        succeeded_steps: count(r, "succeeded_steps")?,
        total_steps: count(r, "total_steps")?,
        priority: u8::try_from(priority)
            .map_err(|_| StoreError::Corrupt(format!("priority {priority}")))?,
        error: column(r, "error")?,
        retry_available: column(r, "retry_available")?,
        created_at: millis(r, "created_at")?,
        updated_at: millis(r, "updated_at")?,
        completed_at: opt_millis(r, "completed_at")?,
        steps: Vec::new(),
    })
}

fn step_from_row(r: &PgRow) -> StoreResult<StepRecord> {
    Ok(StepRecord {
        id: parsed(r, "id")?,
        seq: StepSeq(count(r, "seq")?),
        task: parsed(r, "task")?,
        stage: parsed(r, "stage")?,
        kind: column(r, "kind")?,
        status: parsed(r, "status")?,
        attempts: count(r, "attempts")?,
        assignee: column(r, "assignee")?,
        scheduled_for: opt_millis(r, "scheduled_for")?,
        output: opt_json(r, "output")?,
        error: column(r, "error")?,
        started_at: opt_millis(r, "started_at")?,
        finished_at: opt_millis(r, "finished_at")?,
    })
}

/// An onboarding with its steps.
pub async fn get(conn: &mut PgConnection, id: &OnboardingId) -> StoreResult<OnboardingRecord> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ONBOARDING_COLUMNS} FROM onboardings WHERE id = $1"
    )))
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?
    .ok_or_else(|| StoreError::NotFound(format!("onboarding {id}")))?;
    let mut record = onboarding_from_row(&row)?;
    record.steps = sqlx::query(
        "SELECT id, seq, task, stage, kind, status, attempts, assignee, scheduled_for, output,
                error, started_at, finished_at
         FROM steps WHERE onboarding_id = $1 ORDER BY seq",
    )
    .bind(id.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?
    .iter()
    .map(step_from_row)
    .collect::<StoreResult<_>>()?;
    Ok(record)
}

/// Onboardings matching `filter`, newest first.
pub async fn list(
    conn: &mut PgConnection,
    filter: &OnboardingFilter,
    page: &PageRequest<OnboardingId>,
) -> StoreResult<Page<OnboardingRecord, OnboardingId>> {
    // SQLite's LIKE ignores ASCII case; ILIKE keeps the two backends alike.
    let like = filter.q.as_ref().map(|q| {
        let escaped = q
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%{escaped}%")
    });
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ONBOARDING_COLUMNS} FROM onboardings
         WHERE ($1::text IS NULL OR status = $1)
           AND ($2::text IS NULL OR stage = $2)
           AND ($3::text IS NULL OR template_name = $3)
           AND ($4::text IS NULL OR customer_name ILIKE $4 ESCAPE '\\'
                OR customer_email ILIKE $4 ESCAPE '\\' OR customer_ref ILIKE $4 ESCAPE '\\')
           AND ($5::text IS NULL OR id < $5)
         ORDER BY id DESC LIMIT $6"
    )))
    .bind(filter.status.map(|s| s.as_str()))
    .bind(filter.stage.as_ref().map(|s| s.as_str()))
    .bind(filter.template.as_ref().map(|s| s.as_str()))
    .bind(like)
    .bind(page.cursor.as_ref().map(|c| c.as_str()))
    .bind(limit(page.limit).saturating_add(1))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    let items: Vec<OnboardingRecord> = rows
        .iter()
        .map(onboarding_from_row)
        .collect::<StoreResult<_>>()?;
    Ok(Page::from_overfetch(items, page.limit, |o| o.id.clone()))
}

/// The audit chain of an onboarding, in order.
pub async fn audit_entries(
    conn: &mut PgConnection,
    id: &OnboardingId,
) -> StoreResult<Vec<AuditEntry>> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM onboardings WHERE id = $1)")
            .bind(id.as_str())
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error)?;
    if !exists {
        return Err(StoreError::NotFound(format!("onboarding {id}")));
    }
    let rows = sqlx::query(
        "SELECT seq, at, actor, action, from_state, to_state, detail, prev_hash, hash
         FROM audit WHERE onboarding_id = $1 ORDER BY seq",
    )
    .bind(id.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    rows.iter()
        .map(audit_entry)
        .collect::<StoreResult<_>>()
        .map_err(|e| match e {
            // Name the chain, so that `audit verify` points at the tampered onboarding.
            StoreError::Corrupt(why) => StoreError::Corrupt(format!(
                "the audit log of onboarding {id} is unreadable: {why}"
            )),
            other => other,
        })
}

/// Onboarding ids after `after`, ascending.
pub async fn ids(
    conn: &mut PgConnection,
    after: Option<&OnboardingId>,
    max: usize,
) -> StoreResult<Vec<OnboardingId>> {
    sqlx::query(
        "SELECT id FROM onboardings WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2",
    )
    .bind(after.map(|a| a.as_str()))
    .bind(limit(max))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?
    .iter()
    .map(|r| parsed(r, "id"))
    .collect()
}

/// Locks an onboarding's row for the rest of the transaction and returns the planner's view
/// of it and the end of its audit chain.
///
/// The head is read by a second statement on purpose: at `READ COMMITTED` a statement that
/// waited for the lock re-reads the locked row but not other tables, so reading the audit
/// head in the same statement could return a head that the previous lock holder had just
/// moved on from, forking the chain.
pub async fn lock_state(
    conn: &mut PgConnection,
    id: &OnboardingId,
) -> StoreResult<(OnboardingState, AuditHead)> {
    let row = sqlx::query(
        "SELECT status, current_seq, total_steps, succeeded_steps, on_failure FROM onboardings
         WHERE id = $1 FOR UPDATE",
    )
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?
    .ok_or_else(|| StoreError::NotFound(format!("onboarding {id}")))?;
    let state = OnboardingState {
        id: id.clone(),
        status: parsed(&row, "status")?,
        current_seq: StepSeq(count(&row, "current_seq")?),
        total_steps: count(&row, "total_steps")?,
        succeeded_steps: count(&row, "succeeded_steps")?,
        on_failure: parsed(&row, "on_failure")?,
    };
    let head = sqlx::query(
        "SELECT seq, hash FROM audit WHERE onboarding_id = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?;
    let head = match head {
        Some(r) => {
            let seq: i64 = column(&r, "seq")?;
            AuditHead {
                seq: u64::try_from(seq)
                    .map_err(|_| StoreError::Corrupt(format!("audit seq {seq}")))?,
                hash: column(&r, "hash")?,
            }
        }
        None => AuditHead {
            seq: 0,
            hash: GENESIS.to_owned(),
        },
    };
    Ok((state, head))
}

/// The planner's view of one step, and its current lease.
pub async fn load_step(
    conn: &mut PgConnection,
    id: &OnboardingId,
    seq: StepSeq,
) -> StoreResult<Option<(StepState, Option<LeaseId>)>> {
    sqlx::query(
        "SELECT seq, task, stage, status, attempts, lease_id, lease_expires_at, compensable
         FROM steps WHERE onboarding_id = $1 AND seq = $2",
    )
    .bind(id.as_str())
    .bind(int(seq.0)?)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?
    .as_ref()
    .map(step_state_from_row)
    .transpose()
}

/// The planner's view of every step of an onboarding.
pub async fn load_steps(conn: &mut PgConnection, id: &OnboardingId) -> StoreResult<Vec<StepState>> {
    sqlx::query(
        "SELECT seq, task, stage, status, attempts, lease_id, lease_expires_at, compensable
         FROM steps WHERE onboarding_id = $1 ORDER BY seq",
    )
    .bind(id.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?
    .iter()
    .map(|r| step_state_from_row(r).map(|(s, _)| s))
    .collect()
}

fn step_state_from_row(r: &PgRow) -> StoreResult<(StepState, Option<LeaseId>)> {
    Ok((
        StepState {
            seq: StepSeq(count(r, "seq")?),
            task: parsed(r, "task")?,
            stage: parsed(r, "stage")?,
            status: parsed(r, "status")?,
            attempts: count(r, "attempts")?,
            compensable: column(r, "compensable")?,
            lease_expires_at: opt_millis(r, "lease_expires_at")?,
        },
        column::<Option<i64>>(r, "lease_id")?.map(LeaseId),
    ))
}
