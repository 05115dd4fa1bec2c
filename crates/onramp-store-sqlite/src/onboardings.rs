//! Onboardings: create (with idempotency), read, list, audit chain, and the snapshots the
//! planner works from.

use crate::apply::{Leases, apply};
use crate::db_error;
use crate::rows::*;
use crate::store::Notices;
use onramp_core::audit::{AuditEntry, AuditHead};
use onramp_core::onboarding::OnboardingStatus;
use onramp_core::plan::{OnboardingState, StepState};
use onramp_core::{OnboardingId, StepId, StepSeq};
use onramp_store::*;
use rusqlite::{Connection, OptionalExtension, params};

/// Creates an onboarding (or replays the answer to an earlier identical request).
pub fn create(
    conn: &Connection,
    new: NewOnboarding,
    idempotency: Option<IdempotencyClaim>,
) -> StoreResult<(Created, Notices)> {
    if let Some(claim) = &idempotency {
        let earlier: Option<(String, Json<OnboardingRecord>)> = conn
            .prepare_cached(
                "SELECT request_hash, response FROM idempotency_keys WHERE scope = ?1 AND key = ?2",
            )
            .map_err(db_error)?
            .query_row(params![claim.scope, claim.key], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(db_error)?;
        if let Some((hash, Json(record))) = earlier {
            return if hash == claim.request_hash {
                Ok((Created::Replayed(record), Notices::default()))
            } else {
                Err(StoreError::IdempotencyKeyReused)
            };
        }
    }
    if new.steps.is_empty() {
        return Err(StoreError::InvalidTransition(
            "an onboarding needs at least one step".into(),
        ));
    }

    let customer_json =
        serde_json::to_string(&new.customer).map_err(|e| StoreError::Internal(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO onboardings (id, customer, customer_name, customer_email, customer_ref,
            template_name, template_version, status, stage, current_seq, total_steps, priority,
            created_at, updated_at, on_failure)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, 1, ?9, ?10, ?11, ?11, ?12)",
    )
    .map_err(db_error)?
    .execute(params![
        new.id.as_str(),
        customer_json,
        new.customer.name,
        new.customer.email,
        new.customer.external_ref,
        new.template.as_ref().map(|t| t.name.as_str()),
        new.template.as_ref().map(|t| t.version),
        new.steps[0].stage.as_str(),
        new.steps.len() as i64,
        new.priority,
        ms(new.now),
        new.on_failure.as_str(),
    ])
    .map_err(db_error)?;

    let mut insert_step = conn
        .prepare_cached(
            "INSERT INTO steps (id, onboarding_id, seq, task, stage, kind, status, priority,
                                compensable)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8)",
        )
        .map_err(db_error)?;
    for (i, step) in new.steps.iter().enumerate() {
        insert_step
            .execute(params![
                StepId::new().as_str(),
                new.id.as_str(),
                i as i64 + 1,
                step.task.as_str(),
                step.stage.as_str(),
                step.kind,
                new.priority,
                step.compensable,
            ])
            .map_err(db_error)?;
    }

    let (state, changes) = new.plan_creation()?;
    let mut notices = apply(
        conn,
        &state,
        AuditHead::genesis(),
        changes,
        new.now,
        Leases::default(),
    )?;
    // The onboarding row itself did not change status; announce its creation.
    notices.changed.push(Changed {
        id: new.id.clone(),
        status: OnboardingStatus::Pending,
    });

    let record = get(conn, &new.id)?;
    if let Some(claim) = idempotency {
        let response =
            serde_json::to_string(&record).map_err(|e| StoreError::Internal(e.to_string()))?;
        conn.prepare_cached(
            "INSERT INTO idempotency_keys (scope, key, request_hash, onboarding_id, response, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(db_error)?
        .execute(params![
            claim.scope,
            claim.key,
            claim.request_hash,
            new.id.as_str(),
            response,
            ms(new.now)
        ])
        .map_err(db_error)?;
    }
    Ok((Created::New(record), notices))
}

const ONBOARDING_COLUMNS: &str = "id, customer, template_name, template_version, status, stage,
    current_seq, succeeded_steps, total_steps, priority, error, retry_available, created_at,
    updated_at, completed_at";

fn onboarding_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OnboardingRecord> {
    let template = match (
        get_opt_parsed(r, "template_name")?,
        r.get::<_, Option<u32>>("template_version")?,
    ) {
        (Some(name), Some(version)) => Some(TemplateRef { name, version }),
        _ => None,
    };
    Ok(OnboardingRecord {
        id: get_parsed(r, "id")?,
        customer: r.get::<_, Json<_>>("customer")?.0,
        template,
        status: get_parsed(r, "status")?,
        stage: get_opt_parsed(r, "stage")?,
        current_seq: StepSeq(r.get("current_seq")?),
        succeeded_steps: r.get("succeeded_steps")?,
        total_steps: r.get("total_steps")?,
        priority: r.get("priority")?,
        error: r.get("error")?,
        retry_available: r.get("retry_available")?,
        created_at: get_ms(r, "created_at")?,
        updated_at: get_ms(r, "updated_at")?,
        completed_at: get_opt_ms(r, "completed_at")?,
        steps: Vec::new(),
    })
}

fn step_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StepRecord> {
    Ok(StepRecord {
        id: get_parsed(r, "id")?,
        seq: StepSeq(r.get("seq")?),
        task: get_parsed(r, "task")?,
        stage: get_parsed(r, "stage")?,
        kind: r.get("kind")?,
        status: get_parsed(r, "status")?,
        attempts: r.get("attempts")?,
        assignee: r.get("assignee")?,
        scheduled_for: get_opt_ms(r, "scheduled_for")?,
        output: r
            .get::<_, Option<Json<serde_json::Value>>>("output")?
            .map(|j| j.0),
        error: r.get("error")?,
        started_at: get_opt_ms(r, "started_at")?,
        finished_at: get_opt_ms(r, "finished_at")?,
    })
}

/// An onboarding with its steps.
pub fn get(conn: &Connection, id: &OnboardingId) -> StoreResult<OnboardingRecord> {
    let mut record = conn
        .prepare_cached(&format!(
            "SELECT {ONBOARDING_COLUMNS} FROM onboardings WHERE id = ?1"
        ))
        .map_err(db_error)?
        .query_row([id.as_str()], onboarding_from_row)
        .optional()
        .map_err(db_error)?
        .ok_or_else(|| StoreError::NotFound(format!("onboarding {id}")))?;
    record.steps = conn
        .prepare_cached(
            "SELECT id, seq, task, stage, kind, status, attempts, assignee, scheduled_for, output,
                    error, started_at, finished_at
             FROM steps WHERE onboarding_id = ?1 ORDER BY seq",
        )
        .map_err(db_error)?
        .query_map([id.as_str()], step_from_row)
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    Ok(record)
}

/// Onboardings matching `filter`, newest first.
pub fn list(
    conn: &Connection,
    filter: &OnboardingFilter,
    page: &PageRequest<OnboardingId>,
) -> StoreResult<Page<OnboardingRecord, OnboardingId>> {
    let like = filter.q.as_ref().map(|q| {
        let escaped = q
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%{escaped}%")
    });
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {ONBOARDING_COLUMNS} FROM onboardings
             WHERE (?1 IS NULL OR status = ?1)
               AND (?2 IS NULL OR stage = ?2)
               AND (?3 IS NULL OR template_name = ?3)
               AND (?4 IS NULL OR customer_name LIKE ?4 ESCAPE '\\'
                    OR customer_email LIKE ?4 ESCAPE '\\' OR customer_ref LIKE ?4 ESCAPE '\\')
               AND (?5 IS NULL OR id < ?5)
             ORDER BY id DESC LIMIT ?6"
        ))
        .map_err(db_error)?;
    let items: Vec<OnboardingRecord> = stmt
        .query_map(
            params![
                filter.status.map(|s| s.as_str()),
                filter.stage.as_ref().map(|s| s.as_str()),
                filter.template.as_ref().map(|s| s.as_str()),
                like,
                page.cursor.as_ref().map(|c| c.as_str()),
                page.limit as i64 + 1,
            ],
            onboarding_from_row,
        )
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    Ok(Page::from_overfetch(items, page.limit, |o| o.id.clone()))
}

/// Onboardings per status.
pub fn counts(conn: &Connection) -> StoreResult<Vec<(OnboardingStatus, u64)>> {
    conn.prepare_cached(
        "SELECT status, count(*) AS n FROM onboardings GROUP BY status ORDER BY status",
    )
    .map_err(db_error)?
    .query_map([], |r| {
        Ok((get_parsed(r, "status")?, r.get::<_, i64>("n")? as u64))
    })
    .map_err(db_error)?
    .collect::<Result<_, _>>()
    .map_err(db_error)
}

/// The audit chain of an onboarding, in order.
pub fn audit_entries(conn: &Connection, id: &OnboardingId) -> StoreResult<Vec<AuditEntry>> {
    let exists: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM onboardings WHERE id = ?1)")
        .map_err(db_error)?
        .query_row([id.as_str()], |r| r.get(0))
        .map_err(db_error)?;
    if !exists {
        return Err(StoreError::NotFound(format!("onboarding {id}")));
    }
    conn.prepare_cached(
        "SELECT seq, at, actor, action, from_state, to_state, detail, prev_hash, hash
         FROM audit WHERE onboarding_id = ?1 ORDER BY seq",
    )
    .map_err(db_error)?
    .query_map([id.as_str()], audit_entry)
    .map_err(db_error)?
    .collect::<Result<_, _>>()
    .map_err(|e| match db_error(e) {
        // Name the chain, so that `audit verify` points at the tampered onboarding.
        StoreError::Corrupt(why) => StoreError::Corrupt(format!(
            "the audit log of onboarding {id} is unreadable: {why}"
        )),
        other => other,
    })
}

/// Onboarding ids after `after`, ascending.
pub fn ids(
    conn: &Connection,
    after: Option<&OnboardingId>,
    limit: usize,
) -> StoreResult<Vec<OnboardingId>> {
    conn.prepare_cached(
        "SELECT id FROM onboardings WHERE (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2",
    )
    .map_err(db_error)?
    .query_map(params![after.map(|a| a.as_str()), limit as i64], |r| {
        get_parsed(r, "id")
    })
    .map_err(db_error)?
    .collect::<Result<_, _>>()
    .map_err(db_error)
}

/// The planner's view of an onboarding and the end of its audit chain.
pub fn load_state(
    conn: &Connection,
    id: &OnboardingId,
) -> StoreResult<(OnboardingState, AuditHead)> {
    conn.prepare_cached(
        "SELECT o.status, o.current_seq, o.total_steps, o.succeeded_steps, o.on_failure,
                coalesce(a.seq, 0) AS audit_seq, coalesce(a.hash, ?2) AS audit_hash
         FROM onboardings o
         LEFT JOIN (SELECT seq, hash FROM audit WHERE onboarding_id = ?1
                    ORDER BY seq DESC LIMIT 1) a
         WHERE o.id = ?1",
    )
    .map_err(db_error)?
    .query_row(params![id.as_str(), onramp_core::audit::GENESIS], |r| {
        Ok((
            OnboardingState {
                id: id.clone(),
                status: get_parsed(r, "status")?,
                current_seq: StepSeq(r.get("current_seq")?),
                total_steps: r.get("total_steps")?,
                succeeded_steps: r.get("succeeded_steps")?,
                on_failure: get_parsed(r, "on_failure")?,
            },
            AuditHead {
                seq: r.get::<_, i64>("audit_seq")? as u64,
                hash: r.get("audit_hash")?,
            },
        ))
    })
    .optional()
    .map_err(db_error)?
    .ok_or_else(|| StoreError::NotFound(format!("onboarding {id}")))
}

/// The planner's view of one step, and its current lease.
pub fn load_step(
    conn: &Connection,
    id: &OnboardingId,
    seq: StepSeq,
) -> StoreResult<Option<(StepState, Option<LeaseId>)>> {
    conn.prepare_cached(
        "SELECT seq, task, stage, status, attempts, lease_id, lease_expires_at, compensable
         FROM steps WHERE onboarding_id = ?1 AND seq = ?2",
    )
    .map_err(db_error)?
    .query_row(params![id.as_str(), seq.0], step_state_from_row)
    .optional()
    .map_err(db_error)
}

/// The planner's view of every step of an onboarding.
pub fn load_steps(conn: &Connection, id: &OnboardingId) -> StoreResult<Vec<StepState>> {
    conn.prepare_cached(
        "SELECT seq, task, stage, status, attempts, lease_id, lease_expires_at, compensable
         FROM steps WHERE onboarding_id = ?1 ORDER BY seq",
    )
    .map_err(db_error)?
    .query_map([id.as_str()], step_state_from_row)
    .map_err(db_error)?
    .map(|r| r.map(|(s, _)| s))
    .collect::<Result<_, _>>()
    .map_err(db_error)
}

fn step_state_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(StepState, Option<LeaseId>)> {
    Ok((
        StepState {
            seq: StepSeq(r.get("seq")?),
            task: get_parsed(r, "task")?,
            stage: get_parsed(r, "stage")?,
            status: get_parsed(r, "status")?,
            attempts: r.get("attempts")?,
            compensable: r.get("compensable")?,
            lease_expires_at: get_opt_ms(r, "lease_expires_at")?,
        },
        r.get::<_, Option<i64>>("lease_id")?.map(LeaseId),
    ))
}
