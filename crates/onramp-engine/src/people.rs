//! Use cases of human tasks, CSRs and signals (SPEC §7, §8).
//!
//! CSR input is validated here (time zone, working hours, skills, capacity, time off) before
//! it reaches a store; after anything that can free or add capacity (a CSR added or changed,
//! a task done or reassigned) unassigned tasks are assigned at once.

use crate::{Engine, EngineError};
use onramp_config::TaskKind;
use onramp_core::customer::FieldError;
use onramp_core::onboarding::OnboardingStatus;
use onramp_core::schedule::{WorkingHours, parse_time_zone};
use onramp_core::step::StepStatus;
use onramp_core::time::Millis;
use onramp_core::{CsrId, OnboardingId, TaskId};
use onramp_store::*;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// A time-off period as sent: RFC 3339 instants.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TimeOffInput {
    /// Start (RFC 3339).
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub from: String,
    /// End (RFC 3339), after `from`.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub to: String,
}

/// The body of `POST /v1/csrs` (every field) and `PATCH /v1/csrs/{id}` (any fields).
///
/// A POST needs `name`, `email`, `timezone`, `skills` and `working_hours`; a PATCH changes
/// only the fields it names.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "name": "Grace Hopper",
    "email": "grace@example.com",
    "skills": ["onboarding_call"],
    "timezone": "Europe/Berlin",
    "working_hours": {"mon": ["09:00-12:00", "13:00-17:00"], "tue": ["09:00-17:00"]},
    "max_active_tasks": 5,
    "active": true,
    "time_off": [{"from": "2026-12-24T00:00:00Z", "to": "2026-12-27T00:00:00Z"}],
})))]
#[serde(deny_unknown_fields)]
pub struct CsrInput {
    /// Name, 1-200 characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub name: Option<String>,
    /// E-mail.
    #[cfg_attr(feature = "openapi", schema(format = Email, max_length = 200))]
    pub email: Option<String>,
    /// Skills, at least one, each 1-100 characters.
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub skills: Option<Vec<String>>,
    /// IANA time zone, like `Europe/Berlin`.
    pub timezone: Option<String>,
    /// Working hours per weekday (`mon` ... `sun`): local ranges like `"09:00-12:00"`.
    pub working_hours: Option<BTreeMap<String, Vec<String>>>,
    /// Capacity: 1-10000 (default 5).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10000))]
    pub max_active_tasks: Option<i64>,
    /// Takes tasks.
    pub active: Option<bool>,
    /// Away periods.
    pub time_off: Option<Vec<TimeOffInput>>,
}

/// The body of `POST /v1/onboardings/{id}/signals/{name}`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "id": "contract-4711",
    "payload": {"signed_by": "Ada Lovelace"},
})))]
#[serde(deny_unknown_fields)]
pub struct SignalInput {
    /// The sender's unique id for this signal (repeats are no-ops).
    pub id: String,
    /// Anything; becomes the step's output.
    #[serde(default)]
    pub payload: Value,
}

/// Who completes or reassigns a task.
#[derive(Debug, Clone)]
pub struct TaskActor {
    /// For the audit log.
    pub actor: String,
    /// `Some` when the caller may only act on tasks assigned to this CSR (role `csr`).
    pub only_csr: Option<CsrId>,
}

fn err(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// Builds a valid spec from `input` laid over `base` (PATCH) or over nothing (POST).
pub fn csr_spec(input: CsrInput, base: Option<&CsrSpec>) -> Result<CsrSpec, EngineError> {
    let mut errors = Vec::new();
    let mut required = |value: Option<String>, prev: Option<&String>, field: &str| match value
        .or_else(|| prev.cloned())
    {
        Some(v) if !v.trim().is_empty() && v.chars().count() <= 200 => v,
        Some(_) => {
            errors.push(err(field, "must be 1 to 200 characters"));
            String::new()
        }
        None => {
            errors.push(err(field, "is required"));
            String::new()
        }
    };
    let name = required(input.name, base.map(|b| &b.name), "name");
    let email = required(input.email, base.map(|b| &b.email), "email");
    let timezone = required(input.timezone, base.map(|b| &b.timezone), "timezone");
    if !email.is_empty() && !email.contains('@') {
        errors.push(err("email", "is not an e-mail address"));
    }
    if !timezone.is_empty()
        && let Err(e) = parse_time_zone(&timezone)
    {
        errors.push(err(&e.field, e.message));
    }
    let skills = input
        .skills
        .or_else(|| base.map(|b| b.skills.clone()))
        .unwrap_or_default();
    if skills.is_empty() {
        errors.push(err("skills", "give at least one skill"));
    }
    for (i, s) in skills.iter().enumerate() {
        if s.trim().is_empty() || s.chars().count() > 100 {
            errors.push(err(&format!("skills[{i}]"), "must be 1 to 100 characters"));
        }
    }
    let working_hours = input
        .working_hours
        .or_else(|| base.map(|b| b.working_hours.clone()));
    let working_hours = match working_hours {
        None => {
            errors.push(err("working_hours", "is required"));
            BTreeMap::new()
        }
        Some(hours) => {
            if let Err(problems) = WorkingHours::parse(&hours) {
                errors.extend(problems.into_iter().map(|p| err(&p.field, p.message)));
            }
            hours
        }
    };
    let max_active_tasks = match input.max_active_tasks {
        Some(n) if (1..=10_000).contains(&n) => n as u32,
        Some(_) => {
            errors.push(err("max_active_tasks", "must be between 1 and 10000"));
            1
        }
        None => base.map_or(5, |b| b.max_active_tasks),
    };
    let active = input
        .active
        .unwrap_or_else(|| base.is_none_or(|b| b.active));
    let time_off = match input.time_off {
        None => base.map(|b| b.time_off.clone()).unwrap_or_default(),
        Some(periods) => {
            let mut out = Vec::new();
            for (i, p) in periods.iter().enumerate() {
                match (Millis::parse_rfc3339(&p.from), Millis::parse_rfc3339(&p.to)) {
                    (Some(from), Some(to)) if from < to => out.push(TimeOff { from, to }),
                    (Some(_), Some(_)) => {
                        errors.push(err(&format!("time_off[{i}]"), "`to` must be after `from`"))
                    }
                    _ => errors.push(err(
                        &format!("time_off[{i}]"),
                        "`from` and `to` must be RFC 3339 timestamps",
                    )),
                }
            }
            out
        }
    };
    if !errors.is_empty() {
        return Err(EngineError::Validation(errors));
    }
    Ok(CsrSpec {
        name,
        email,
        skills,
        timezone,
        working_hours,
        max_active_tasks,
        active,
        time_off,
    })
}

impl Engine {
    /// Adds a CSR and assigns what they can take.
    pub async fn create_csr(&self, input: CsrInput, actor: &str) -> Result<CsrRecord, EngineError> {
        let spec = csr_spec(input, None)?;
        let id = CsrId::new();
        self.store
            .create_csr(&id, &spec, self.clock.now(), actor)
            .await?;
        self.assign_tasks().await;
        Ok(self.store.get_csr(&id).await?)
    }

    /// Changes a CSR (only the given fields) and assigns what they can now take.
    pub async fn update_csr(
        &self,
        id: &CsrId,
        input: CsrInput,
        actor: &str,
    ) -> Result<CsrRecord, EngineError> {
        let current = self.store.get_csr(id).await?;
        let spec = csr_spec(input, Some(&current.spec))?;
        self.store
            .update_csr(id, &spec, self.clock.now(), actor)
            .await?;
        self.assign_tasks().await;
        Ok(self.store.get_csr(id).await?)
    }

    /// Removes a CSR; their open tasks go to others.
    pub async fn delete_csr(&self, id: &CsrId, actor: &str) -> Result<(), EngineError> {
        self.store.delete_csr(id, self.clock.now(), actor).await?;
        self.assign_tasks().await;
        Ok(())
    }

    /// Completes a task; its onboarding moves on.
    pub async fn complete_task(
        &self,
        id: &TaskId,
        by: &TaskActor,
        notes: Option<String>,
    ) -> Result<TaskRecord, EngineError> {
        if notes.as_ref().is_some_and(|n| n.chars().count() > 5000) {
            return Err(EngineError::invalid("notes", "at most 5000 characters"));
        }
        let task = self.store.get_task(id).await?;
        if let Some(csr) = &by.only_csr
            && task.assignee.as_ref() != Some(csr)
        {
            return Err(EngineError::Forbidden(format!(
                "task {id} is not assigned to you"
            )));
        }
        let done = self
            .store
            .complete_task(id, by.only_csr.as_ref(), notes, self.clock.now(), &by.actor)
            .await?;
        self.assign_tasks().await;
        Ok(done)
    }

    /// Gives a task to a CSR.
    pub async fn reassign_task(
        &self,
        id: &TaskId,
        csr: &str,
        by: &TaskActor,
    ) -> Result<TaskRecord, EngineError> {
        let csr: CsrId = csr
            .parse()
            .map_err(|e: onramp_core::InvalidId| EngineError::invalid("csr_id", e.to_string()))?;
        let task = self.store.get_task(id).await?;
        if let Some(me) = &by.only_csr
            && (task.assignee.as_ref() != Some(me) || &csr != me)
        {
            return Err(EngineError::Forbidden(format!(
                "task {id} is not assigned to you"
            )));
        }
        let task = self
            .store
            .assign_task(id, &csr, self.clock.now(), &by.actor)
            .await?;
        self.assign_tasks().await;
        Ok(task)
    }

    /// Takes a signal for an onboarding. A name none of its unfinished steps waits for is
    /// refused (400): a typo would otherwise be kept forever and the step never reached.
    pub async fn send_signal(
        &self,
        id: &OnboardingId,
        name: &str,
        input: SignalInput,
        actor: &str,
    ) -> Result<SignalReceipt, EngineError> {
        if input.id.is_empty() || input.id.chars().count() > 255 || input.id.contains('\0') {
            return Err(EngineError::invalid("id", "must be 1 to 255 characters"));
        }
        let onboarding = self.store.get_onboarding(id).await?;
        if matches!(
            onboarding.status,
            OnboardingStatus::Completed | OnboardingStatus::Cancelled
        ) {
            return Err(EngineError::InvalidTransition(format!(
                "onboarding {id} is {}; it takes no more signals",
                onboarding.status
            )));
        }
        let signal_of =
            |task: &onramp_core::TaskTypeName| match self.catalog.task(task).map(|t| &t.kind) {
                Some(TaskKind::Signal { signal, .. }) => Some(signal.to_string()),
                _ => None,
            };
        let waits_for_it = onboarding.steps.iter().any(|s| {
            !matches!(
                s.status,
                StepStatus::Succeeded
                    | StepStatus::Skipped
                    | StepStatus::Cancelled
                    | StepStatus::Compensated
            ) && signal_of(&s.task).as_deref() == Some(name)
        });
        if !waits_for_it {
            return Err(EngineError::invalid(
                "name",
                format!("no step of onboarding {id} waits for signal `{name}`"),
            ));
        }
        let now = self.clock.now();
        let receipt = self
            .store
            .record_signal(id, name, &input.id, input.payload, now, actor)
            .await?;
        if receipt == SignalReceipt::New
            && let Some(current) = onboarding
                .steps
                .iter()
                .find(|s| s.seq == onboarding.current_seq)
            && signal_of(&current.task).as_deref() == Some(name)
        {
            self.store
                .take_signal(id, current.seq, name, now, actor)
                .await?;
        }
        Ok(receipt)
    }
}
