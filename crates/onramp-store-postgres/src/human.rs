//! CSRs, human tasks and their assignment, waits and signals.
//!
//! Assignments (automatic and manual) take one transaction-scoped advisory lock before they
//! read the CSRs' loads and schedules, so two processes assigning at once run one after the
//! other: no slot is double-booked and no capacity exceeded. Onboardings touched by one
//! assignment round are locked in id order, like every other multi-onboarding write.

use crate::apply::{Leases, apply, storable_json};
use crate::db_error;
use crate::onboardings::{load_step, load_steps, lock_state};
use crate::rows::*;
use crate::store::Notices;
use onramp_core::outcome::Resolution;
use onramp_core::plan::{self, NewTask};
use onramp_core::schedule::{Interval, earliest_slot};
use onramp_core::step::StepStatus;
use onramp_core::task::TaskStatus;
use onramp_core::time::Millis;
use onramp_core::{CsrId, OnboardingId, StepSeq, TaskId};
use onramp_store::*;
use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection};

/// The advisory lock that serialises assignments ("assign" in ASCII).
const ASSIGN_LOCK: i64 = 0x6173_7369_676e;

async fn lock_assignments(conn: &mut PgConnection) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ASSIGN_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Opens and closes the tasks a plan decided, in the caller's transaction.
pub async fn write_task_changes(
    conn: &mut PgConnection,
    id: &OnboardingId,
    new_tasks: &[NewTask],
    close_tasks: &[(StepSeq, TaskStatus)],
    now: Millis,
) -> StoreResult<()> {
    for task in new_tasks {
        sqlx::query(
            "INSERT INTO tasks (id, onboarding_id, step_seq, task, skill, duration_ms, status,
                                due_by, created_at)
             SELECT $1, onboarding_id, seq, task, $2, $3, 'unassigned', $4, $5
             FROM steps WHERE onboarding_id = $6 AND seq = $7",
        )
        .bind(task.id.as_str())
        .bind(&task.spec.skill)
        .bind(i64::try_from(task.spec.duration.as_millis()).unwrap_or(i64::MAX))
        .bind(task.spec.due_by.map(|m| m.0))
        .bind(now.0)
        .bind(id.as_str())
        .bind(int(task.seq.0)?)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    }
    for (seq, to) in close_tasks {
        sqlx::query(
            "UPDATE tasks SET status = $1, closed_at = $2
             WHERE onboarding_id = $3 AND step_seq = $4 AND status IN ('unassigned', 'assigned')",
        )
        .bind(to.as_str())
        .bind(now.0)
        .bind(id.as_str())
        .bind(int(seq.0)?)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    }
    Ok(())
}

const CSR_COLUMNS: &str = "c.id, c.spec, c.created_at, c.updated_at,
    (SELECT count(*) FROM tasks t WHERE t.csr_id = c.id AND t.status = 'assigned') AS active_tasks";

fn csr_from_row(r: &PgRow) -> StoreResult<CsrRecord> {
    Ok(CsrRecord {
        id: parsed(r, "id")?,
        spec: json(r, "spec")?,
        active_tasks: u32::try_from(big_count(r, "active_tasks")?).unwrap_or(u32::MAX),
        created_at: millis(r, "created_at")?,
        updated_at: millis(r, "updated_at")?,
    })
}

fn spec_json(spec: &CsrSpec) -> StoreResult<String> {
    serde_json::to_value(spec)
        .map(|v| storable_json(&v))
        .map_err(|e| StoreError::Internal(e.to_string()))
}

/// Stores a new CSR.
pub async fn create_csr(
    conn: &mut PgConnection,
    id: &CsrId,
    spec: &CsrSpec,
    now: Millis,
) -> StoreResult<CsrRecord> {
    sqlx::query(
        "INSERT INTO csrs (id, spec, created_at, updated_at) VALUES ($1, $2::jsonb, $3, $3)",
    )
    .bind(id.as_str())
    .bind(spec_json(spec)?)
    .bind(now.0)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    get_csr(conn, id).await
}

/// A CSR.
pub async fn get_csr(conn: &mut PgConnection, id: &CsrId) -> StoreResult<CsrRecord> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {CSR_COLUMNS} FROM csrs c WHERE c.id = $1"
    )))
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?
    .ok_or_else(|| StoreError::NotFound(format!("CSR {id}")))?;
    csr_from_row(&row)
}

/// CSRs in id order.
pub async fn list_csrs(
    conn: &mut PgConnection,
    page: &PageRequest<CsrId>,
) -> StoreResult<Page<CsrRecord, CsrId>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {CSR_COLUMNS} FROM csrs c WHERE ($1::text IS NULL OR c.id > $1)
         ORDER BY c.id LIMIT $2"
    )))
    .bind(page.cursor.as_ref().map(|c| c.as_str()))
    .bind(limit(page.limit) + 1)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    let items = rows
        .iter()
        .map(csr_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_overfetch(items, page.limit, |c| c.id.clone()))
}

/// Replaces what a CSR is.
pub async fn update_csr(
    conn: &mut PgConnection,
    id: &CsrId,
    spec: &CsrSpec,
    now: Millis,
) -> StoreResult<CsrRecord> {
    let n = sqlx::query("UPDATE csrs SET spec = $1::jsonb, updated_at = $2 WHERE id = $3")
        .bind(spec_json(spec)?)
        .bind(now.0)
        .bind(id.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db_error)?
        .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound(format!("CSR {id}")));
    }
    get_csr(conn, id).await
}

/// Deletes a CSR; their open tasks become unassigned.
pub async fn delete_csr(conn: &mut PgConnection, id: &CsrId) -> StoreResult<()> {
    lock_assignments(conn).await?;
    sqlx::query(
        "UPDATE tasks SET status = 'unassigned', csr_id = NULL, scheduled_for = NULL,
                          scheduled_until = NULL
         WHERE csr_id = $1 AND status = 'assigned'",
    )
    .bind(id.as_str())
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    sqlx::query(
        "UPDATE steps SET assignee = NULL, scheduled_for = NULL
         WHERE assignee = $1 AND status = 'waiting'",
    )
    .bind(id.as_str())
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    let n = sqlx::query("DELETE FROM csrs WHERE id = $1")
        .bind(id.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db_error)?
        .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound(format!("CSR {id}")));
    }
    Ok(())
}

const TASK_COLUMNS: &str = "id, onboarding_id, step_seq, task, skill, duration_ms, status, csr_id,
    scheduled_for, scheduled_until, due_by, overdue_at, notes, created_at, closed_at";

fn task_from_row(r: &PgRow) -> StoreResult<TaskRecord> {
    Ok(TaskRecord {
        id: parsed(r, "id")?,
        onboarding_id: parsed(r, "onboarding_id")?,
        step_seq: StepSeq(count(r, "step_seq")?),
        task: parsed(r, "task")?,
        skill: column(r, "skill")?,
        duration_ms: u64::try_from(column::<i64>(r, "duration_ms")?).unwrap_or(0),
        status: parsed(r, "status")?,
        assignee: opt_parsed(r, "csr_id")?,
        scheduled_for: opt_millis(r, "scheduled_for")?,
        scheduled_until: opt_millis(r, "scheduled_until")?,
        due_by: opt_millis(r, "due_by")?,
        overdue_at: opt_millis(r, "overdue_at")?,
        notes: column(r, "notes")?,
        created_at: millis(r, "created_at")?,
        closed_at: opt_millis(r, "closed_at")?,
    })
}

/// A task.
pub async fn get_task(conn: &mut PgConnection, id: &TaskId) -> StoreResult<TaskRecord> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"
    )))
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?
    .ok_or_else(|| StoreError::NotFound(format!("task {id}")))?;
    task_from_row(&row)
}

/// Tasks, oldest first.
pub async fn list_tasks(
    conn: &mut PgConnection,
    filter: &TaskFilter,
    page: &PageRequest<TaskId>,
) -> StoreResult<Page<TaskRecord, TaskId>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM tasks
         WHERE ($1::text IS NULL OR csr_id = $1) AND ($2::text IS NULL OR status = $2)
           AND ($3::bigint IS NULL OR (due_by < $3 AND status IN ('unassigned', 'assigned')))
           AND ($4::text IS NULL OR id > $4)
         ORDER BY id LIMIT $5"
    )))
    .bind(filter.assignee.as_ref().map(|c| c.as_str()))
    .bind(filter.status.map(TaskStatus::as_str))
    .bind(filter.due_before.map(|m| m.0))
    .bind(page.cursor.as_ref().map(|c| c.as_str()))
    .bind(limit(page.limit) + 1)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    let items = rows
        .iter()
        .map(task_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_overfetch(items, page.limit, |t| t.id.clone()))
}

/// A CSR's tasks whose slot overlaps `[from, to)`.
pub async fn csr_schedule(
    conn: &mut PgConnection,
    csr: &CsrId,
    from: Millis,
    to: Millis,
) -> StoreResult<Vec<TaskRecord>> {
    get_csr(conn, csr).await?;
    sqlx::query(AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM tasks
         WHERE csr_id = $1 AND status IN ('assigned', 'done')
           AND scheduled_for < $3 AND scheduled_until > $2
         ORDER BY scheduled_for, id"
    )))
    .bind(csr.as_str())
    .bind(from.0)
    .bind(to.0)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?
    .iter()
    .map(task_from_row)
    .collect()
}

async fn csrs_with_schedules(
    conn: &mut PgConnection,
) -> StoreResult<Vec<(CsrRecord, Vec<Interval>)>> {
    let csrs = sqlx::query(AssertSqlSafe(format!(
        "SELECT {CSR_COLUMNS} FROM csrs c ORDER BY c.id"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?
    .iter()
    .map(csr_from_row)
    .collect::<StoreResult<Vec<_>>>()?;
    let busy = sqlx::query(
        "SELECT csr_id, scheduled_for, scheduled_until FROM tasks
         WHERE status = 'assigned' AND scheduled_for IS NOT NULL",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    let mut out: Vec<(CsrRecord, Vec<Interval>)> =
        csrs.into_iter().map(|c| (c, Vec::new())).collect();
    for row in &busy {
        let csr: String = column(row, "csr_id")?;
        if let Some((_, slots)) = out.iter_mut().find(|(c, _)| c.id.as_str() == csr) {
            slots.push(Interval {
                from: millis(row, "scheduled_for")?,
                to: millis(row, "scheduled_until")?,
            });
        }
    }
    Ok(out)
}

async fn write_assignment(
    conn: &mut PgConnection,
    a: &Assignment,
    now: Millis,
    actor: &str,
) -> StoreResult<Notices> {
    let (state, head) = lock_state(conn, &a.onboarding_id).await?;
    let changes = plan::task_assigned(
        &state,
        a.step_seq,
        &a.task,
        a.from,
        &a.csr,
        a.slot.from,
        now,
        actor,
    )?;
    let n = sqlx::query(
        "UPDATE tasks SET status = 'assigned', csr_id = $1, scheduled_for = $2,
                          scheduled_until = $3
         WHERE id = $4 AND status = $5",
    )
    .bind(a.csr.as_str())
    .bind(a.slot.from.0)
    .bind(a.slot.to.0)
    .bind(a.task.as_str())
    .bind(a.from.as_str())
    .execute(&mut *conn)
    .await
    .map_err(db_error)?
    .rows_affected();
    if n == 0 {
        return Err(StoreError::Conflict(format!(
            "task {} is no longer {}",
            a.task, a.from
        )));
    }
    sqlx::query(
        "UPDATE steps SET assignee = $1, scheduled_for = $2 WHERE onboarding_id = $3 AND seq = $4",
    )
    .bind(a.csr.as_str())
    .bind(a.slot.from.0)
    .bind(a.onboarding_id.as_str())
    .bind(int(a.step_seq.0)?)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    apply(conn, &state, head, changes, now, Leases::default()).await
}

/// Assigns up to `limit` unassigned tasks, oldest first.
pub async fn assign_tasks(
    conn: &mut PgConnection,
    now: Millis,
    max: usize,
) -> StoreResult<(Vec<TaskRecord>, Notices)> {
    lock_assignments(conn).await?;
    let tasks = sqlx::query(AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE status = 'unassigned'
         ORDER BY created_at, id LIMIT $1"
    )))
    .bind(limit(max))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?
    .iter()
    .map(task_from_row)
    .collect::<StoreResult<Vec<_>>>()?;
    if tasks.is_empty() {
        return Ok((Vec::new(), Notices::default()));
    }
    let mut csrs = csrs_with_schedules(conn).await?;
    let mut assignments = plan_assignments(&tasks, &mut csrs, now);
    // Onboardings are locked in id order, as every multi-onboarding write does.
    assignments.sort_by(|a, b| a.onboarding_id.as_str().cmp(b.onboarding_id.as_str()));
    let mut notices = Notices::default();
    let mut assigned = Vec::with_capacity(assignments.len());
    for a in &assignments {
        notices.merge(write_assignment(conn, a, now, "scheduler").await?);
        assigned.push(get_task(conn, &a.task).await?);
    }
    Ok((assigned, notices))
}

/// Gives a task to a chosen CSR at their earliest free slot.
pub async fn assign_task(
    conn: &mut PgConnection,
    id: &TaskId,
    csr: &CsrId,
    now: Millis,
    actor: &str,
) -> StoreResult<(TaskRecord, Notices)> {
    lock_assignments(conn).await?;
    let task = get_task(conn, id).await?;
    if !task.status.is_open() {
        return Err(StoreError::InvalidTransition(format!(
            "task {id} is {}, it can no longer be assigned",
            task.status
        )));
    }
    let mut csrs = csrs_with_schedules(conn).await?;
    let (record, busy) = csrs
        .iter_mut()
        .find(|(c, _)| &c.id == csr)
        .ok_or_else(|| StoreError::NotFound(format!("CSR {csr}")))?;
    if task.assignee.as_ref() == Some(csr) {
        return Ok((task, Notices::default()));
    }
    if record.active_tasks >= record.spec.max_active_tasks {
        return Err(StoreError::Conflict(format!(
            "CSR {csr} already has {} active tasks (max_active_tasks)",
            record.active_tasks
        )));
    }
    let slot = manual_slot(record, busy, &task, now)?;
    let a = Assignment {
        task: id.clone(),
        onboarding_id: task.onboarding_id.clone(),
        step_seq: task.step_seq,
        from: task.status,
        csr: csr.clone(),
        slot,
    };
    let notices = write_assignment(conn, &a, now, actor).await?;
    Ok((get_task(conn, id).await?, notices))
}

fn manual_slot(
    record: &CsrRecord,
    busy: &[Interval],
    task: &TaskRecord,
    now: Millis,
) -> StoreResult<Interval> {
    let mut pretend = record.clone();
    pretend.spec.active = true;
    pretend.spec.skills = vec![task.skill.clone()];
    let candidates = candidates_for(&[(pretend, busy.to_vec())], &task.skill);
    let duration = std::time::Duration::from_millis(task.duration_ms);
    let from = candidates
        .first()
        .and_then(|(_, c)| earliest_slot(&c.availability, duration, now))
        .ok_or_else(|| {
            StoreError::Conflict(format!(
                "CSR {} has no free slot of {} minutes in the next {} days",
                record.id,
                task.duration_ms / 60_000,
                onramp_core::schedule::HORIZON_DAYS
            ))
        })?;
    Ok(Interval {
        from,
        to: from.plus(duration),
    })
}

async fn next_steps(
    conn: &mut PgConnection,
    state: &onramp_core::plan::OnboardingState,
    seq: StepSeq,
) -> StoreResult<Vec<onramp_core::plan::StepState>> {
    if state.needs_every_step() {
        load_steps(conn, &state.id).await
    } else {
        Ok(load_step(conn, &state.id, StepSeq(seq.0 + 1))
            .await?
            .map(|(s, _)| s)
            .into_iter()
            .collect())
    }
}

/// Completes an open task; its step succeeds and the onboarding moves on.
pub async fn complete_task(
    conn: &mut PgConnection,
    id: &TaskId,
    assignee: Option<&CsrId>,
    notes: Option<String>,
    now: Millis,
    actor: &str,
) -> StoreResult<(TaskRecord, Notices)> {
    let onboarding = get_task(conn, id).await?.onboarding_id;
    let (state, head) = lock_state(conn, &onboarding).await?;
    let task = get_task(conn, id).await?;
    if let Some(csr) = assignee
        && task.assignee.as_ref() != Some(csr)
    {
        return Err(StoreError::Conflict(format!(
            "task {id} is not assigned to {csr}"
        )));
    }
    let (step, _) = load_step(conn, &task.onboarding_id, task.step_seq)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("step {} of task {id}", task.step_seq)))?;
    if !task.status.is_open() || step.status != StepStatus::Waiting {
        return Err(StoreError::InvalidTransition(format!(
            "task {id} is {}, it cannot be completed",
            task.status
        )));
    }
    let detail = json!({"notes": notes, "completed_by": actor});
    let first = plan::task_completed(&state, task.step_seq, id, task.status, detail, now, actor)?;
    let others = next_steps(conn, &state, task.step_seq).await?;
    let output = json!({"task_id": id.as_str(), "assignee": task.assignee, "notes": notes,
                        "completed_by": actor});
    let then = plan::resolved(
        &state,
        &step,
        &others,
        Resolution::Succeed(output),
        now,
        actor,
    )?;
    let notices = apply(
        conn,
        &state,
        head,
        plan::merge(first, then),
        now,
        Leases::default(),
    )
    .await?;
    sqlx::query("UPDATE tasks SET notes = $1 WHERE id = $2")
        .bind(notes.as_deref().map(crate::apply::storable_text))
        .bind(id.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok((get_task(conn, id).await?, notices))
}

/// Flags open tasks past their `due_by`.
pub async fn mark_overdue(
    conn: &mut PgConnection,
    now: Millis,
    max: usize,
) -> StoreResult<(Vec<TaskRecord>, Notices)> {
    let mut tasks = sqlx::query(AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM tasks
         WHERE status IN ('unassigned', 'assigned') AND overdue_at IS NULL AND due_by <= $1
         ORDER BY due_by LIMIT $2"
    )))
    .bind(now.0)
    .bind(limit(max))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?
    .iter()
    .map(task_from_row)
    .collect::<StoreResult<Vec<_>>>()?;
    tasks.sort_by(|a, b| a.onboarding_id.as_str().cmp(b.onboarding_id.as_str()));
    let mut notices = Notices::default();
    let mut marked = Vec::with_capacity(tasks.len());
    for task in tasks {
        let Some(due_by) = task.due_by else { continue };
        let (state, head) = lock_state(conn, &task.onboarding_id).await?;
        let n =
            sqlx::query("UPDATE tasks SET overdue_at = $1 WHERE id = $2 AND overdue_at IS NULL")
                .bind(now.0)
                .bind(task.id.as_str())
                .execute(&mut *conn)
                .await
                .map_err(db_error)?
                .rows_affected();
        if n == 0 {
            continue; // another process flagged it first
        }
        let changes = plan::task_overdue(&state, task.step_seq, &task.id, due_by, now);
        notices.merge(apply(conn, &state, head, changes, now, Leases::default()).await?);
        marked.push(get_task(conn, &task.id).await?);
    }
    Ok((marked, notices))
}

/// Waiting steps whose wait ends by `now`.
pub async fn due_waits(
    conn: &mut PgConnection,
    now: Millis,
    max: usize,
) -> StoreResult<Vec<WaitingStep>> {
    sqlx::query(
        "SELECT onboarding_id, seq, stage, task, kind, available_at FROM steps
         WHERE status = 'waiting' AND available_at <= $1 ORDER BY available_at LIMIT $2",
    )
    .bind(now.0)
    .bind(limit(max))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?
    .iter()
    .map(|r| {
        Ok(WaitingStep {
            step: StepRef {
                onboarding_id: parsed(r, "onboarding_id")?,
                seq: StepSeq(count(r, "seq")?),
                stage: parsed(r, "stage")?,
            },
            task: parsed(r, "task")?,
            kind: column(r, "kind")?,
            until: millis(r, "available_at")?,
        })
    })
    .collect()
}

/// Keeps a signal.
pub async fn record_signal(
    conn: &mut PgConnection,
    id: &OnboardingId,
    name: &str,
    sender_id: &str,
    payload: &Value,
    now: Millis,
    actor: &str,
) -> StoreResult<(SignalReceipt, Notices)> {
    let (state, head) = lock_state(conn, id).await?;
    let seen: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM signals WHERE onboarding_id = $1 AND sender_id = $2")
            .bind(id.as_str())
            .bind(sender_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error)?;
    if seen.is_some() {
        return Ok((SignalReceipt::Duplicate, Notices::default()));
    }
    let changes = plan::signal_received(&state, name, sender_id, now, actor)?;
    sqlx::query(
        "INSERT INTO signals (onboarding_id, sender_id, name, payload, received_at)
         VALUES ($1, $2, $3, $4::jsonb, $5)",
    )
    .bind(id.as_str())
    .bind(crate::apply::storable_text(sender_id))
    .bind(crate::apply::storable_text(name))
    .bind(storable_json(payload))
    .bind(now.0)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    let notices = apply(conn, &state, head, changes, now, Leases::default()).await?;
    Ok((SignalReceipt::New, notices))
}

/// Lets a waiting step take the oldest unused signal `name`.
pub async fn take_signal(
    conn: &mut PgConnection,
    id: &OnboardingId,
    seq: StepSeq,
    name: &str,
    now: Millis,
    actor: &str,
) -> StoreResult<(bool, Notices)> {
    let (state, head) = lock_state(conn, id).await?;
    let Some((step, _)) = load_step(conn, id, seq).await? else {
        return Ok((false, Notices::default()));
    };
    if step.status != StepStatus::Waiting {
        return Ok((false, Notices::default()));
    }
    let signal = sqlx::query(
        "SELECT sender_id, payload FROM signals
         WHERE onboarding_id = $1 AND name = $2 AND taken_by_seq IS NULL
         ORDER BY received_at, sender_id LIMIT 1",
    )
    .bind(id.as_str())
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?;
    let Some(signal) = signal else {
        return Ok((false, Notices::default()));
    };
    let sender_id: String = column(&signal, "sender_id")?;
    let payload: Value = json(&signal, "payload")?;
    let others = next_steps(conn, &state, seq).await?;
    let output = json!({"signal": name, "id": sender_id, "payload": payload});
    let changes = plan::resolved(
        &state,
        &step,
        &others,
        Resolution::Succeed(output),
        now,
        actor,
    )?;
    sqlx::query(
        "UPDATE signals SET taken_by_seq = $1, taken_at = $2
         WHERE onboarding_id = $3 AND sender_id = $4",
    )
    .bind(int(seq.0)?)
    .bind(now.0)
    .bind(id.as_str())
    .bind(&sender_id)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    let notices = apply(conn, &state, head, changes, now, Leases::default()).await?;
    Ok((true, notices))
}
