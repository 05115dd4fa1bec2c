//! What a change to an onboarding means, as data.
//!
//! Each function here takes a snapshot of an onboarding (and the steps involved), read by a
//! store inside its transaction, and returns [`Changes`]: the status changes (each computed by
//! the state machines' `transition`), the audit records, the outbox events and the stages to
//! wake. The store then writes all of it in that same transaction, guarding every status
//! update with the status it expects (compare-and-set). Both backends share these decisions;
//! they only differ in how they write them.

use crate::audit::AuditRecord;
use crate::events::{EventType, NewEvent};
use crate::ids::{EventId, OnboardingId, StepSeq};
use crate::names::{StageName, TaskTypeName};
use crate::onboarding::{
    self, FailurePolicy, InvalidTransition, OnboardingEvent, OnboardingStatus,
};
use crate::outcome::{HumanTask, Resolution};
use crate::step::{self, InvalidStepTransition, StepEvent, StepStatus};
use crate::task::{self as task_machine, TaskEvent, TaskStatus};
use crate::time::Millis;
use crate::{CsrId, TaskId};
use serde_json::{Value, json};

/// An onboarding as the planner needs to see it.
#[derive(Debug, Clone, PartialEq)]
pub struct OnboardingState {
    /// Its id.
    pub id: OnboardingId,
    /// Its status.
    pub status: OnboardingStatus,
    /// The current step.
    pub current_seq: StepSeq,
    /// How many steps it has.
    pub total_steps: u32,
    /// How many have succeeded.
    pub succeeded_steps: u32,
    /// What a dead-lettered step leads to.
    pub on_failure: FailurePolicy,
}

impl OnboardingState {
    /// Whether deciding on one of its steps needs every step, not just that step and the
    /// next: while it is cancelling (the next compensation is an earlier step), and when a
    /// dead letter would start its compensations.
    pub fn needs_every_step(&self) -> bool {
        self.status == OnboardingStatus::Cancelling || self.on_failure == FailurePolicy::Compensate
    }
}

/// A step as the planner needs to see it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepState {
    /// Its position.
    pub seq: StepSeq,
    /// Its task type.
    pub task: TaskTypeName,
    /// Its stage.
    pub stage: StageName,
    /// Its status.
    pub status: StepStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// Whether its task has a `compensate` request (fixed when the onboarding was created).
    pub compensable: bool,
    /// When the lease of a running attempt (or compensation) ends.
    pub lease_expires_at: Option<Millis>,
}

/// How a step's `error` column changes.
#[derive(Debug, Clone, PartialEq)]
pub enum ErrorUpdate {
    /// Leave it.
    Keep,
    /// Set it.
    Set(String),
    /// Clear it.
    Clear,
}

/// How a step's attempt counter changes (claims add one on their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptsUpdate {
    /// Leave it.
    Keep,
    /// Give back the attempt the claim charged (deferral).
    Refund,
    /// Start counting again (replay).
    Reset,
}

/// A change of one step's status and the fields that go with it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepChange {
    /// Which step.
    pub seq: StepSeq,
    /// The status it must have now (the compare in compare-and-set).
    pub from: StepStatus,
    /// Its new status.
    pub to: StepStatus,
    /// When it becomes claimable (set on entering `queued` / `retrying`).
    pub available_at: Option<Millis>,
    /// Whether this (re)enters the queue, which restarts the pickup timeout.
    pub enqueued: bool,
    /// Its output (on success).
    pub output: Option<Value>,
    /// Its error.
    pub error: ErrorUpdate,
    /// Its attempt counter.
    pub attempts: AttemptsUpdate,
    /// When it finished, if it did.
    pub finished_at: Option<Millis>,
    /// Whether this is a claim: the store grants the claim's lease and counts the attempt.
    /// Any other change leaves the step without a lease.
    pub claimed: bool,
}

/// A change of the onboarding row.
#[derive(Debug, Clone, PartialEq)]
pub struct OnboardingChange {
    /// The status it must have now.
    pub from: OnboardingStatus,
    /// Its new status (may equal `from` when only fields change).
    pub to: OnboardingStatus,
    /// The current step.
    pub current_seq: StepSeq,
    /// The current step's stage; `None` once terminal.
    pub stage: Option<StageName>,
    /// Steps succeeded so far.
    pub succeeded_steps: u32,
    /// The onboarding's error.
    pub error: ErrorUpdate,
    /// Whether a retry is possible.
    pub retry_available: bool,
    /// Set when it reached a terminal status.
    pub finished_at: Option<Millis>,
}

/// A change to the dead-letter queue.
#[derive(Debug, Clone, PartialEq)]
pub enum DeadLetterChange {
    /// A step was dead-lettered.
    Add {
        /// Which step.
        seq: StepSeq,
        /// Why.
        error: String,
    },
    /// Open dead letters of the onboarding were replayed, discarded or cancelled.
    Resolve {
        /// How: `replayed`, `discarded` or `cancelled`.
        resolution: &'static str,
    },
}

/// Everything one transition writes, in one transaction.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Changes {
    /// The onboarding row.
    pub onboarding: Option<OnboardingChange>,
    /// Step rows.
    pub steps: Vec<StepChange>,
    /// Changes to the dead-letter queue, in order.
    pub dead_letters: Vec<DeadLetterChange>,
    /// Audit entries, in order.
    pub audit: Vec<AuditRecord>,
    /// Outbox events, in order.
    pub events: Vec<NewEvent>,
    /// Stages that got claimable work.
    pub wake: Vec<StageName>,
    /// Human tasks to open (a human step began waiting).
    pub new_tasks: Vec<NewTask>,
    /// Steps whose open human tasks end (`done` or `cancelled`), with the task status.
    pub close_tasks: Vec<(StepSeq, TaskStatus)>,
}

/// A human task to open for a waiting step.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    /// Its id.
    pub id: TaskId,
    /// Its step.
    pub seq: StepSeq,
    /// What it needs.
    pub spec: HumanTask,
}

/// A change the state machines refuse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// The onboarding cannot make this move.
    #[error(transparent)]
    Onboarding(#[from] InvalidTransition),
    /// The step cannot make this move.
    #[error(transparent)]
    Step(#[from] InvalidStepTransition),
    /// The task cannot make this move.
    #[error(transparent)]
    Task(#[from] task_machine::InvalidTaskTransition),
    /// The request does not fit the onboarding (e.g. no dead step to retry).
    #[error("{0}")]
    NotApplicable(String),
}

/// Builds [`Changes`] while tracking the onboarding's status through several hops.
struct Planner<'a> {
    ob: &'a OnboardingState,
    now: Millis,
    actor: &'a str,
    status: OnboardingStatus,
    changes: Changes,
    row: OnboardingChange,
}

impl<'a> Planner<'a> {
    fn new(ob: &'a OnboardingState, stage: Option<StageName>, now: Millis, actor: &'a str) -> Self {
        Self {
            ob,
            now,
            actor,
            status: ob.status,
            changes: Changes::default(),
            row: OnboardingChange {
                from: ob.status,
                to: ob.status,
                current_seq: ob.current_seq,
                stage,
                succeeded_steps: ob.succeeded_steps,
                error: ErrorUpdate::Keep,
                retry_available: ob.status == OnboardingStatus::Failed,
                finished_at: None,
            },
        }
    }

    fn onboarding(&mut self, event: OnboardingEvent, detail: Value) -> Result<(), PlanError> {
        let to = onboarding::transition(self.status, event)?;
        self.audit(
            format!("onboarding.{}", to.as_str()),
            Some(self.status.as_str()),
            Some(to.as_str()),
            detail,
        );
        self.status = to;
        self.row.to = to;
        if to != OnboardingStatus::Failed {
            self.row.error = ErrorUpdate::Clear;
            self.row.retry_available = false;
        }
        if to.is_terminal() {
            self.row.stage = None;
            self.row.finished_at = Some(self.now);
        }
        Ok(())
    }

    fn step(
        &mut self,
        s: &StepState,
        event: StepEvent,
        fill: impl FnOnce(&mut StepChange),
        mut detail: Value,
    ) -> Result<StepStatus, PlanError> {
        let to = step::transition(s.status, event)?;
        let mut change = StepChange {
            seq: s.seq,
            from: s.status,
            to,
            available_at: None,
            enqueued: false,
            output: None,
            error: ErrorUpdate::Keep,
            attempts: AttemptsUpdate::Keep,
            finished_at: None,
            claimed: event == StepEvent::Claim,
        };
        fill(&mut change);
        if let Value::Object(map) = &mut detail {
            map.insert("step_seq".into(), json!(s.seq.0));
            map.insert("task".into(), json!(s.task.as_str()));
        }
        self.audit(
            format!("step.{}", to.as_str()),
            Some(s.status.as_str()),
            Some(to.as_str()),
            detail,
        );
        self.changes.steps.push(change);
        Ok(to)
    }

    fn audit(&mut self, action: String, from: Option<&str>, to: Option<&str>, detail: Value) {
        self.changes.audit.push(AuditRecord {
            at: self.now,
            actor: self.actor.to_owned(),
            action,
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            detail,
        });
    }

    fn event(&mut self, kind: EventType, data: Value) {
        let mut data = data;
        if let Value::Object(map) = &mut data {
            map.insert("onboarding_id".into(), json!(self.ob.id.as_str()));
        }
        self.changes.events.push(NewEvent {
            id: EventId::new(),
            kind,
            onboarding_id: self.ob.id.clone(),
            at: self.now,
            data,
        });
    }

    fn enqueue(&mut self, s: &StepState, event: StepEvent) -> Result<(), PlanError> {
        let now = self.now;
        let reset = event == StepEvent::Replay;
        self.step(
            s,
            event,
            |c| {
                c.available_at = Some(now);
                c.enqueued = true;
                if reset {
                    c.attempts = AttemptsUpdate::Reset;
                    c.error = ErrorUpdate::Clear;
                    c.finished_at = None;
                }
            },
            json!({}),
        )?;
        self.changes.wake.push(s.stage.clone());
        Ok(())
    }

    /// Moves the onboarding to `cancelling`, closes what has not finished, and starts
    /// undoing the compensable steps that ran, latest first; with none to undo it ends
    /// `cancelled` at once. `steps` are every step, as they are before this plan.
    fn begin_cancel(&mut self, steps: &[StepState], reason: &str) -> Result<(), PlanError> {
        self.onboarding(OnboardingEvent::Cancel, json!({"reason": reason}))?;
        let undo_first = steps
            .iter()
            .filter(|s| {
                s.compensable && matches!(s.status, StepStatus::Succeeded | StepStatus::Running)
            })
            .max_by_key(|s| s.seq);
        let now = self.now;
        for s in steps {
            let event = match s.status {
                StepStatus::Running if s.compensable => continue,
                StepStatus::Pending
                | StepStatus::Queued
                | StepStatus::Retrying
                | StepStatus::Waiting => StepEvent::Skip,
                StepStatus::Running | StepStatus::Dead => StepEvent::Cancel,
                _ => continue,
            };
            self.step(
                s,
                event,
                |c| c.finished_at = Some(now),
                json!({"reason": reason}),
            )?;
            if s.status == StepStatus::Waiting {
                self.close_task(s.seq, TaskEvent::Cancel)?;
            }
        }
        self.changes.dead_letters.push(DeadLetterChange::Resolve {
            resolution: "cancelled",
        });
        match undo_first {
            Some(s) => self.start_compensation(s),
            None => self.end_cancel(Some(reason)),
        }
    }

    /// Queues the compensation of `s`. A step cancelled mid-attempt is undone only once that
    /// attempt's lease has run out, so its request cannot overtake the one it undoes.
    fn start_compensation(&mut self, s: &StepState) -> Result<(), PlanError> {
        let at = match (s.status, s.lease_expires_at) {
            (StepStatus::Running, Some(lease_end)) => lease_end.max(self.now),
            _ => self.now,
        };
        self.step(
            s,
            StepEvent::Compensate,
            |c| {
                c.available_at = Some(at);
                c.enqueued = true;
                c.attempts = AttemptsUpdate::Reset;
                c.error = ErrorUpdate::Clear;
            },
            json!({"available_at": at.to_rfc3339()}),
        )?;
        self.row.current_seq = s.seq;
        self.row.stage = Some(s.stage.clone());
        self.changes.wake.push(s.stage.clone());
        Ok(())
    }

    /// Requeues `s` for another attempt (or compensation attempt) at `at`.
    fn schedule_retry(
        &mut self,
        s: &StepState,
        error: String,
        at: Millis,
        mut detail: Value,
    ) -> Result<(), PlanError> {
        detail["attempt"] = json!(s.attempts);
        detail["error"] = json!(error);
        detail["retry_at"] = json!(at.to_rfc3339());
        self.step(
            s,
            StepEvent::ScheduleRetry,
            |c| {
                c.available_at = Some(at);
                c.error = ErrorUpdate::Set(error);
            },
            detail,
        )?;
        Ok(())
    }

    /// Gives `s` back to its queue until `until` without charging the attempt.
    fn defer(
        &mut self,
        s: &StepState,
        reason: String,
        until: Millis,
        mut detail: Value,
    ) -> Result<(), PlanError> {
        detail["reason"] = json!(reason);
        detail["until"] = json!(until.to_rfc3339());
        self.step(
            s,
            StepEvent::Defer,
            |c| {
                c.available_at = Some(until);
                c.attempts = AttemptsUpdate::Refund;
            },
            detail,
        )?;
        Ok(())
    }

    /// Goes on undoing: queues the compensation of the latest compensable step before
    /// `before` that succeeded, or ends the cancel when there is none.
    fn undo_next(&mut self, steps: &[StepState], before: StepSeq) -> Result<(), PlanError> {
        let next = steps
            .iter()
            .filter(|s| s.seq < before && s.compensable && s.status == StepStatus::Succeeded)
            .max_by_key(|s| s.seq);
        match next {
            Some(s) => self.start_compensation(s),
            None => self.end_cancel(None),
        }
    }

    /// Ends the cancel (`reason` is known when nothing had to be undone).
    fn end_cancel(&mut self, reason: Option<&str>) -> Result<(), PlanError> {
        let detail = match reason {
            Some(reason) => json!({"reason": reason}),
            None => json!({"after": "compensations"}),
        };
        self.onboarding(OnboardingEvent::FinishCancel, detail.clone())?;
        let mut data = json!({"status": "cancelled"});
        data.as_object_mut()
            .expect("an object")
            .extend(detail.as_object().cloned().unwrap_or_default());
        self.event(EventType::OnboardingCancelled, data);
        Ok(())
    }

    /// Ends the open human task of step `seq`, if it has one (the store closes only open
    /// tasks; both open statuses take these events to the same status).
    fn close_task(&mut self, seq: StepSeq, event: TaskEvent) -> Result<(), PlanError> {
        let to = task_machine::transition(TaskStatus::Unassigned, event)?;
        self.changes.close_tasks.push((seq, to));
        Ok(())
    }

    fn finish(mut self) -> Changes {
        self.changes.onboarding = Some(self.row);
        self.changes
    }
}

fn step_data(s: &StepState) -> Value {
    json!({"step_seq": s.seq.0, "task": s.task.as_str(), "stage": s.stage.as_str()})
}

/// A new onboarding (inserted as `pending` with `pending` steps): its first step enters its
/// stage's queue.
pub fn created(
    ob: &OnboardingState,
    first: &StepState,
    now: Millis,
    actor: &str,
    detail: Value,
) -> Result<Changes, PlanError> {
    let mut p = Planner::new(ob, Some(first.stage.clone()), now, actor);
    p.audit(
        "onboarding.created".into(),
        None,
        Some(OnboardingStatus::Pending.as_str()),
        detail,
    );
    p.enqueue(first, StepEvent::Enqueue)?;
    p.event(
        EventType::OnboardingCreated,
        json!({"status": "pending", "total_steps": ob.total_steps}),
    );
    Ok(p.finish())
}

/// A worker claimed `step` (the store sets the lease and counts the attempt).
pub fn claimed(
    ob: &OnboardingState,
    step: &StepState,
    now: Millis,
    actor: &str,
) -> Result<Changes, PlanError> {
    let mut p = Planner::new(ob, Some(step.stage.clone()), now, actor);
    if ob.status == OnboardingStatus::Pending {
        p.onboarding(OnboardingEvent::Start, json!({}))?;
    }
    p.step(
        step,
        StepEvent::Claim,
        |_| {},
        json!({"attempt": step.attempts + 1}),
    )?;
    Ok(p.finish())
}

/// The decision on an attempt (or on a waiting step) is carried out: success moves the
/// onboarding to its next step or completes it; a dead letter fails it (and with
/// `on_failure = "compensate"` cancels it). On a compensating step the decision is about
/// its compensation (see [`compensation_resolved`]).
///
/// `others` are the other steps the store read: at least the next one, when there is one;
/// every step when [`OnboardingState::needs_every_step`].
pub fn resolved(
    ob: &OnboardingState,
    step: &StepState,
    others: &[StepState],
    resolution: Resolution,
    now: Millis,
    actor: &str,
) -> Result<Changes, PlanError> {
    if step.status == StepStatus::Compensating {
        return compensation_resolved(ob, step, others, resolution, now, actor);
    }
    let next = others.iter().find(|s| s.seq.0 == step.seq.0 + 1);
    let mut p = Planner::new(ob, Some(step.stage.clone()), now, actor);
    let attempt = json!({"attempt": step.attempts});
    match resolution {
        Resolution::Succeed(output) => {
            p.step(
                step,
                StepEvent::Succeed,
                |c| {
                    c.output = Some(output);
                    c.error = ErrorUpdate::Clear;
                    c.finished_at = Some(now);
                },
                attempt,
            )?;
            if step.status == StepStatus::Waiting {
                p.close_task(step.seq, TaskEvent::Complete)?;
            }
            p.row.succeeded_steps = ob.succeeded_steps + 1;
            p.event(EventType::StepSucceeded, step_data(step));
            if p.status == OnboardingStatus::Waiting {
                p.onboarding(OnboardingEvent::Resume, json!({}))?;
            }
            if p.status == OnboardingStatus::Pending {
                p.onboarding(OnboardingEvent::Start, json!({}))?;
            }
            match next {
                Some(next) => {
                    p.row.current_seq = next.seq;
                    p.row.stage = Some(next.stage.clone());
                    p.enqueue(next, StepEvent::Enqueue)?;
                }
                None => {
                    p.onboarding(OnboardingEvent::Complete, json!({}))?;
                    p.event(
                        EventType::OnboardingCompleted,
                        json!({"status": "completed"}),
                    );
                }
            }
        }
        Resolution::ScheduleRetry { error, at } => {
            p.schedule_retry(step, error, at, json!({}))?;
        }
        Resolution::Defer { reason, until } => {
            p.defer(step, reason, until, json!({}))?;
        }
        Resolution::Wait(wait) => {
            let mut detail = attempt;
            if let Some(until) = wait.until {
                detail["until"] = json!(until.to_rfc3339());
            }
            if let Some(signal) = &wait.signal {
                detail["signal"] = json!(signal);
            }
            p.step(
                step,
                StepEvent::Wait,
                |c| c.available_at = wait.until,
                detail,
            )?;
            if let Some(spec) = wait.task {
                let id = TaskId::new();
                p.audit(
                    "task.created".into(),
                    None,
                    Some(TaskStatus::Unassigned.as_str()),
                    json!({"task_id": id.as_str(), "step_seq": step.seq.0, "skill": spec.skill,
                           "due_by": spec.due_by.map(Millis::to_rfc3339)}),
                );
                p.changes.new_tasks.push(NewTask {
                    id,
                    seq: step.seq,
                    spec,
                });
            }
            if p.status == OnboardingStatus::Pending {
                p.onboarding(OnboardingEvent::Start, json!({}))?;
            }
            p.onboarding(OnboardingEvent::Wait, json!({"step_seq": step.seq.0}))?;
        }
        Resolution::DeadLetter(error) => {
            let detail = json!({"attempt": step.attempts, "error": error});
            p.step(
                step,
                StepEvent::DeadLetter,
                |c| {
                    c.error = ErrorUpdate::Set(error.clone());
                    c.finished_at = Some(now);
                },
                detail,
            )?;
            if step.status == StepStatus::Waiting {
                p.close_task(step.seq, TaskEvent::Cancel)?;
            }
            p.changes.dead_letters.push(DeadLetterChange::Add {
                seq: step.seq,
                error: error.clone(),
            });
            let mut data = step_data(step);
            data["error"] = json!(error);
            data["attempts"] = json!(step.attempts);
            p.event(EventType::StepDeadLettered, data);
            if p.status == OnboardingStatus::Pending {
                p.onboarding(OnboardingEvent::Start, json!({}))?;
            }
            let message = format!("step {} ({}) failed: {error}", step.seq, step.task);
            p.onboarding(OnboardingEvent::Fail, json!({"error": message}))?;
            p.row.error = ErrorUpdate::Set(message.clone());
            p.row.retry_available = true;
            p.event(
                EventType::OnboardingFailed,
                json!({"status": "failed", "error": message}),
            );
            if ob.on_failure == FailurePolicy::Compensate {
                // The dead step stays `dead` (it shows what failed); one change per step and
                // plan, so a store can write them all in one statement.
                let rest: Vec<StepState> = others
                    .iter()
                    .filter(|s| s.seq != step.seq)
                    .cloned()
                    .collect();
                p.begin_cancel(&rest, &format!("on_failure = \"compensate\": {message}"))?;
            }
        }
    }
    Ok(p.finish())
}

/// The decision on a compensation attempt: success marks the step `compensated` and queues
/// the compensation of the previous compensable step that succeeded, or ends the cancel; a
/// retry or deferral keeps it `compensating`; a dead letter parks it for an operator, the
/// onboarding staying `cancelling` until the dead letter is replayed.
fn compensation_resolved(
    ob: &OnboardingState,
    step: &StepState,
    others: &[StepState],
    resolution: Resolution,
    now: Millis,
    actor: &str,
) -> Result<Changes, PlanError> {
    let mut p = Planner::new(ob, Some(step.stage.clone()), now, actor);
    let attempt = json!({"attempt": step.attempts, "compensation": true});
    match resolution {
        Resolution::Succeed(_) => {
            p.step(
                step,
                StepEvent::FinishCompensation,
                |c| {
                    c.error = ErrorUpdate::Clear;
                    c.finished_at = Some(now);
                },
                attempt,
            )?;
            p.row.succeeded_steps = ob.succeeded_steps.saturating_sub(1);
            p.undo_next(others, step.seq)?;
        }
        Resolution::ScheduleRetry { error, at } => {
            p.schedule_retry(step, error, at, json!({"compensation": true}))?;
        }
        Resolution::Defer { reason, until } => {
            p.defer(step, reason, until, json!({"compensation": true}))?;
        }
        Resolution::DeadLetter(error) => {
            let error = format!("compensation failed: {error}");
            p.step(
                step,
                StepEvent::DeadLetter,
                |c| {
                    c.error = ErrorUpdate::Set(error.clone());
                    c.finished_at = Some(now);
                },
                json!({"attempt": step.attempts, "error": error}),
            )?;
            p.changes.dead_letters.push(DeadLetterChange::Add {
                seq: step.seq,
                error: error.clone(),
            });
            let mut data = step_data(step);
            data["error"] = json!(error);
            data["attempts"] = json!(step.attempts);
            data["compensation"] = json!(true);
            p.event(EventType::StepDeadLettered, data);
            p.row.error = ErrorUpdate::Set(format!("step {} ({}): {error}", step.seq, step.task));
            p.row.retry_available = true;
        }
        Resolution::Wait(_) => {
            return Err(PlanError::NotApplicable(format!(
                "the compensation of step {} cannot wait",
                step.seq
            )));
        }
    }
    Ok(p.finish())
}

/// A failed onboarding is retried (or its dead letter replayed): the dead step re-enters its
/// queue with a fresh attempt budget.
pub fn retried(
    ob: &OnboardingState,
    dead: &StepState,
    now: Millis,
    actor: &str,
    how: &str,
) -> Result<Changes, PlanError> {
    if dead.status != StepStatus::Dead {
        return Err(PlanError::NotApplicable(format!(
            "step {} is {}, not dead",
            dead.seq, dead.status
        )));
    }
    let mut p = Planner::new(ob, Some(dead.stage.clone()), now, actor);
    if ob.status == OnboardingStatus::Cancelling {
        // A dead compensation: undo it again; the cancel goes on from there.
        p.audit(
            "compensation.replayed".into(),
            None,
            None,
            json!({"via": how, "step_seq": dead.seq.0}),
        );
        p.step(
            dead,
            StepEvent::ReplayCompensation,
            |c| {
                c.available_at = Some(now);
                c.enqueued = true;
                c.attempts = AttemptsUpdate::Reset;
                c.error = ErrorUpdate::Clear;
                c.finished_at = None;
            },
            json!({}),
        )?;
        p.changes.wake.push(dead.stage.clone());
        p.row.error = ErrorUpdate::Clear;
        p.row.retry_available = false;
    } else {
        p.onboarding(
            OnboardingEvent::Retry,
            json!({"via": how, "step_seq": dead.seq.0}),
        )?;
        p.enqueue(dead, StepEvent::Replay)?;
    }
    p.changes.dead_letters.push(DeadLetterChange::Resolve {
        resolution: "replayed",
    });
    Ok(p.finish())
}

/// A dead letter is discarded: the onboarding stays failed and can no longer be retried.
/// Discarding a dead compensation gives up undoing that step: the cancel goes on with the
/// compensation before it (`steps` are all the onboarding's steps).
pub fn discarded(
    ob: &OnboardingState,
    dead: &StepState,
    steps: &[StepState],
    now: Millis,
    actor: &str,
) -> Result<Changes, PlanError> {
    let mut p = Planner::new(ob, Some(dead.stage.clone()), now, actor);
    p.audit(
        "dead_letter.discarded".into(),
        None,
        None,
        json!({"step_seq": dead.seq.0, "task": dead.task.as_str()}),
    );
    p.row.retry_available = false;
    p.changes.dead_letters.push(DeadLetterChange::Resolve {
        resolution: "discarded",
    });
    if ob.status == OnboardingStatus::Cancelling {
        p.row.error = ErrorUpdate::Clear;
        p.undo_next(steps, dead.seq)?;
    }
    Ok(p.finish())
}

/// An onboarding is cancelled: steps not yet done are skipped (or cancelled when mid-attempt
/// or dead), open dead letters are closed, and the compensable steps that ran are undone in
/// reverse order, one queued compensation at a time; it ends `cancelled` when none is left
/// (at once when there is nothing to undo). `steps` are all its steps.
pub fn cancelled(
    ob: &OnboardingState,
    steps: &[StepState],
    reason: &str,
    now: Millis,
    actor: &str,
) -> Result<Changes, PlanError> {
    let mut p = Planner::new(ob, None, now, actor);
    p.begin_cancel(steps, reason)?;
    Ok(p.finish())
}

/// Audit entries and events about an onboarding that change no status (task assigned or
/// overdue, signal received): written on its chain like any transition.
fn note<'a>(ob: &'a OnboardingState, now: Millis, actor: &'a str) -> Planner<'a> {
    Planner::new(ob, None, now, actor)
}

/// The human task of step `seq` was given to `csr` for the slot starting `scheduled_for`.
#[allow(clippy::too_many_arguments)]
pub fn task_assigned(
    ob: &OnboardingState,
    seq: StepSeq,
    task: &TaskId,
    from: TaskStatus,
    csr: &CsrId,
    scheduled_for: Millis,
    now: Millis,
    actor: &str,
) -> Result<Changes, PlanError> {
    let to = task_machine::transition(from, TaskEvent::Assign)?;
    let mut p = note(ob, now, actor);
    let data = json!({"task_id": task.as_str(), "step_seq": seq.0, "assignee": csr.as_str(),
                      "scheduled_for": scheduled_for.to_rfc3339()});
    p.audit(
        "task.assigned".into(),
        Some(from.as_str()),
        Some(to.as_str()),
        data.clone(),
    );
    p.event(EventType::TaskAssigned, data);
    Ok(p.changes)
}

/// The human task of step `seq` is done: announced before its step succeeds (see
/// [`resolved`]).
pub fn task_completed(
    ob: &OnboardingState,
    seq: StepSeq,
    task: &TaskId,
    from: TaskStatus,
    detail: Value,
    now: Millis,
    actor: &str,
) -> Result<Changes, PlanError> {
    let to = task_machine::transition(from, TaskEvent::Complete)?;
    let mut p = note(ob, now, actor);
    let mut data = json!({"task_id": task.as_str(), "step_seq": seq.0});
    if let (Value::Object(d), Value::Object(extra)) = (&mut data, detail) {
        d.extend(extra);
    }
    p.audit(
        "task.completed".into(),
        Some(from.as_str()),
        Some(to.as_str()),
        data.clone(),
    );
    p.event(EventType::TaskCompleted, data);
    Ok(p.changes)
}

/// The human task of step `seq` passed its `due_by`.
pub fn task_overdue(
    ob: &OnboardingState,
    seq: StepSeq,
    task: &TaskId,
    due_by: Millis,
    now: Millis,
) -> Changes {
    let mut p = note(ob, now, "scheduler");
    let data = json!({"task_id": task.as_str(), "step_seq": seq.0, "due_by": due_by.to_rfc3339()});
    p.audit("task.overdue".into(), None, None, data.clone());
    p.event(EventType::TaskOverdue, data);
    p.changes
}

/// A signal arrived for the onboarding (kept until a step waiting for it takes it).
pub fn signal_received(
    ob: &OnboardingState,
    name: &str,
    sender_id: &str,
    now: Millis,
    actor: &str,
) -> Result<Changes, PlanError> {
    if ob.status.is_terminal() {
        return Err(PlanError::Onboarding(InvalidTransition {
            from: ob.status,
            event: "receive a signal",
        }));
    }
    let mut p = note(ob, now, actor);
    p.audit(
        "signal.received".into(),
        None,
        None,
        json!({"signal": name, "id": sender_id}),
    );
    Ok(p.changes)
}

/// Adds `more` after `changes` (audit entries and events keep their order).
pub fn merge(mut changes: Changes, more: Changes) -> Changes {
    if more.onboarding.is_some() {
        changes.onboarding = more.onboarding;
    }
    changes.steps.extend(more.steps);
    changes.dead_letters.extend(more.dead_letters);
    changes.audit.extend(more.audit);
    changes.events.extend(more.events);
    changes.wake.extend(more.wake);
    changes.new_tasks.extend(more.new_tasks);
    changes.close_tasks.extend(more.close_tasks);
    changes
}

/// `round(100 * succeeded / total)` (SPEC §3).
pub fn progress(succeeded: u32, total: u32) -> u32 {
    if total == 0 {
        return 0;
    }
    (f64::from(succeeded) * 100.0 / f64::from(total)).round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ob(status: OnboardingStatus, current: u32, total: u32, succeeded: u32) -> OnboardingState {
        OnboardingState {
            id: OnboardingId::new(),
            status,
            current_seq: StepSeq(current),
            total_steps: total,
            succeeded_steps: succeeded,
            on_failure: FailurePolicy::Hold,
        }
    }

    fn st(seq: u32, status: StepStatus, attempts: u32) -> StepState {
        StepState {
            seq: StepSeq(seq),
            task: format!("task{seq}").parse().unwrap(),
            stage: format!("stage{seq}").parse().unwrap(),
            status,
            attempts,
            compensable: false,
            lease_expires_at: None,
        }
    }

    #[test]
    fn creating_enqueues_the_first_step_and_announces_it() {
        let o = ob(OnboardingStatus::Pending, 1, 2, 0);
        let c = created(
            &o,
            &st(1, StepStatus::Pending, 0),
            Millis(5),
            "system",
            json!({}),
        )
        .unwrap();
        assert_eq!(c.steps[0].to, StepStatus::Queued);
        assert_eq!(c.steps[0].available_at, Some(Millis(5)));
        assert_eq!(c.wake, vec!["stage1".parse().unwrap()]);
        assert_eq!(c.events[0].kind, EventType::OnboardingCreated);
    }

    #[test]
    fn success_of_a_middle_step_enqueues_the_next_one() {
        let o = ob(OnboardingStatus::Running, 1, 2, 0);
        let c = resolved(
            &o,
            &st(1, StepStatus::Running, 1),
            &[st(2, StepStatus::Pending, 0)],
            Resolution::Succeed(json!({"ok": true})),
            Millis(9),
            "worker",
        )
        .unwrap();
        let row = c.onboarding.unwrap();
        assert_eq!(
            (row.to, row.current_seq, row.succeeded_steps),
            (OnboardingStatus::Running, StepSeq(2), 1)
        );
        assert_eq!(c.steps[1].to, StepStatus::Queued);
        assert_eq!(c.wake, vec!["stage2".parse().unwrap()]);
    }

    #[test]
    fn success_of_the_last_step_completes_the_onboarding() {
        let o = ob(OnboardingStatus::Running, 2, 2, 1);
        let c = resolved(
            &o,
            &st(2, StepStatus::Running, 1),
            &[],
            Resolution::Succeed(json!(null)),
            Millis(9),
            "worker",
        )
        .unwrap();
        let row = c.onboarding.unwrap();
        assert_eq!(row.to, OnboardingStatus::Completed);
        assert_eq!(row.stage, None);
        assert_eq!(progress(row.succeeded_steps, 2), 100);
        let kinds: Vec<_> = c.events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![EventType::StepSucceeded, EventType::OnboardingCompleted]
        );
    }

    #[test]
    fn a_dead_letter_fails_the_onboarding_with_retry_available() {
        let o = ob(OnboardingStatus::Running, 1, 3, 0);
        let c = resolved(
            &o,
            &st(1, StepStatus::Running, 5),
            &[],
            Resolution::DeadLetter("HTTP 400".into()),
            Millis(1),
            "worker",
        )
        .unwrap();
        let row = c.onboarding.unwrap();
        assert_eq!(row.to, OnboardingStatus::Failed);
        assert!(row.retry_available);
        assert!(matches!(row.error, ErrorUpdate::Set(e) if e.contains("HTTP 400")));
        assert!(matches!(c.dead_letters[..], [DeadLetterChange::Add { .. }]));
    }

    #[test]
    fn retry_requeues_the_dead_step_with_a_fresh_budget() {
        let o = ob(OnboardingStatus::Failed, 1, 3, 0);
        let c = retried(
            &o,
            &st(1, StepStatus::Dead, 5),
            Millis(1),
            "token:admin",
            "retry",
        )
        .unwrap();
        assert_eq!(c.onboarding.unwrap().to, OnboardingStatus::Running);
        assert_eq!(c.steps[0].attempts, AttemptsUpdate::Reset);
        assert!(
            retried(
                &ob(OnboardingStatus::Completed, 1, 1, 1),
                &st(1, StepStatus::Dead, 1),
                Millis(1),
                "a",
                "retry"
            )
            .is_err()
        );
    }

    #[test]
    fn cancel_skips_what_has_not_run_and_ends_cancelled() {
        let o = ob(OnboardingStatus::Running, 2, 3, 1);
        let steps = [
            st(1, StepStatus::Succeeded, 1),
            st(2, StepStatus::Running, 1),
            st(3, StepStatus::Pending, 0),
        ];
        let c = cancelled(&o, &steps, "customer left", Millis(1), "token:admin").unwrap();
        assert_eq!(c.onboarding.unwrap().to, OnboardingStatus::Cancelled);
        let tos: Vec<_> = c.steps.iter().map(|s| s.to).collect();
        assert_eq!(tos, vec![StepStatus::Cancelled, StepStatus::Skipped]);
        let err = cancelled(
            &ob(OnboardingStatus::Cancelled, 1, 1, 0),
            &[],
            "again",
            Millis(1),
            "a",
        )
        .unwrap_err();
        assert!(matches!(err, PlanError::Onboarding(_)));
    }

    #[test]
    fn deferral_refunds_the_attempt() {
        let o = ob(OnboardingStatus::Running, 1, 1, 0);
        let c = resolved(
            &o,
            &st(1, StepStatus::Running, 3),
            &[],
            Resolution::Defer {
                reason: "breaker open".into(),
                until: Millis(50),
            },
            Millis(1),
            "worker",
        )
        .unwrap();
        assert_eq!(c.steps[0].attempts, AttemptsUpdate::Refund);
        assert_eq!(c.steps[0].to, StepStatus::Queued);
    }

    fn undoable(seq: u32, status: StepStatus) -> StepState {
        StepState {
            compensable: true,
            ..st(seq, status, 1)
        }
    }

    fn statuses(c: &Changes) -> Vec<(u32, StepStatus)> {
        c.steps.iter().map(|s| (s.seq.0, s.to)).collect()
    }

    #[test]
    fn cancel_after_three_of_five_undoes_the_latest_first() {
        let o = ob(OnboardingStatus::Running, 4, 5, 3);
        let steps = [
            undoable(1, StepStatus::Succeeded),
            undoable(2, StepStatus::Succeeded),
            undoable(3, StepStatus::Succeeded),
            undoable(4, StepStatus::Queued),
            undoable(5, StepStatus::Pending),
        ];
        let c = cancelled(&o, &steps, "customer left", Millis(7), "token:admin").unwrap();
        let row = c.onboarding.clone().unwrap();
        assert_eq!(row.to, OnboardingStatus::Cancelling);
        assert_eq!(
            (row.current_seq, row.stage),
            (StepSeq(3), Some(steps[2].stage.clone()))
        );
        assert_eq!(
            statuses(&c),
            vec![
                (4, StepStatus::Skipped),
                (5, StepStatus::Skipped),
                (3, StepStatus::Compensating)
            ]
        );
        let undo = &c.steps[2];
        assert_eq!(
            (undo.available_at, undo.attempts),
            (Some(Millis(7)), AttemptsUpdate::Reset)
        );
        assert!(
            c.events.is_empty(),
            "cancelled is announced when the undoing is done"
        );
    }

    #[test]
    fn each_finished_compensation_queues_the_one_before_and_the_last_ends_the_cancel() {
        let o = ob(OnboardingStatus::Cancelling, 3, 5, 3);
        let steps = [
            undoable(1, StepStatus::Succeeded),
            st(2, StepStatus::Succeeded, 1),
            undoable(3, StepStatus::Compensating),
        ];
        let c = resolved(
            &o,
            &steps[2],
            &steps,
            Resolution::Succeed(json!({})),
            Millis(9),
            "worker",
        )
        .unwrap();
        assert_eq!(
            statuses(&c),
            vec![(3, StepStatus::Compensated), (1, StepStatus::Compensating)],
            "step 2 has nothing to undo"
        );
        assert_eq!(c.onboarding.unwrap().current_seq, StepSeq(1));

        let steps = [
            undoable(1, StepStatus::Compensating),
            st(2, StepStatus::Succeeded, 1),
        ];
        let c = resolved(
            &o,
            &steps[0],
            &steps,
            Resolution::Succeed(json!({})),
            Millis(9),
            "worker",
        )
        .unwrap();
        let row = c.onboarding.unwrap();
        assert_eq!((row.to, row.stage), (OnboardingStatus::Cancelled, None));
        assert_eq!(c.events[0].kind, EventType::OnboardingCancelled);
    }

    #[test]
    fn a_dead_compensation_keeps_the_onboarding_cancelling_until_replayed() {
        let o = ob(OnboardingStatus::Cancelling, 2, 3, 2);
        let undo = undoable(2, StepStatus::Compensating);
        let c = resolved(
            &o,
            &undo,
            &[],
            Resolution::DeadLetter("HTTP 500".into()),
            Millis(3),
            "worker",
        )
        .unwrap();
        let row = c.onboarding.clone().unwrap();
        assert_eq!(row.to, OnboardingStatus::Cancelling);
        assert!(row.retry_available);
        assert_eq!(statuses(&c), vec![(2, StepStatus::Dead)]);
        assert!(
            matches!(&c.dead_letters[..], [DeadLetterChange::Add { error, .. }] if error.contains("compensation failed"))
        );

        let c = retried(
            &o,
            &undoable(2, StepStatus::Dead),
            Millis(4),
            "token:ops",
            "replay",
        )
        .unwrap();
        assert_eq!(
            c.onboarding.clone().unwrap().to,
            OnboardingStatus::Cancelling
        );
        assert_eq!(statuses(&c), vec![(2, StepStatus::Compensating)]);
    }

    #[test]
    fn a_retried_compensation_stays_compensating() {
        let o = ob(OnboardingStatus::Cancelling, 2, 3, 2);
        let undo = undoable(2, StepStatus::Compensating);
        let retry = Resolution::ScheduleRetry {
            error: "HTTP 503".into(),
            at: Millis(50),
        };
        let c = resolved(&o, &undo, &[], retry, Millis(3), "worker").unwrap();
        assert_eq!(statuses(&c), vec![(2, StepStatus::Compensating)]);
        assert_eq!(c.steps[0].available_at, Some(Millis(50)));
    }

    #[test]
    fn on_failure_compensate_cancels_when_a_step_dead_letters() {
        let mut o = ob(OnboardingStatus::Running, 3, 4, 2);
        o.on_failure = FailurePolicy::Compensate;
        let steps = [
            undoable(1, StepStatus::Succeeded),
            undoable(2, StepStatus::Succeeded),
            undoable(3, StepStatus::Running),
            st(4, StepStatus::Pending, 0),
        ];
        let c = resolved(
            &o,
            &steps[2],
            &steps,
            Resolution::DeadLetter("HTTP 400".into()),
            Millis(5),
            "worker",
        )
        .unwrap();
        assert_eq!(
            c.onboarding.clone().unwrap().to,
            OnboardingStatus::Cancelling
        );
        assert_eq!(
            statuses(&c),
            vec![
                (3, StepStatus::Dead),
                (4, StepStatus::Skipped),
                (2, StepStatus::Compensating)
            ]
        );
        assert!(matches!(
            &c.dead_letters[..],
            [
                DeadLetterChange::Add { .. },
                DeadLetterChange::Resolve {
                    resolution: "cancelled"
                }
            ]
        ));
        let kinds: Vec<_> = c.events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![EventType::StepDeadLettered, EventType::OnboardingFailed]
        );
    }

    #[test]
    fn a_step_cancelled_mid_attempt_is_undone_once_its_lease_ran_out() {
        let o = ob(OnboardingStatus::Running, 2, 2, 1);
        let running = StepState {
            lease_expires_at: Some(Millis(60_000)),
            ..undoable(2, StepStatus::Running)
        };
        let steps = [undoable(1, StepStatus::Succeeded), running];
        let c = cancelled(&o, &steps, "stop", Millis(10), "token:admin").unwrap();
        assert_eq!(statuses(&c), vec![(2, StepStatus::Compensating)]);
        assert_eq!(c.steps[0].available_at, Some(Millis(60_000)));
    }

    #[test]
    fn discarding_a_dead_compensation_goes_on_with_the_one_before() {
        let o = ob(OnboardingStatus::Cancelling, 2, 2, 2);
        let steps = [
            undoable(1, StepStatus::Succeeded),
            undoable(2, StepStatus::Dead),
        ];
        let c = discarded(&o, &steps[1], &steps, Millis(3), "token:ops").unwrap();
        assert_eq!(statuses(&c), vec![(1, StepStatus::Compensating)]);
        let steps = [
            st(1, StepStatus::Succeeded, 1),
            undoable(2, StepStatus::Dead),
        ];
        let c = discarded(&o, &steps[1], &steps, Millis(3), "token:ops").unwrap();
        assert_eq!(c.onboarding.unwrap().to, OnboardingStatus::Cancelled);
    }

    #[test]
    fn progress_rounds() {
        assert_eq!(progress(1, 3), 33);
        assert_eq!(progress(2, 3), 67);
        assert_eq!(progress(0, 0), 0);
    }
}
