//! The JSON shapes of the API (SPEC §7), built from store records.
//!
//! Each shape is a typed struct deriving both `Serialize` and `ToSchema`, so the OpenAPI
//! document (`GET /openapi.json`) is generated from the very types the handlers return and
//! cannot drift from them. Store records stay free of HTTP concerns: the `From`
//! conversions here decide what of a record the API shows, and how (times as RFC 3339).

use onramp_core::audit::AuditEntry as AuditRecord;
use onramp_core::customer::Customer;
use onramp_core::delivery::DeliveryStatus;
use onramp_core::events::EventType;
use onramp_core::onboarding::{FailurePolicy, OnboardingStatus};
use onramp_core::plan::progress;
use onramp_core::step::StepStatus;
use onramp_core::task::TaskStatus;
use onramp_core::time::Millis;
use onramp_core::{
    CsrId, DeadLetterId, DeliveryId, EventId, OnboardingId, StageName, StepId, TaskId,
    TaskTypeName, TemplateName, WebhookId,
};
use onramp_store::{
    CsrRecord, DeadLetterRecord, DeliveryRecord, OnboardingRecord, StageCounts, StatusChange,
    StepRecord, TaskRecord, TemplateRecord, WebhookRecord,
};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};

/// An instant as RFC 3339 UTC, e.g. `2026-11-22T10:00:00.000Z`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Timestamp(String);

impl From<Millis> for Timestamp {
    fn from(t: Millis) -> Self {
        Timestamp(t.to_rfc3339())
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("An instant, RFC 3339 UTC."))
            .into()
    }
}

impl ToSchema for Timestamp {}

fn opt_time(t: Option<Millis>) -> Option<Timestamp> {
    t.map(Timestamp::from)
}

/// One server-sent event as an event-stream parser sees it: its `event:`, `id:` and `data:`
/// fields. `data` is JSON text; its shape depends on the stream.
fn sse_event(event_names: Vec<&'static str>, data: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .property(
            "event",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(event_names)),
        )
        .required("event")
        .property(
            "id",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[0-9]+$"))
                .description(Some(
                    "Its position; send it back as `Last-Event-ID` to resume",
                )),
        )
        .required("id")
        .property(
            "data",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .content_media_type("application/json")
                .description(Some(data)),
        )
        .required("data")
        .into()
}

/// An event of `GET /v1/onboardings/{id}/events`: `event: status`, `data:` the [`Status`].
#[derive(Debug)]
pub struct StatusEvent;

impl utoipa::PartialSchema for StatusEvent {
    fn schema() -> RefOr<Schema> {
        sse_event(vec!["status"], "The status JSON (schema `Status`)")
    }
}

impl ToSchema for StatusEvent {}

/// An event of `GET /v1/events`: `event:` its type, `data:` the event as webhooks receive it.
#[derive(Debug)]
pub struct StreamedEvent;

impl utoipa::PartialSchema for StreamedEvent {
    fn schema() -> RefOr<Schema> {
        sse_event(
            EventType::ALL.iter().map(|t| t.as_str()).collect(),
            "The event JSON, as webhooks receive it",
        )
    }
}

impl ToSchema for StreamedEvent {}

/// A step of an onboarding.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Step {
    /// The step's id.
    pub id: StepId,
    /// Its position, from 1.
    #[schema(minimum = 1)]
    pub seq: u32,
    /// Its task type.
    pub task: TaskTypeName,
    /// The stage whose workers run it.
    pub stage: StageName,
    /// The task type's kind: `http`, `human`, `signal`, `delay` or `sim`.
    pub kind: String,
    /// Where it is in its life.
    pub status: StepStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// The CSR of a human step.
    pub assignee: Option<String>,
    /// The scheduled start of a human step.
    pub scheduled_for: Option<Timestamp>,
    /// What it produced (any JSON).
    pub output: Option<Value>,
    /// Its last error.
    pub error: Option<String>,
    /// When its first attempt started.
    pub started_at: Option<Timestamp>,
    /// When it finished.
    pub finished_at: Option<Timestamp>,
}

impl From<&StepRecord> for Step {
    fn from(s: &StepRecord) -> Self {
        Step {
            id: s.id.clone(),
            seq: s.seq.0,
            task: s.task.clone(),
            stage: s.stage.clone(),
            kind: s.kind.clone(),
            status: s.status,
            attempts: s.attempts,
            assignee: s.assignee.clone(),
            scheduled_for: opt_time(s.scheduled_for),
            output: s.output.clone(),
            error: s.error.clone(),
            started_at: opt_time(s.started_at),
            finished_at: opt_time(s.finished_at),
        }
    }
}

/// The template version an onboarding is pinned to.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateVersion {
    /// The template.
    pub name: TemplateName,
    /// Its version, from 1.
    #[schema(minimum = 1)]
    pub version: u32,
}

/// An onboarding without its steps (as lists show it).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OnboardingSummary {
    /// Its id.
    pub id: OnboardingId,
    /// The customer.
    pub customer: Customer,
    /// The template version, or null for an explicit task list.
    pub template: Option<TemplateVersion>,
    /// Where it is in its life.
    pub status: OnboardingStatus,
    /// The stage of its current step; null when terminal.
    pub stage: Option<StageName>,
    /// `round(100 * succeeded_steps / total_steps)`.
    #[schema(minimum = 0, maximum = 100)]
    pub progress: u32,
    /// 0 (default) to 9 (first).
    #[schema(minimum = 0, maximum = 9)]
    pub priority: u8,
    /// Why it failed.
    pub error: Option<String>,
    /// Whether `POST .../retry` may move it on.
    pub retry_available: bool,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// When it completed.
    pub completed_at: Option<Timestamp>,
}

impl From<&OnboardingRecord> for OnboardingSummary {
    fn from(o: &OnboardingRecord) -> Self {
        OnboardingSummary {
            id: o.id.clone(),
            customer: o.customer.clone(),
            template: o.template.as_ref().map(|t| TemplateVersion {
                name: t.name.clone(),
                version: t.version,
            }),
            status: o.status,
            stage: o.stage.clone(),
            progress: progress(o.succeeded_steps, o.total_steps),
            priority: o.priority,
            error: o.error.clone(),
            retry_available: o.retry_available,
            created_at: o.created_at.into(),
            updated_at: o.updated_at.into(),
            completed_at: opt_time(o.completed_at),
        }
    }
}

/// An onboarding with its steps.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Onboarding {
    /// Everything but the steps.
    #[serde(flatten)]
    pub summary: OnboardingSummary,
    /// Its steps, in order.
    pub steps: Vec<Step>,
}

impl From<&OnboardingRecord> for Onboarding {
    fn from(o: &OnboardingRecord) -> Self {
        Onboarding {
            summary: o.into(),
            steps: o.steps.iter().map(Step::from).collect(),
        }
    }
}

/// `GET /v1/onboardings/{id}/status`, and the `data` of an SSE `status` event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Status {
    /// The onboarding.
    pub id: OnboardingId,
    /// Where it is in its life.
    pub status: OnboardingStatus,
    /// The stage of its current step; null when terminal.
    pub stage: Option<StageName>,
    /// `round(100 * succeeded_steps / total_steps)`.
    #[schema(minimum = 0, maximum = 100)]
    pub progress: u32,
    /// Why it failed.
    pub error: Option<String>,
    /// Whether `POST .../retry` may move it on.
    pub retry_available: bool,
}

impl From<&OnboardingRecord> for Status {
    fn from(o: &OnboardingRecord) -> Self {
        Status {
            id: o.id.clone(),
            status: o.status,
            stage: o.stage.clone(),
            progress: progress(o.succeeded_steps, o.total_steps),
            error: o.error.clone(),
            retry_available: o.retry_available,
        }
    }
}

impl From<&StatusChange> for Status {
    fn from(c: &StatusChange) -> Self {
        Status {
            id: c.onboarding_id.clone(),
            status: c.status,
            stage: c.stage.clone(),
            progress: progress(c.succeeded_steps, c.total_steps),
            error: c.error.clone(),
            retry_available: c.retry_available,
        }
    }
}

/// A webhook endpoint.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Webhook {
    /// Its id.
    pub id: WebhookId,
    /// Where events are POSTed.
    #[schema(format = "uri")]
    pub url: String,
    /// The event types it receives.
    pub events: Vec<EventType>,
    /// When it was created.
    pub created_at: Timestamp,
}

impl From<&WebhookRecord> for Webhook {
    fn from(w: &WebhookRecord) -> Self {
        Webhook {
            id: w.id.clone(),
            url: w.url.clone(),
            events: w.events.clone(),
            created_at: w.created_at.into(),
        }
    }
}

/// A webhook endpoint just created, with its signing secret (shown this once).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NewWebhook {
    /// The endpoint.
    #[serde(flatten)]
    pub webhook: Webhook,
    /// `whsec_<base64 key>`: verify signatures with it (Standard Webhooks).
    #[schema(pattern = "^whsec_")]
    pub secret: String,
}

impl From<&WebhookRecord> for NewWebhook {
    fn from(w: &WebhookRecord) -> Self {
        NewWebhook {
            webhook: w.into(),
            secret: w.secret.clone(),
        }
    }
}

/// A delivery of an event to a webhook endpoint.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Delivery {
    /// Its id.
    pub id: DeliveryId,
    /// The event delivered.
    pub event_id: EventId,
    /// The event's type.
    pub event_type: EventType,
    /// The onboarding the event is about.
    pub onboarding_id: OnboardingId,
    /// Where the delivery is in its life.
    pub status: DeliveryStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// When it is tried next.
    pub next_attempt_at: Option<Timestamp>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

impl From<&DeliveryRecord> for Delivery {
    fn from(d: &DeliveryRecord) -> Self {
        Delivery {
            id: d.id.clone(),
            event_id: d.event_id.clone(),
            event_type: d.event_type,
            onboarding_id: d.onboarding_id.clone(),
            status: d.status,
            attempts: d.attempts,
            last_error: d.last_error.clone(),
            next_attempt_at: opt_time(d.next_attempt_at),
            created_at: d.created_at.into(),
            updated_at: d.updated_at.into(),
        }
    }
}

/// An entry of an onboarding's audit log (SPEC §9).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Position in the onboarding's chain, from 1.
    #[schema(minimum = 1)]
    pub seq: u64,
    /// When it happened.
    pub at: Timestamp,
    /// Who did it, e.g. `token:ops` or `engine`.
    pub actor: String,
    /// What happened.
    pub action: String,
    /// The state before.
    pub from: Option<String>,
    /// The state after.
    pub to: Option<String>,
    /// Details (any JSON).
    pub detail: Value,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// `sha256(prev_hash || canonical JSON of the entry)`, hex.
    pub hash: String,
}

impl From<&AuditRecord> for AuditEntry {
    fn from(e: &AuditRecord) -> Self {
        AuditEntry {
            seq: e.seq,
            at: e.at.into(),
            actor: e.actor.clone(),
            action: e.action.clone(),
            from: e.from.clone(),
            to: e.to.clone(),
            detail: e.detail.clone(),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
        }
    }
}

/// A dead-lettered step.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeadLetter {
    /// Its id.
    pub id: DeadLetterId,
    /// The onboarding.
    pub onboarding_id: OnboardingId,
    /// The step's position.
    #[schema(minimum = 1)]
    pub step_seq: u32,
    /// The step's task type.
    pub task: TaskTypeName,
    /// The step's stage.
    pub stage: StageName,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: String,
    /// When it was dead-lettered.
    pub dead_at: Timestamp,
}

impl From<&DeadLetterRecord> for DeadLetter {
    fn from(d: &DeadLetterRecord) -> Self {
        DeadLetter {
            id: d.id.clone(),
            onboarding_id: d.onboarding_id.clone(),
            step_seq: d.step_seq.0,
            task: d.task.clone(),
            stage: d.stage.clone(),
            attempts: d.attempts,
            error: d.error.clone(),
            dead_at: d.dead_at.into(),
        }
    }
}

/// A stage with its queue counts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Stage {
    /// The stage.
    pub name: StageName,
    /// Steps waiting for a worker.
    pub queued: u64,
    /// Steps being worked on.
    pub running: u64,
    /// Steps waiting out a backoff.
    pub retrying: u64,
    /// Dead-lettered steps.
    pub dead: u64,
    /// Workers per process.
    pub concurrency: usize,
    /// Whether its workers are paused.
    pub paused: bool,
}

impl Stage {
    /// A stage's counts and its configured concurrency.
    pub fn new(c: &StageCounts, concurrency: usize) -> Self {
        Stage {
            name: c.stage.clone(),
            queued: c.queued,
            running: c.running,
            retrying: c.retrying,
            dead: c.dead,
            concurrency,
            paused: c.paused,
        }
    }
}

/// A template version.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Template {
    /// The template.
    pub name: TemplateName,
    /// This version, from 1.
    #[schema(minimum = 1)]
    pub version: u32,
    /// Its task types, in order.
    pub tasks: Vec<TaskTypeName>,
    /// What a dead-lettered step does to the onboarding.
    pub on_failure: FailurePolicy,
    /// When this version was created.
    pub created_at: Timestamp,
}

impl From<&TemplateRecord> for Template {
    fn from(t: &TemplateRecord) -> Self {
        Template {
            name: t.name.clone(),
            version: t.version,
            tasks: t.tasks.clone(),
            on_failure: t.on_failure,
            created_at: t.created_at.into(),
        }
    }
}

/// A template version and the numbers of all its versions.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateDetail {
    /// The version asked for (the latest by default).
    #[serde(flatten)]
    pub template: Template,
    /// Every version, oldest first.
    pub versions: Vec<u32>,
}

/// A page of a list: `next_cursor` is null on the last page, else the `?cursor=` of the next.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    /// This page's items.
    pub items: Vec<T>,
    /// The cursor of the next page, null on the last.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page of `items` converted to their views.
    pub fn of<'a, R: 'a>(
        items: impl IntoIterator<Item = &'a R>,
        next_cursor: Option<String>,
    ) -> Self
    where
        T: From<&'a R>,
    {
        Page {
            items: items.into_iter().map(T::from).collect(),
            next_cursor,
        }
    }
}

/// A time-off period of a CSR.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimeOff {
    /// Start.
    pub from: Timestamp,
    /// End.
    pub to: Timestamp,
}

/// A customer-success rep.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Csr {
    /// Their id.
    pub id: CsrId,
    /// Name.
    pub name: String,
    /// E-mail.
    pub email: String,
    /// Skills, matched against human tasks' skills.
    pub skills: Vec<String>,
    /// IANA time zone.
    pub timezone: String,
    /// Local working ranges per weekday (`mon` ... `sun`), like `"09:00-12:00"`.
    pub working_hours: BTreeMap<String, Vec<String>>,
    /// Capacity.
    pub max_active_tasks: u32,
    /// Whether they take tasks.
    pub active: bool,
    /// Away periods.
    pub time_off: Vec<TimeOff>,
    /// Tasks assigned and not done.
    pub active_tasks: u32,
    /// When they were added.
    pub created_at: Timestamp,
    /// When they last changed.
    pub updated_at: Timestamp,
}

impl From<&CsrRecord> for Csr {
    fn from(c: &CsrRecord) -> Self {
        Csr {
            id: c.id.clone(),
            name: c.spec.name.clone(),
            email: c.spec.email.clone(),
            skills: c.spec.skills.clone(),
            timezone: c.spec.timezone.clone(),
            working_hours: c.spec.working_hours.clone(),
            max_active_tasks: c.spec.max_active_tasks,
            active: c.spec.active,
            time_off: c
                .spec
                .time_off
                .iter()
                .map(|t| TimeOff {
                    from: t.from.into(),
                    to: t.to.into(),
                })
                .collect(),
            active_tasks: c.active_tasks,
            created_at: c.created_at.into(),
            updated_at: c.updated_at.into(),
        }
    }
}

/// A human task.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Task {
    /// Its id.
    pub id: TaskId,
    /// The onboarding.
    pub onboarding_id: OnboardingId,
    /// The step's position.
    #[schema(minimum = 1)]
    pub step_seq: u32,
    /// The task type.
    pub task: TaskTypeName,
    /// The skill it needs.
    pub skill: String,
    /// How long it takes.
    pub duration_minutes: u64,
    /// Where it is.
    pub status: TaskStatus,
    /// The CSR it is assigned to.
    pub assignee: Option<CsrId>,
    /// The start of its slot.
    pub scheduled_for: Option<Timestamp>,
    /// The end of its slot.
    pub scheduled_until: Option<Timestamp>,
    /// When it is due.
    pub due_by: Option<Timestamp>,
    /// Open and past `due_by`.
    pub overdue: bool,
    /// The notes it was completed with.
    pub notes: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was done or cancelled.
    pub closed_at: Option<Timestamp>,
}

impl Task {
    /// A task's view; `now` decides `overdue`.
    pub fn new(t: &TaskRecord, now: Millis) -> Self {
        let overdue =
            t.status.is_open() && (t.overdue_at.is_some() || t.due_by.is_some_and(|d| d < now));
        Task {
            id: t.id.clone(),
            onboarding_id: t.onboarding_id.clone(),
            step_seq: t.step_seq.0,
            task: t.task.clone(),
            skill: t.skill.clone(),
            duration_minutes: t.duration_ms / 60_000,
            status: t.status,
            assignee: t.assignee.clone(),
            scheduled_for: opt_time(t.scheduled_for),
            scheduled_until: opt_time(t.scheduled_until),
            due_by: opt_time(t.due_by),
            overdue,
            notes: t.notes.clone(),
            created_at: t.created_at.into(),
            closed_at: opt_time(t.closed_at),
        }
    }

    /// Views of several tasks at `now`.
    pub fn all(tasks: &[TaskRecord], now: Millis) -> Vec<Task> {
        tasks.iter().map(|t| Task::new(t, now)).collect()
    }
}

/// A CSR's scheduled tasks in a window.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Schedule {
    /// The CSR.
    pub csr_id: CsrId,
    /// The window's start.
    pub from: Timestamp,
    /// The window's end.
    pub to: Timestamp,
    /// Their tasks scheduled in the window.
    pub items: Vec<Task>,
}

/// The answer to a signal.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SignalReceipt {
    /// The onboarding.
    pub onboarding_id: OnboardingId,
    /// The signal's name.
    pub signal: String,
    /// The sender's id of the signal.
    pub id: String,
    /// Whether this id was seen before (then nothing changed).
    pub duplicate: bool,
}

/// How many dead letters of a stage were replayed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StageReplay {
    /// The stage (known: an unknown one is 404).
    #[schema(value_type = StageName)]
    pub stage: String,
    /// Dead letters replayed.
    pub replayed: u64,
}

/// How many webhook deliveries were replayed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Replayed {
    /// Deliveries replayed.
    pub replayed: u64,
}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: HealthStatus,
}

/// Whether events flow (`GET /readyz`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventsHealth {
    /// `ok`, or `degraded` while the broker is unreachable (events wait in the outbox).
    pub status: HealthStatus,
    /// Why it is degraded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /readyz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`, or `degraded` when events do not flow.
    pub status: HealthStatus,
    /// Whether events flow.
    pub events: EventsHealth,
}

/// A health verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Everything works.
    Ok,
    /// Ready to serve.
    Ready,
    /// Serving, with something impaired.
    Degraded,
}
