//! The JSON shapes of the API (SPEC §7), built from store records.

use onramp_core::audit::AuditEntry;
use onramp_core::plan::progress;
use onramp_core::time::Millis;
use onramp_store::{
    DeadLetterRecord, DeliveryRecord, OnboardingRecord, StageCounts, StatusChange, StepRecord,
    TemplateRecord, WebhookRecord,
};
use serde_json::{Value, json};

fn time(t: Millis) -> Value {
    Value::String(t.to_rfc3339())
}

fn opt_time(t: Option<Millis>) -> Value {
    t.map_or(Value::Null, time)
}

/// A step.
pub fn step(s: &StepRecord) -> Value {
    json!({
        "id": s.id,
        "seq": s.seq.0,
        "task": s.task,
        "stage": s.stage,
        "kind": s.kind,
        "status": s.status,
        "attempts": s.attempts,
        "assignee": s.assignee,
        "scheduled_for": opt_time(s.scheduled_for),
        "output": s.output,
        "error": s.error,
        "started_at": opt_time(s.started_at),
        "finished_at": opt_time(s.finished_at),
    })
}

/// An onboarding; with its steps when `with_steps`.
pub fn onboarding(o: &OnboardingRecord, with_steps: bool) -> Value {
    let mut v = json!({
        "id": o.id,
        "customer": o.customer,
        "template": o.template.as_ref().map(|t| json!({"name": t.name, "version": t.version})),
        "status": o.status,
        "stage": o.stage,
        "progress": progress(o.succeeded_steps, o.total_steps),
        "priority": o.priority,
        "error": o.error,
        "retry_available": o.retry_available,
        "created_at": time(o.created_at),
        "updated_at": time(o.updated_at),
        "completed_at": opt_time(o.completed_at),
    });
    if with_steps {
        v["steps"] = o.steps.iter().map(step).collect();
    }
    v
}

/// `GET /v1/onboardings/{id}/status`.
pub fn status(o: &OnboardingRecord) -> Value {
    json!({
        "id": o.id,
        "status": o.status,
        "stage": o.stage,
        "progress": progress(o.succeeded_steps, o.total_steps),
        "error": o.error,
        "retry_available": o.retry_available,
    })
}

/// The status JSON as of one recorded change (the `data` of an SSE `status` event): the same
/// shape as `GET /v1/onboardings/{id}/status`.
pub fn status_change(c: &StatusChange) -> Value {
    json!({
        "id": c.onboarding_id,
        "status": c.status,
        "stage": c.stage,
        "progress": progress(c.succeeded_steps, c.total_steps),
        "error": c.error,
        "retry_available": c.retry_available,
    })
}

/// A webhook endpoint; its secret only when `with_secret` (the create response).
pub fn webhook(w: &WebhookRecord, with_secret: bool) -> Value {
    let mut v = json!({
        "id": w.id,
        "url": w.url,
        "events": w.events,
        "created_at": time(w.created_at),
    });
    if with_secret {
        v["secret"] = Value::String(w.secret.clone());
    }
    v
}

/// A delivery of an event to a webhook endpoint.
pub fn delivery(d: &DeliveryRecord) -> Value {
    json!({
        "id": d.id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "onboarding_id": d.onboarding_id,
        "status": d.status,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "next_attempt_at": opt_time(d.next_attempt_at),
        "created_at": time(d.created_at),
        "updated_at": time(d.updated_at),
    })
}

/// An audit entry.
pub fn audit_entry(e: &AuditEntry) -> Value {
    json!({
        "seq": e.seq,
        "at": time(e.at),
        "actor": e.actor,
        "action": e.action,
        "from": e.from,
        "to": e.to,
        "detail": e.detail,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    })
}

/// A dead letter.
pub fn dead_letter(d: &DeadLetterRecord) -> Value {
    json!({
        "id": d.id,
        "onboarding_id": d.onboarding_id,
        "step_seq": d.step_seq.0,
        "task": d.task,
        "stage": d.stage,
        "attempts": d.attempts,
        "error": d.error,
        "dead_at": time(d.dead_at),
    })
}

/// A stage with its counts.
pub fn stage(c: &StageCounts, concurrency: usize) -> Value {
    json!({
        "name": c.stage,
        "queued": c.queued,
        "running": c.running,
        "retrying": c.retrying,
        "dead": c.dead,
        "concurrency": concurrency,
        "paused": c.paused,
    })
}

/// A template version.
pub fn template(t: &TemplateRecord) -> Value {
    json!({
        "name": t.name,
        "version": t.version,
        "tasks": t.tasks,
        "on_failure": t.on_failure,
        "created_at": time(t.created_at),
    })
}

/// A page of items.
pub fn page(items: Vec<Value>, next_cursor: Option<String>) -> Value {
    json!({"items": items, "next_cursor": next_cursor})
}

/// A CSR.
pub fn csr(c: &onramp_store::CsrRecord) -> Value {
    json!({
        "id": c.id,
        "name": c.spec.name,
        "email": c.spec.email,
        "skills": c.spec.skills,
        "timezone": c.spec.timezone,
        "working_hours": c.spec.working_hours,
        "max_active_tasks": c.spec.max_active_tasks,
        "active": c.spec.active,
        "time_off": c.spec.time_off.iter()
            .map(|t| json!({"from": t.from.to_rfc3339(), "to": t.to.to_rfc3339()}))
            .collect::<Vec<_>>(),
        "active_tasks": c.active_tasks,
        "created_at": c.created_at.to_rfc3339(),
        "updated_at": c.updated_at.to_rfc3339(),
    })
}

/// A human task; `now` decides `overdue`.
pub fn task(t: &onramp_store::TaskRecord, now: onramp_core::time::Millis) -> Value {
    let overdue =
        t.status.is_open() && (t.overdue_at.is_some() || t.due_by.is_some_and(|d| d < now));
    json!({
        "id": t.id,
        "onboarding_id": t.onboarding_id,
        "step_seq": t.step_seq.0,
        "task": t.task,
        "skill": t.skill,
        "duration_minutes": t.duration_ms / 60_000,
        "status": t.status,
        "assignee": t.assignee,
        "scheduled_for": opt_time(t.scheduled_for),
        "scheduled_until": opt_time(t.scheduled_until),
        "due_by": opt_time(t.due_by),
        "overdue": overdue,
        "notes": t.notes,
        "created_at": t.created_at.to_rfc3339(),
        "closed_at": opt_time(t.closed_at),
    })
}
