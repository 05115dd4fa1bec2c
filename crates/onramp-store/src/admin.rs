//! The entries of the administrative audit chain, one constructor per kind of change, so both
//! stores record the same actions with the same details. Secrets never go in: a token's hash
//! and a webhook's signing secret are left out.

use crate::{CsrSpec, NewToken, NewWebhook, TemplateRecord};
use onramp_core::audit::AuditRecord;
use onramp_core::time::Millis;
use onramp_core::{CsrId, StageName, WebhookId};
use serde_json::{Value, json};

fn record(
    at: Millis,
    actor: &str,
    action: &str,
    from: Option<String>,
    to: Option<String>,
    detail: Value,
) -> AuditRecord {
    AuditRecord {
        at,
        actor: actor.to_owned(),
        action: action.to_owned(),
        from,
        to,
        detail,
    }
}

/// `token.created`.
pub fn token_created(t: &NewToken) -> AuditRecord {
    record(
        t.now,
        &t.actor,
        "token.created",
        None,
        Some("live".into()),
        json!({"name": t.name, "role": t.role, "csr": t.csr}),
    )
}

/// `token.revoked`.
pub fn token_revoked(name: &str, now: Millis, actor: &str) -> AuditRecord {
    record(
        now,
        actor,
        "token.revoked",
        Some("live".into()),
        Some("revoked".into()),
        json!({"name": name}),
    )
}

/// `template.changed`: a new version (`from` is the version before, none for the first).
pub fn template_changed(t: &TemplateRecord, actor: &str) -> AuditRecord {
    record(
        t.created_at,
        actor,
        "template.changed",
        (t.version > 1).then(|| format!("v{}", t.version - 1)),
        Some(format!("v{}", t.version)),
        json!({"name": t.name, "version": t.version, "tasks": t.tasks, "on_failure": t.on_failure}),
    )
}

/// `csr.created`.
pub fn csr_created(id: &CsrId, spec: &CsrSpec, now: Millis, actor: &str) -> AuditRecord {
    record(
        now,
        actor,
        "csr.created",
        None,
        Some(active(spec)),
        json!({"id": id, "spec": spec}),
    )
}

/// `csr.changed`, with what they were and what they are.
pub fn csr_changed(
    id: &CsrId,
    before: &CsrSpec,
    after: &CsrSpec,
    now: Millis,
    actor: &str,
) -> AuditRecord {
    record(
        now,
        actor,
        "csr.changed",
        Some(active(before)),
        Some(active(after)),
        json!({"id": id, "before": before, "after": after}),
    )
}

/// `csr.deleted`.
pub fn csr_deleted(id: &CsrId, now: Millis, actor: &str) -> AuditRecord {
    record(
        now,
        actor,
        "csr.deleted",
        None,
        Some("deleted".into()),
        json!({"id": id}),
    )
}

fn active(spec: &CsrSpec) -> String {
    if spec.active { "active" } else { "inactive" }.to_owned()
}

/// `stage.paused` or `stage.resumed`.
pub fn stage_paused(stage: &StageName, paused: bool, now: Millis, actor: &str) -> AuditRecord {
    let (action, from, to) = if paused {
        ("stage.paused", "running", "paused")
    } else {
        ("stage.resumed", "paused", "running")
    };
    record(
        now,
        actor,
        action,
        Some(from.into()),
        Some(to.into()),
        json!({"stage": stage}),
    )
}

/// `webhook.created`.
pub fn webhook_created(w: &NewWebhook) -> AuditRecord {
    record(
        w.now,
        &w.actor,
        "webhook.created",
        None,
        Some("active".into()),
        json!({"id": w.id, "url": w.url, "events": w.events}),
    )
}

/// `webhook.deleted`.
pub fn webhook_deleted(id: &WebhookId, now: Millis, actor: &str) -> AuditRecord {
    record(
        now,
        actor,
        "webhook.deleted",
        Some("active".into()),
        Some("deleted".into()),
        json!({"id": id}),
    )
}
