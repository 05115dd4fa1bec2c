//! CSRs, human tasks and their assignment, waits and signals.
//!
//! Assignment runs on the single writer thread, so reading every CSR's load and schedule and
//! then writing the assignments cannot race another assignment: no slot is double-booked and
//! no capacity exceeded without any locking beyond SQLite's own.

use crate::apply::{Leases, apply};
use crate::db_error;
use crate::onboardings::{load_state, load_step};
use crate::rows::*;
use crate::store::Notices;
use onramp_core::outcome::Resolution;
use onramp_core::plan;
use onramp_core::schedule::{Interval, earliest_slot};
use onramp_core::step::StepStatus;
use onramp_core::task::TaskStatus;
use onramp_core::time::Millis;
use onramp_core::{CsrId, OnboardingId, StepSeq, TaskId};
use onramp_store::*;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

const CSR_COLUMNS: &str = "c.id, c.spec, c.created_at, c.updated_at,
    (SELECT count(*) FROM tasks t WHERE t.csr_id = c.id AND t.status = 'assigned') AS active_tasks";

fn csr_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CsrRecord> {
    let spec: String = r.get("spec")?;
    Ok(CsrRecord {
        id: get_parsed(r, "id")?,
        spec: serde_json::from_str(&spec).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?,
        active_tasks: r.get("active_tasks")?,
        created_at: get_ms(r, "created_at")?,
        updated_at: get_ms(r, "updated_at")?,
    })
}

fn spec_json(spec: &CsrSpec) -> StoreResult<String> {
    serde_json::to_string(spec).map_err(|e| StoreError::Internal(e.to_string()))
}

/// Stores a new CSR.
pub fn create_csr(
    conn: &Connection,
    id: &CsrId,
    spec: &CsrSpec,
    now: Millis,
) -> StoreResult<(CsrRecord, Notices)> {
    conn.prepare_cached(
        "INSERT INTO csrs (id, spec, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
    )
    .map_err(db_error)?
    .execute(params![id.as_str(), spec_json(spec)?, ms(now)])
    .map_err(db_error)?;
    Ok((get_csr(conn, id)?, Notices::default()))
}

/// A CSR.
pub fn get_csr(conn: &Connection, id: &CsrId) -> StoreResult<CsrRecord> {
    conn.prepare_cached(&format!("SELECT {CSR_COLUMNS} FROM csrs c WHERE c.id = ?1"))
        .map_err(db_error)?
        .query_row([id.as_str()], csr_from_row)
        .optional()
        .map_err(db_error)?
        .ok_or_else(|| StoreError::NotFound(format!("CSR {id}")))
}

/// CSRs in id order.
pub fn list_csrs(
    conn: &Connection,
    page: &PageRequest<CsrId>,
) -> StoreResult<Page<CsrRecord, CsrId>> {
    let items: Vec<CsrRecord> = conn
        .prepare_cached(&format!(
            "SELECT {CSR_COLUMNS} FROM csrs c WHERE (?1 IS NULL OR c.id > ?1) ORDER BY c.id LIMIT ?2"
        ))
        .map_err(db_error)?
        .query_map(
            params![page.cursor.as_ref().map(|c| c.as_str()), page.limit as i64 + 1],
            csr_from_row,
        )
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    Ok(Page::from_overfetch(items, page.limit, |c| c.id.clone()))
}

/// Replaces what a CSR is.
pub fn update_csr(
    conn: &Connection,
    id: &CsrId,
    spec: &CsrSpec,
    now: Millis,
) -> StoreResult<(CsrRecord, Notices)> {
    let n = conn
        .prepare_cached("UPDATE csrs SET spec = ?1, updated_at = ?2 WHERE id = ?3")
        .map_err(db_error)?
        .execute(params![spec_json(spec)?, ms(now), id.as_str()])
        .map_err(db_error)?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("CSR {id}")));
    }
    Ok((get_csr(conn, id)?, Notices::default()))
}

/// Deletes a CSR; their open tasks become unassigned.
pub fn delete_csr(conn: &Connection, id: &CsrId, _now: Millis) -> StoreResult<((), Notices)> {
    conn.prepare_cached(
        "UPDATE tasks SET status = 'unassigned', csr_id = NULL, scheduled_for = NULL,
                          scheduled_until = NULL
         WHERE csr_id = ?1 AND status = 'assigned'",
    )
    .map_err(db_error)?
    .execute([id.as_str()])
    .map_err(db_error)?;
    conn.prepare_cached(
        "UPDATE steps SET assignee = NULL, scheduled_for = NULL
         WHERE assignee = ?1 AND status = 'waiting'",
    )
    .map_err(db_error)?
    .execute([id.as_str()])
    .map_err(db_error)?;
    let n = conn
        .prepare_cached("DELETE FROM csrs WHERE id = ?1")
        .map_err(db_error)?
        .execute([id.as_str()])
        .map_err(db_error)?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("CSR {id}")));
    }
    Ok(((), Notices::default()))
}

const TASK_COLUMNS: &str = "id, onboarding_id, step_seq, task, skill, duration_ms, status, csr_id,
    scheduled_for, scheduled_until, due_by, overdue_at, notes, created_at, closed_at";

fn task_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRecord> {
    Ok(TaskRecord {
        id: get_parsed(r, "id")?,
        onboarding_id: get_parsed(r, "onboarding_id")?,
        step_seq: StepSeq(r.get("step_seq")?),
        task: get_parsed(r, "task")?,
        skill: r.get("skill")?,
        duration_ms: r.get::<_, i64>("duration_ms")?.max(0) as u64,
        status: get_parsed(r, "status")?,
        assignee: get_opt_parsed(r, "csr_id")?,
        scheduled_for: get_opt_ms(r, "scheduled_for")?,
        scheduled_until: get_opt_ms(r, "scheduled_until")?,
        due_by: get_opt_ms(r, "due_by")?,
        overdue_at: get_opt_ms(r, "overdue_at")?,
        notes: r.get("notes")?,
        created_at: get_ms(r, "created_at")?,
        closed_at: get_opt_ms(r, "closed_at")?,
    })
}

/// A task.
pub fn get_task(conn: &Connection, id: &TaskId) -> StoreResult<TaskRecord> {
    conn.prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))
        .map_err(db_error)?
        .query_row([id.as_str()], task_from_row)
        .optional()
        .map_err(db_error)?
        .ok_or_else(|| StoreError::NotFound(format!("task {id}")))
}

/// Tasks, oldest first.
pub fn list_tasks(
    conn: &Connection,
    filter: &TaskFilter,
    page: &PageRequest<TaskId>,
) -> StoreResult<Page<TaskRecord, TaskId>> {
    let items: Vec<TaskRecord> = conn
        .prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks
             WHERE (?1 IS NULL OR csr_id = ?1) AND (?2 IS NULL OR status = ?2)
               AND (?3 IS NULL OR (due_by < ?3 AND status IN ('unassigned', 'assigned')))
               AND (?4 IS NULL OR id > ?4)
             ORDER BY id LIMIT ?5"
        ))
        .map_err(db_error)?
        .query_map(
            params![
                filter.assignee.as_ref().map(|c| c.as_str()),
                filter.status.map(TaskStatus::as_str),
                opt_ms(filter.due_before),
                page.cursor.as_ref().map(|c| c.as_str()),
                page.limit as i64 + 1
            ],
            task_from_row,
        )
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    Ok(Page::from_overfetch(items, page.limit, |t| t.id.clone()))
}

/// A CSR's tasks whose slot overlaps `[from, to)`.
pub fn csr_schedule(
    conn: &Connection,
    csr: &CsrId,
    from: Millis,
    to: Millis,
) -> StoreResult<Vec<TaskRecord>> {
    get_csr(conn, csr)?;
    conn.prepare_cached(&format!(
        "SELECT {TASK_COLUMNS} FROM tasks
         WHERE csr_id = ?1 AND status IN ('assigned', 'done')
           AND scheduled_for < ?3 AND scheduled_until > ?2
         ORDER BY scheduled_for, id"
    ))
    .map_err(db_error)?
    .query_map(params![csr.as_str(), ms(from), ms(to)], task_from_row)
    .map_err(db_error)?
    .collect::<Result<_, _>>()
    .map_err(db_error)
}

/// Every CSR with the slots of their assigned tasks.
fn csrs_with_schedules(conn: &Connection) -> StoreResult<Vec<(CsrRecord, Vec<Interval>)>> {
    let csrs: Vec<CsrRecord> = conn
        .prepare_cached(&format!("SELECT {CSR_COLUMNS} FROM csrs c ORDER BY c.id"))
        .map_err(db_error)?
        .query_map([], csr_from_row)
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    let mut out = Vec::with_capacity(csrs.len());
    let mut stmt = conn
        .prepare_cached(
            "SELECT scheduled_for, scheduled_until FROM tasks
             WHERE csr_id = ?1 AND status = 'assigned' AND scheduled_for IS NOT NULL",
        )
        .map_err(db_error)?;
    for csr in csrs {
        let busy = stmt
            .query_map([csr.id.as_str()], |r| {
                Ok(Interval {
                    from: get_ms(r, "scheduled_for")?,
                    to: get_ms(r, "scheduled_until")?,
                })
            })
            .map_err(db_error)?
            .collect::<Result<_, _>>()
            .map_err(db_error)?;
        out.push((csr, busy));
    }
    Ok(out)
}

/// Writes one assignment: the task, its step's assignee and slot, an audit entry and a
/// `task.assigned` event.
fn write_assignment(
    conn: &Connection,
    a: &Assignment,
    now: Millis,
    actor: &str,
) -> StoreResult<Notices> {
    let (state, head) = load_state(conn, &a.onboarding_id)?;
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
    let n = conn
        .prepare_cached(
            "UPDATE tasks SET status = 'assigned', csr_id = ?1, scheduled_for = ?2,
                              scheduled_until = ?3
             WHERE id = ?4 AND status = ?5",
        )
        .map_err(db_error)?
        .execute(params![
            a.csr.as_str(),
            ms(a.slot.from),
            ms(a.slot.to),
            a.task.as_str(),
            a.from.as_str()
        ])
        .map_err(db_error)?;
    if n == 0 {
        return Err(StoreError::Conflict(format!(
            "task {} is no longer {}",
            a.task, a.from
        )));
    }
    conn.prepare_cached(
        "UPDATE steps SET assignee = ?1, scheduled_for = ?2 WHERE onboarding_id = ?3 AND seq = ?4",
    )
    .map_err(db_error)?
    .execute(params![
        a.csr.as_str(),
        ms(a.slot.from),
        a.onboarding_id.as_str(),
        a.step_seq.0
    ])
    .map_err(db_error)?;
    apply(conn, &state, head, changes, now, Leases::default())
}

/// Assigns up to `limit` unassigned tasks, oldest first.
pub fn assign_tasks(
    conn: &Connection,
    now: Millis,
    limit: usize,
) -> StoreResult<(Vec<TaskRecord>, Notices)> {
    let tasks: Vec<TaskRecord> = conn
        .prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE status = 'unassigned'
             ORDER BY created_at, id LIMIT ?1"
        ))
        .map_err(db_error)?
        .query_map([limit as i64], task_from_row)
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    if tasks.is_empty() {
        return Ok((Vec::new(), Notices::default()));
    }
    let mut csrs = csrs_with_schedules(conn)?;
    let assignments = plan_assignments(&tasks, &mut csrs, now);
    let mut notices = Notices::default();
    let mut assigned = Vec::with_capacity(assignments.len());
    for a in &assignments {
        notices.merge(write_assignment(conn, a, now, "scheduler")?);
        assigned.push(get_task(conn, &a.task)?);
    }
    Ok((assigned, notices))
}

/// Gives a task to a chosen CSR at their earliest free slot.
pub fn assign_task(
    conn: &Connection,
    id: &TaskId,
    csr: &CsrId,
    now: Millis,
    actor: &str,
) -> StoreResult<(TaskRecord, Notices)> {
    let task = get_task(conn, id)?;
    if !task.status.is_open() {
        return Err(StoreError::InvalidTransition(format!(
            "task {id} is {}, it can no longer be assigned",
            task.status
        )));
    }
    let mut csrs = csrs_with_schedules(conn)?;
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
    let notices = write_assignment(conn, &a, now, actor)?;
    Ok((get_task(conn, id)?, notices))
}

/// The slot a CSR chosen by an operator gets: their earliest free one (skills are the
/// operator's call, working hours and other tasks are not).
pub fn manual_slot(
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

/// Completes an open task; its step succeeds and the onboarding moves on.
pub fn complete_task(
    conn: &Connection,
    id: &TaskId,
    assignee: Option<&CsrId>,
    notes: Option<String>,
    now: Millis,
    actor: &str,
) -> StoreResult<(TaskRecord, Notices)> {
    let task = get_task(conn, id)?;
    if let Some(csr) = assignee
        && task.assignee.as_ref() != Some(csr)
    {
        return Err(StoreError::Conflict(format!(
            "task {id} is not assigned to {csr}"
        )));
    }
    let (state, head) = load_state(conn, &task.onboarding_id)?;
    let (step, _) = load_step(conn, &task.onboarding_id, task.step_seq)?
        .ok_or_else(|| StoreError::NotFound(format!("step {} of task {id}", task.step_seq)))?;
    if !task.status.is_open() || step.status != StepStatus::Waiting {
        return Err(StoreError::InvalidTransition(format!(
            "task {id} is {}, it cannot be completed",
            task.status
        )));
    }
    let detail = json!({"notes": notes, "completed_by": actor});
    let first = plan::task_completed(
        &state,
        task.step_seq,
        id,
        task.status,
        detail.clone(),
        now,
        actor,
    )?;
    let others = if state.needs_every_step() {
        crate::onboardings::load_steps(conn, &task.onboarding_id)?
    } else {
        load_step(conn, &task.onboarding_id, StepSeq(task.step_seq.0 + 1))?
            .map(|(s, _)| s)
            .into_iter()
            .collect()
    };
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
    )?;
    conn.prepare_cached("UPDATE tasks SET notes = ?1 WHERE id = ?2")
        .map_err(db_error)?
        .execute(params![notes, id.as_str()])
        .map_err(db_error)?;
    Ok((get_task(conn, id)?, notices))
}

/// Flags open tasks past their `due_by`.
pub fn mark_overdue(
    conn: &Connection,
    now: Millis,
    limit: usize,
) -> StoreResult<(Vec<TaskRecord>, Notices)> {
    let tasks: Vec<TaskRecord> = conn
        .prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks
             WHERE status IN ('unassigned', 'assigned') AND overdue_at IS NULL AND due_by <= ?1
             ORDER BY due_by LIMIT ?2"
        ))
        .map_err(db_error)?
        .query_map(params![ms(now), limit as i64], task_from_row)
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    let mut notices = Notices::default();
    let mut marked = Vec::with_capacity(tasks.len());
    for task in tasks {
        let Some(due_by) = task.due_by else { continue };
        let (state, head) = load_state(conn, &task.onboarding_id)?;
        conn.prepare_cached("UPDATE tasks SET overdue_at = ?1 WHERE id = ?2")
            .map_err(db_error)?
            .execute(params![ms(now), task.id.as_str()])
            .map_err(db_error)?;
        let changes = plan::task_overdue(&state, task.step_seq, &task.id, due_by, now);
        notices.merge(apply(conn, &state, head, changes, now, Leases::default())?);
        marked.push(get_task(conn, &task.id)?);
    }
    Ok((marked, notices))
}

/// Waiting steps whose wait ends by `now`.
pub fn due_waits(conn: &Connection, now: Millis, limit: usize) -> StoreResult<Vec<WaitingStep>> {
    conn.prepare_cached(
        "SELECT onboarding_id, seq, stage, task, kind, available_at FROM steps
         WHERE status = 'waiting' AND available_at <= ?1 ORDER BY available_at LIMIT ?2",
    )
    .map_err(db_error)?
    .query_map(params![ms(now), limit as i64], |r| {
        Ok(WaitingStep {
            step: StepRef {
                onboarding_id: get_parsed(r, "onboarding_id")?,
                seq: StepSeq(r.get("seq")?),
                stage: get_parsed(r, "stage")?,
            },
            task: get_parsed(r, "task")?,
            kind: r.get("kind")?,
            until: get_ms(r, "available_at")?,
        })
    })
    .map_err(db_error)?
    .collect::<Result<_, _>>()
    .map_err(db_error)
}

/// Keeps a signal.
pub fn record_signal(
    conn: &Connection,
    id: &OnboardingId,
    name: &str,
    sender_id: &str,
    payload: &Value,
    now: Millis,
    actor: &str,
) -> StoreResult<(SignalReceipt, Notices)> {
    let (state, head) = load_state(conn, id)?;
    let seen: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM signals WHERE onboarding_id = ?1 AND sender_id = ?2")
        .map_err(db_error)?
        .query_row(params![id.as_str(), sender_id], |r| r.get(0))
        .optional()
        .map_err(db_error)?;
    if seen.is_some() {
        return Ok((SignalReceipt::Duplicate, Notices::default()));
    }
    let changes = plan::signal_received(&state, name, sender_id, now, actor)?;
    conn.prepare_cached(
        "INSERT INTO signals (onboarding_id, sender_id, name, payload, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .map_err(db_error)?
    .execute(params![
        id.as_str(),
        sender_id,
        name,
        payload.to_string(),
        ms(now)
    ])
    .map_err(db_error)?;
    let notices = apply(conn, &state, head, changes, now, Leases::default())?;
    Ok((SignalReceipt::New, notices))
}

/// Lets a waiting step take the oldest unused signal `name`.
pub fn take_signal(
    conn: &Connection,
    id: &OnboardingId,
    seq: StepSeq,
    name: &str,
    now: Millis,
    actor: &str,
) -> StoreResult<(bool, Notices)> {
    let (state, head) = load_state(conn, id)?;
    let Some((step, _)) = load_step(conn, id, seq)? else {
        return Ok((false, Notices::default()));
    };
    if step.status != StepStatus::Waiting {
        return Ok((false, Notices::default()));
    }
    let signal: Option<(String, String)> = conn
        .prepare_cached(
            "SELECT sender_id, payload FROM signals
             WHERE onboarding_id = ?1 AND name = ?2 AND taken_by_seq IS NULL
             ORDER BY received_at, sender_id LIMIT 1",
        )
        .map_err(db_error)?
        .query_row(params![id.as_str(), name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(db_error)?;
    let Some((sender_id, payload)) = signal else {
        return Ok((false, Notices::default()));
    };
    let payload: Value = serde_json::from_str(&payload).unwrap_or(Value::Null);
    let others = if state.needs_every_step() {
        crate::onboardings::load_steps(conn, id)?
    } else {
        load_step(conn, id, StepSeq(seq.0 + 1))?
            .map(|(s, _)| s)
            .into_iter()
            .collect()
    };
    let output = json!({"signal": name, "id": sender_id, "payload": payload});
    let changes = plan::resolved(
        &state,
        &step,
        &others,
        Resolution::Succeed(output),
        now,
        actor,
    )?;
    conn.prepare_cached(
        "UPDATE signals SET taken_by_seq = ?1, taken_at = ?2 WHERE onboarding_id = ?3 AND sender_id = ?4",
    )
    .map_err(db_error)?
    .execute(params![seq.0, ms(now), id.as_str(), sender_id])
    .map_err(db_error)?;
    let notices = apply(conn, &state, head, changes, now, Leases::default())?;
    Ok((true, notices))
}
