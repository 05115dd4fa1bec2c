//! What goes in and comes out of a store.

use crate::StoreError;
use onramp_core::auth::Role;
use onramp_core::customer::Customer;
use onramp_core::onboarding::{FailurePolicy, OnboardingStatus};
use onramp_core::outcome::Resolution;
use onramp_core::plan::{Changes, OnboardingState};
use onramp_core::step::StepStatus;
use onramp_core::task::TaskStatus;
use onramp_core::time::Millis;
use onramp_core::{
    CsrId, DeadLetterId, OnboardingId, StageName, StepId, StepSeq, TaskId, TaskTypeName,
    TemplateName,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A template version an onboarding is pinned to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRef {
    /// The template.
    pub name: TemplateName,
    /// Its version.
    pub version: u32,
}

/// A step of a new onboarding.
#[derive(Debug, Clone, PartialEq)]
pub struct NewStep {
    /// Its task type.
    pub task: TaskTypeName,
    /// The task type's stage.
    pub stage: StageName,
    /// The task type's kind (`http`, `sim`, ...).
    pub kind: String,
    /// Whether the task has a `compensate` request to undo it when the onboarding is
    /// cancelled (fixed at creation, like the template version).
    pub compensable: bool,
}

/// An onboarding to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOnboarding {
    /// Its id.
    pub id: OnboardingId,
    /// The customer.
    pub customer: Customer,
    /// The template it came from, if any.
    pub template: Option<TemplateRef>,
    /// 0 (default) to 9 (first).
    pub priority: u8,
    /// Its steps in order (at least one).
    pub steps: Vec<NewStep>,
    /// What a dead-lettered step leads to (the template's `on_failure`).
    pub on_failure: FailurePolicy,
    /// When.
    pub now: Millis,
    /// Who.
    pub actor: String,
}

impl NewOnboarding {
    /// The onboarding as the planner sees it before its creation, and what creating it means
    /// (first step queued, audit entry, event) — the same for every backend.
    pub fn plan_creation(&self) -> Result<(OnboardingState, Changes), StoreError> {
        use onramp_core::plan::{self, StepState};
        let first = self.steps.first().ok_or_else(|| {
            StoreError::InvalidTransition("an onboarding needs at least one step".into())
        })?;
        let total_steps = u32::try_from(self.steps.len())
            .map_err(|_| StoreError::InvalidTransition("too many steps".into()))?;
        let state = OnboardingState {
            id: self.id.clone(),
            status: OnboardingStatus::Pending,
            current_seq: StepSeq(1),
            total_steps,
            succeeded_steps: 0,
            on_failure: self.on_failure,
        };
        let first = StepState {
            seq: StepSeq(1),
            task: first.task.clone(),
            stage: first.stage.clone(),
            status: StepStatus::Pending,
            attempts: 0,
            compensable: first.compensable,
            lease_expires_at: None,
        };
        let detail = serde_json::json!({
            "customer": {"name": self.customer.name, "email": self.customer.email},
            "template": self.template,
            "tasks": self.steps.iter().map(|s| s.task.as_str()).collect::<Vec<_>>(),
            "priority": self.priority,
        });
        let changes = plan::created(&state, &first, self.now, &self.actor, detail)?;
        Ok((state, changes))
    }

    /// The onboarding exactly as its creation leaves it: `changes` (from
    /// [`plan_creation`](Self::plan_creation)) applied to the new rows, with these step ids.
    /// A store that inserts this state directly has nothing to update or read back.
    ///
    /// Creation moves steps out of `pending` and sets the onboarding's fields (and writes
    /// audit entries and events); a plan that does more (claims or finishes a step, opens a
    /// task, dead-letters) is refused as a bug, since this record would not show it.
    pub fn created_record(
        &self,
        step_ids: Vec<StepId>,
        changes: &Changes,
    ) -> Result<OnboardingRecord, StoreError> {
        use onramp_core::plan::ErrorUpdate;
        let unexpected = |what: &str| {
            StoreError::Internal(format!(
                "the creation plan {what}; a create cannot write that"
            ))
        };
        if !changes.new_tasks.is_empty()
            || !changes.close_tasks.is_empty()
            || !changes.dead_letters.is_empty()
        {
            return Err(unexpected("opens or closes tasks or dead letters"));
        }
        if step_ids.len() != self.steps.len() {
            return Err(StoreError::Internal(format!(
                "{} step ids for {} steps",
                step_ids.len(),
                self.steps.len()
            )));
        }
        let mut steps: Vec<StepRecord> = step_ids
            .into_iter()
            .zip(&self.steps)
            .zip(1..)
            .map(|((id, step), seq)| StepRecord {
                id,
                seq: StepSeq(seq),
                task: step.task.clone(),
                stage: step.stage.clone(),
                kind: step.kind.clone(),
                status: StepStatus::Pending,
                attempts: 0,
                assignee: None,
                scheduled_for: None,
                output: None,
                error: None,
                started_at: None,
                finished_at: None,
            })
            .collect();
        for change in &changes.steps {
            let step = steps
                .iter_mut()
                .find(|s| s.seq == change.seq)
                .ok_or_else(|| unexpected("changes a step that does not exist"))?;
            if change.claimed || change.from != step.status {
                return Err(unexpected(
                    "claims a step or moves one from a status it lacks",
                ));
            }
            if change.output.is_some()
                || change.finished_at.is_some()
                || matches!(change.error, ErrorUpdate::Set(_))
            {
                return Err(unexpected("gives a step an output, an error or an end"));
            }
            step.status = change.to;
        }
        let mut record = OnboardingRecord {
            id: self.id.clone(),
            customer: self.customer.clone(),
            template: self.template.clone(),
            status: OnboardingStatus::Pending,
            stage: self.steps.first().map(|s| s.stage.clone()),
            current_seq: StepSeq(1),
            succeeded_steps: 0,
            total_steps: u32::try_from(steps.len())
                .map_err(|_| StoreError::InvalidTransition("too many steps".into()))?,
            priority: self.priority,
            error: None,
            retry_available: false,
            created_at: self.now,
            updated_at: self.now,
            completed_at: None,
            steps,
        };
        if let Some(row) = &changes.onboarding {
            if row.from != record.status {
                return Err(unexpected("moves the onboarding from a status it lacks"));
            }
            record.status = row.to;
            record.stage = row.stage.clone();
            record.current_seq = row.current_seq;
            record.succeeded_steps = row.succeeded_steps;
            record.retry_available = row.retry_available;
            record.completed_at = row.finished_at;
            match &row.error {
                ErrorUpdate::Keep | ErrorUpdate::Clear => {}
                ErrorUpdate::Set(e) => record.error = Some(e.clone()),
            }
        }
        Ok(record)
    }
}

/// Refuses a retry or replay of an onboarding that has nothing to replay: only a failed
/// onboarding, or a cancelling one whose compensation dead-lettered, has.
pub fn ensure_replayable(state: &OnboardingState) -> Result<(), StoreError> {
    if matches!(
        state.status,
        OnboardingStatus::Failed | OnboardingStatus::Cancelling
    ) {
        Ok(())
    } else {
        Err(StoreError::InvalidTransition(format!(
            "onboarding {} is {}, only a failed onboarding (or a cancelling one whose \
             compensation dead-lettered) can be retried",
            state.id, state.status
        )))
    }
}

/// An idempotency key presented with a create request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    /// Whose key space (the token name), so two callers' keys never collide.
    pub scope: String,
    /// The key.
    pub key: String,
    /// A hash of the request body, to tell a repeat from a reuse.
    pub request_hash: String,
}

/// The result of a create.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// A new onboarding.
    New(OnboardingRecord),
    /// A repeat of an earlier request: the onboarding as it was first returned.
    Replayed(OnboardingRecord),
}

impl Created {
    /// The onboarding, new or replayed.
    pub fn record(&self) -> &OnboardingRecord {
        match self {
            Created::New(record) | Created::Replayed(record) => record,
        }
    }
}

/// An onboarding as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnboardingRecord {
    /// Its id.
    pub id: OnboardingId,
    /// The customer.
    pub customer: Customer,
    /// Its template version, if it came from one.
    pub template: Option<TemplateRef>,
    /// Its status.
    pub status: OnboardingStatus,
    /// The current step's stage (`None` when terminal).
    pub stage: Option<StageName>,
    /// The current step.
    pub current_seq: StepSeq,
    /// Steps succeeded.
    pub succeeded_steps: u32,
    /// Steps in all.
    pub total_steps: u32,
    /// Priority 0–9.
    pub priority: u8,
    /// Why it failed.
    pub error: Option<String>,
    /// Whether retry is possible.
    pub retry_available: bool,
    /// Created.
    pub created_at: Millis,
    /// Last changed.
    pub updated_at: Millis,
    /// Reached a terminal status.
    pub completed_at: Option<Millis>,
    /// Its steps in order (empty in lists).
    pub steps: Vec<StepRecord>,
}

/// A step as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Its id.
    pub id: StepId,
    /// Its position.
    pub seq: StepSeq,
    /// Its task type.
    pub task: TaskTypeName,
    /// Its stage.
    pub stage: StageName,
    /// Its kind.
    pub kind: String,
    /// Its status.
    pub status: StepStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// The CSR it is assigned to (human steps).
    pub assignee: Option<String>,
    /// When it is scheduled (human steps).
    pub scheduled_for: Option<Millis>,
    /// Output of a successful attempt.
    pub output: Option<Value>,
    /// The last error.
    pub error: Option<String>,
    /// First attempt started.
    pub started_at: Option<Millis>,
    /// Finished.
    pub finished_at: Option<Millis>,
}

/// Filters for listing onboardings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OnboardingFilter {
    /// Only this status.
    pub status: Option<OnboardingStatus>,
    /// Only onboardings whose current step is in this stage.
    pub stage: Option<StageName>,
    /// Only from this template.
    pub template: Option<TemplateName>,
    /// Substring of the customer's name, e-mail or external reference.
    pub q: Option<String>,
}

/// A page request: up to `limit` items after `cursor`.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest<C> {
    /// Items per page.
    pub limit: usize,
    /// Continue after this item.
    pub cursor: Option<C>,
}

/// A page of items and where to continue.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T, C> {
    /// The items.
    pub items: Vec<T>,
    /// The cursor of the next page, if there is one.
    pub next_cursor: Option<C>,
}

impl<T, C> Page<T, C> {
    /// A page from a query that fetched up to `limit + 1` rows: the extra row only says that
    /// more follow, and the cursor is the last kept item's.
    pub fn from_overfetch(mut items: Vec<T>, limit: usize, cursor: impl Fn(&T) -> C) -> Self {
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(cursor)
        } else {
            None
        };
        Page { items, next_cursor }
    }
}

/// A lease on a claimed step; a finish must present it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseId(pub i64);

/// A step a worker claimed.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedStep {
    /// The onboarding.
    pub onboarding_id: OnboardingId,
    /// The step.
    pub step_id: StepId,
    /// Its position.
    pub seq: StepSeq,
    /// Its task type.
    pub task: TaskTypeName,
    /// Its stage.
    pub stage: StageName,
    /// This attempt's number (from 1).
    pub attempt: u32,
    /// The lease to present when finishing.
    pub lease: LeaseId,
    /// When the lease runs out.
    pub lease_expires_at: Millis,
    /// Whether this runs the step's compensation (its onboarding is being cancelled) rather
    /// than its work.
    pub compensation: bool,
}

/// A step by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRef {
    /// The onboarding.
    pub onboarding_id: OnboardingId,
    /// The step.
    pub seq: StepSeq,
    /// Its stage.
    pub stage: StageName,
}

/// What must still hold for a finish to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepGuard {
    /// The step is running under this lease.
    Lease(LeaseId),
    /// The step has this status (a queued step that timed out, a waiting step that is done).
    Status(StepStatus),
}

/// A decision on a step, to carry out.
#[derive(Debug, Clone, PartialEq)]
pub struct StepFinish {
    /// Which step.
    pub step: StepRef,
    /// What must still hold.
    pub guard: StepGuard,
    /// What to do.
    pub resolution: Resolution,
    /// When.
    pub now: Millis,
    /// Who.
    pub actor: String,
}

/// An open dead letter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterRecord {
    /// Its id.
    pub id: DeadLetterId,
    /// The onboarding.
    pub onboarding_id: OnboardingId,
    /// The step.
    pub step_seq: StepSeq,
    /// The step's task type.
    pub task: TaskTypeName,
    /// The step's stage.
    pub stage: StageName,
    /// Attempts made.
    pub attempts: u32,
    /// Why it died.
    pub error: String,
    /// When.
    pub dead_at: Millis,
}

/// Queue counts of one stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageCounts {
    /// The stage.
    pub stage: StageName,
    /// Claimable or soon claimable steps.
    pub queued: u64,
    /// Steps under a lease.
    pub running: u64,
    /// Steps waiting for their backoff.
    pub retrying: u64,
    /// Open dead letters.
    pub dead: u64,
    /// Whether workers stopped claiming.
    pub paused: bool,
}

/// How much open work there is, for metrics. Every figure is read through an index over open
/// rows only (queued steps, unpublished events, open tasks, ...), so reading it costs the same
/// however many finished onboardings the database holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkLevels {
    /// Queue counts per stage (as `stage_counts`).
    pub stages: Vec<StageCounts>,
    /// Onboardings per non-terminal status (`completed` and `cancelled` are not counted: they
    /// only grow, and counting them would read every finished onboarding).
    pub open_onboardings: Vec<(OnboardingStatus, u64)>,
    /// Events committed but not yet published to the delivery queues.
    pub unpublished_events: u64,
    /// Deliveries not yet delivered or dead, per target (a webhook id, or `amqp`).
    pub open_deliveries: Vec<(String, u64)>,
    /// Human tasks waiting for a CSR.
    pub unassigned_tasks: u64,
    /// Open human tasks past their due time.
    pub overdue_tasks: u64,
    /// Assigned, not yet done, tasks per CSR.
    pub assigned_tasks: Vec<(CsrId, u64)>,
}

/// A template version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRecord {
    /// Its name.
    pub name: TemplateName,
    /// Its version, from 1.
    pub version: u32,
    /// Its tasks in order.
    pub tasks: Vec<TaskTypeName>,
    /// What a dead-lettered step of its onboardings leads to.
    #[serde(default)]
    pub on_failure: FailurePolicy,
    /// When this version was made.
    pub created_at: Millis,
}

/// What a template version says: its tasks and its failure policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSpec {
    /// The tasks in order.
    pub tasks: Vec<TaskTypeName>,
    /// What a dead-lettered step leads to.
    pub on_failure: FailurePolicy,
}

impl TemplateRecord {
    /// Whether this version says exactly `spec`.
    pub fn says(&self, spec: &TemplateSpec) -> bool {
        self.tasks == spec.tasks && self.on_failure == spec.on_failure
    }
}

/// A token to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    /// A unique name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// SHA-256 of the secret, hex.
    pub hash: String,
    /// The CSR it acts for (role `csr`).
    pub csr: Option<CsrId>,
    /// When.
    pub now: Millis,
    /// Who creates it (for the audit log).
    pub actor: String,
}

/// A stored token (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The CSR it acts for.
    pub csr: Option<CsrId>,
    /// Created.
    pub created_at: Millis,
    /// Revoked, if it was.
    pub revoked_at: Option<Millis>,
}

/// A period a CSR is away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeOff {
    /// Start.
    pub from: Millis,
    /// End.
    pub to: Millis,
}

/// What a CSR is, as given (validated by the engine before it reaches a store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsrSpec {
    /// Their name.
    pub name: String,
    /// Their e-mail.
    pub email: String,
    /// Their skills (non-empty strings).
    pub skills: Vec<String>,
    /// Their IANA time zone.
    pub timezone: String,
    /// Local working ranges per weekday (`mon` .. `sun`).
    pub working_hours: std::collections::BTreeMap<String, Vec<String>>,
    /// Most open tasks at once.
    pub max_active_tasks: u32,
    /// Whether they take tasks.
    pub active: bool,
    /// When they are away.
    pub time_off: Vec<TimeOff>,
}

/// A stored CSR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsrRecord {
    /// Their id.
    pub id: CsrId,
    /// What they are.
    pub spec: CsrSpec,
    /// Their assigned open tasks.
    pub active_tasks: u32,
    /// Created.
    pub created_at: Millis,
    /// Last changed.
    pub updated_at: Millis,
}

/// A human task as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Its id.
    pub id: TaskId,
    /// Its onboarding.
    pub onboarding_id: OnboardingId,
    /// Its step.
    pub step_seq: StepSeq,
    /// The step's task type.
    pub task: TaskTypeName,
    /// The skill it needs.
    pub skill: String,
    /// How long it takes, in milliseconds.
    pub duration_ms: u64,
    /// Its status.
    pub status: TaskStatus,
    /// Its CSR.
    pub assignee: Option<CsrId>,
    /// Its slot's start.
    pub scheduled_for: Option<Millis>,
    /// Its slot's end.
    pub scheduled_until: Option<Millis>,
    /// Its deadline.
    pub due_by: Option<Millis>,
    /// When the scheduler found it overdue.
    pub overdue_at: Option<Millis>,
    /// Notes given when it was completed.
    pub notes: Option<String>,
    /// Created.
    pub created_at: Millis,
    /// Done or cancelled.
    pub closed_at: Option<Millis>,
}

/// Filters for listing tasks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFilter {
    /// Only this CSR's.
    pub assignee: Option<CsrId>,
    /// Only this status.
    pub status: Option<TaskStatus>,
    /// Only open tasks due before this instant (`overdue=true` passes now).
    pub due_before: Option<Millis>,
}

/// A waiting step whose wait ends by itself (delay over, signal timed out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingStep {
    /// The step.
    pub step: StepRef,
    /// Its task type.
    pub task: TaskTypeName,
    /// Its kind.
    pub kind: String,
    /// When its wait ends.
    pub until: Millis,
}

/// What became of a signal sent to an onboarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalReceipt {
    /// Kept (and used at once if a step waits for it).
    New,
    /// The sender's id was seen before: nothing done.
    Duplicate,
}

/// Turns CSRs with their schedules into assignment candidates (shared by both backends).
pub fn candidates_for(
    csrs: &[(CsrRecord, Vec<onramp_core::schedule::Interval>)],
    skill: &str,
) -> Vec<(usize, onramp_core::schedule::Candidate)> {
    use onramp_core::schedule::{Availability, Candidate, Interval, WorkingHours, parse_time_zone};
    csrs.iter()
        .enumerate()
        .filter(|(_, (c, _))| c.spec.active && c.spec.skills.iter().any(|s| s == skill))
        .filter_map(|(i, (c, busy))| {
            let tz = parse_time_zone(&c.spec.timezone).ok()?;
            let hours = WorkingHours::parse(&c.spec.working_hours).ok()?;
            let mut blocked = busy.clone();
            blocked.extend(c.spec.time_off.iter().map(|t| Interval {
                from: t.from,
                to: t.to,
            }));
            Some((
                i,
                Candidate {
                    id: c.id.clone(),
                    active_tasks: c.active_tasks,
                    max_active_tasks: c.spec.max_active_tasks,
                    availability: Availability { tz, hours, blocked },
                },
            ))
        })
        .collect()
}

/// An assignment decided by [`plan_assignments`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The task.
    pub task: TaskId,
    /// Its onboarding.
    pub onboarding_id: OnboardingId,
    /// Its step.
    pub step_seq: StepSeq,
    /// Its status before.
    pub from: TaskStatus,
    /// The CSR.
    pub csr: CsrId,
    /// The slot.
    pub slot: onramp_core::schedule::Interval,
}

/// Assigns `tasks` (oldest first) one after the other, each seeing the slots and capacity
/// the ones before it took. `csrs` are every CSR with their scheduled open tasks.
pub fn plan_assignments(
    tasks: &[TaskRecord],
    csrs: &mut [(CsrRecord, Vec<onramp_core::schedule::Interval>)],
    now: Millis,
) -> Vec<Assignment> {
    let mut out = Vec::new();
    for task in tasks {
        let candidates = candidates_for(csrs, &task.skill);
        let list: Vec<_> = candidates.iter().map(|(_, c)| c.clone()).collect();
        let duration = std::time::Duration::from_millis(task.duration_ms);
        let Some((pick, at)) = onramp_core::schedule::choose(&list, duration, now) else {
            continue;
        };
        let index = candidates[pick].0;
        let slot = onramp_core::schedule::Interval {
            from: at,
            to: at.plus(duration),
        };
        let (csr, busy) = &mut csrs[index];
        csr.active_tasks += 1;
        busy.push(slot);
        out.push(Assignment {
            task: task.id.clone(),
            onboarding_id: task.onboarding_id.clone(),
            step_seq: task.step_seq,
            from: task.status,
            csr: csr.id.clone(),
            slot,
        });
    }
    out
}
