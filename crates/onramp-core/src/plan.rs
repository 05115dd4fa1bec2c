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
use crate::onboarding::{self, InvalidTransition, OnboardingEvent, OnboardingStatus};
use crate::outcome::Resolution;
use crate::step::{self, InvalidStepTransition, StepEvent, StepStatus};
use crate::time::Millis;
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
    /// The dead-letter queue.
    pub dead_letter: Option<DeadLetterChange>,
    /// Audit entries, in order.
    pub audit: Vec<AuditRecord>,
    /// Outbox events, in order.
    pub events: Vec<NewEvent>,
    /// Stages that got claimable work.
    pub wake: Vec<StageName>,
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
/// onboarding to its next step or completes it; a dead letter fails it.
pub fn resolved(
    ob: &OnboardingState,
    step: &StepState,
    next: Option<&StepState>,
    resolution: Resolution,
    now: Millis,
    actor: &str,
) -> Result<Changes, PlanError> {
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
            let detail =
                json!({"attempt": step.attempts, "error": error, "retry_at": at.to_rfc3339()});
            p.step(
                step,
                StepEvent::ScheduleRetry,
                |c| {
                    c.available_at = Some(at);
                    c.error = ErrorUpdate::Set(error);
                },
                detail,
            )?;
        }
        Resolution::Defer { reason, until } => {
            let detail = json!({"reason": reason, "until": until.to_rfc3339()});
            p.step(
                step,
                StepEvent::Defer,
                |c| {
                    c.available_at = Some(until);
                    c.attempts = AttemptsUpdate::Refund;
                },
                detail,
            )?;
        }
        Resolution::Wait => {
            p.step(step, StepEvent::Wait, |_| {}, attempt)?;
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
            p.changes.dead_letter = Some(DeadLetterChange::Add {
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
    p.onboarding(
        OnboardingEvent::Retry,
        json!({"via": how, "step_seq": dead.seq.0}),
    )?;
    p.enqueue(dead, StepEvent::Replay)?;
    p.changes.dead_letter = Some(DeadLetterChange::Resolve {
        resolution: "replayed",
    });
    Ok(p.finish())
}

/// A dead letter is discarded: the onboarding stays failed and can no longer be retried.
pub fn discarded(
    ob: &OnboardingState,
    dead: &StepState,
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
    p.changes.dead_letter = Some(DeadLetterChange::Resolve {
        resolution: "discarded",
    });
    Ok(p.finish())
}

/// An onboarding is cancelled: steps not yet done are skipped (or cancelled when mid-attempt
/// or dead), open dead letters are closed, and it ends `cancelled`.
pub fn cancelled(
    ob: &OnboardingState,
    steps: &[StepState],
    reason: &str,
    now: Millis,
    actor: &str,
) -> Result<Changes, PlanError> {
    let mut p = Planner::new(ob, None, now, actor);
    p.onboarding(OnboardingEvent::Cancel, json!({"reason": reason}))?;
    for s in steps {
        let event = match s.status {
            StepStatus::Pending
            | StepStatus::Queued
            | StepStatus::Retrying
            | StepStatus::Waiting => StepEvent::Skip,
            StepStatus::Running | StepStatus::Dead => StepEvent::Cancel,
            _ => continue,
        };
        p.step(
            s,
            event,
            |c| c.finished_at = Some(now),
            json!({"reason": reason}),
        )?;
    }
    p.changes.dead_letter = Some(DeadLetterChange::Resolve {
        resolution: "cancelled",
    });
    p.onboarding(OnboardingEvent::FinishCancel, json!({"reason": reason}))?;
    p.event(
        EventType::OnboardingCancelled,
        json!({"status": "cancelled", "reason": reason}),
    );
    Ok(p.finish())
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
        }
    }

    fn st(seq: u32, status: StepStatus, attempts: u32) -> StepState {
        StepState {
            seq: StepSeq(seq),
            task: format!("task{seq}").parse().unwrap(),
            stage: format!("stage{seq}").parse().unwrap(),
            status,
            attempts,
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
            Some(&st(2, StepStatus::Pending, 0)),
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
            None,
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
            None,
            Resolution::DeadLetter("HTTP 400".into()),
            Millis(1),
            "worker",
        )
        .unwrap();
        let row = c.onboarding.unwrap();
        assert_eq!(row.to, OnboardingStatus::Failed);
        assert!(row.retry_available);
        assert!(matches!(row.error, ErrorUpdate::Set(e) if e.contains("HTTP 400")));
        assert!(matches!(c.dead_letter, Some(DeadLetterChange::Add { .. })));
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
            None,
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

    #[test]
    fn progress_rounds() {
        assert_eq!(progress(1, 3), 33);
        assert_eq!(progress(2, 3), 67);
        assert_eq!(progress(0, 0), 0);
    }
}
