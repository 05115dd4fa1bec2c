//! The use cases: what an admin, a CSR, a service or the CLI can ask onramp to do.
//!
//! Handlers and CLI commands parse their input and call one function here; these validate
//! against the config, then call one named store transition. Nothing here writes SQL.

use crate::catalog::StepsError;
use crate::{Engine, EngineError, tokens};
use onramp_core::audit::{BrokenLink, verify_chain};
use onramp_core::auth::Role;
use onramp_core::customer::{Customer, FieldError};
use onramp_core::onboarding::{FailurePolicy, OnboardingStatus};
use onramp_core::{CsrId, DeadLetterId, OnboardingId, StageName, TaskTypeName, TemplateName};
use onramp_store::*;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The body of `POST /v1/onboardings`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "customer": {"name": "Ada Lovelace", "email": "ada@example.com", "company": "Analytical Engines"},
    "template": "standard",
})))]
#[serde(deny_unknown_fields)]
pub struct CreateOnboarding {
    /// The customer.
    pub customer: Customer,
    /// A template name (exclusive with `tasks`).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9_-]{1,64}$"))]
    pub template: Option<String>,
    /// An explicit ordered task list (exclusive with `template`), at least one task type.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Option<Vec<onramp_core::TaskTypeName>>, min_items = 1)
    )]
    pub tasks: Option<Vec<String>>,
    /// 0 (default) to 9 (first).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 9))]
    pub priority: Option<i64>,
}

/// An idempotency key and the raw request it came with.
#[derive(Debug, Clone)]
pub struct Idempotency {
    /// The caller's key (`Idempotency-Key` header).
    pub key: String,
    /// Whose key space.
    pub scope: String,
    /// The request body as JSON, to tell a repeat from a reuse.
    pub body: Value,
}

/// Longest accepted idempotency key.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The actor of what onramp does on its own (the first admin token at bootstrap).
pub const SYSTEM_ACTOR: &str = "system";

/// The actor of the `onramp` command line, run by someone with access to the database.
pub const CLI_ACTOR: &str = "cli";

/// Who is acting, for audit entries: `token:<name>`.
pub fn actor_for(token_name: &str) -> String {
    format!("token:{token_name}")
}

impl Engine {
    /// Creates an onboarding: validates, resolves the template or task list, and commits
    /// the onboarding, its steps and its first queue entry in one transaction.
    pub async fn create_onboarding(
        &self,
        request: CreateOnboarding,
        idempotency: Option<Idempotency>,
        actor: &str,
    ) -> Result<Created, EngineError> {
        let mut errors: Vec<FieldError> = request.customer.validate();
        let priority = match request.priority {
            None => 0,
            Some(p @ 0..=9) => p as u8,
            Some(_) => {
                errors.push(field("priority", "must be between 0 and 9"));
                0
            }
        };
        let claim = match idempotency {
            None => None,
            Some(i) if i.key.is_empty() || i.key.len() > MAX_IDEMPOTENCY_KEY_LEN => {
                errors.push(field(
                    "Idempotency-Key",
                    format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters"),
                ));
                None
            }
            Some(i) => Some(IdempotencyClaim {
                scope: i.scope,
                key: i.key,
                request_hash: request_hash(&i.body),
            }),
        };
        let mut on_failure = FailurePolicy::Hold;
        let (template, tasks) = match (&request.template, &request.tasks) {
            (Some(_), Some(_)) => {
                errors.push(field(
                    "template",
                    "give either `template` or `tasks`, not both",
                ));
                (None, Vec::new())
            }
            (None, None) => {
                errors.push(field(
                    "tasks",
                    "give a `template` or a non-empty `tasks` list",
                ));
                (None, Vec::new())
            }
            (None, Some(tasks)) if tasks.is_empty() => {
                errors.push(field("tasks", "must not be empty"));
                (None, Vec::new())
            }
            (None, Some(tasks)) => {
                let mut parsed: Vec<TaskTypeName> = Vec::new();
                let mut unknown = Vec::new();
                for t in tasks {
                    match t.parse::<TaskTypeName>() {
                        Ok(n) => parsed.push(n),
                        Err(_) => unknown.push(t.clone()),
                    }
                }
                if !unknown.is_empty() {
                    return Err(EngineError::UnknownTask(unknown));
                }
                for (i, problem) in self.catalog.order_problems(&parsed) {
                    errors.push(field(&format!("tasks[{i}]"), problem));
                }
                (None, parsed)
            }
            (Some(name), None) => {
                let parsed: TemplateName = name
                    .parse()
                    .map_err(|_| EngineError::UnknownTemplate(name.clone()))?;
                let t = self
                    .store
                    .get_template(&parsed, None)
                    .await
                    .map_err(|e| match e {
                        StoreError::NotFound(_) => EngineError::UnknownTemplate(name.clone()),
                        other => other.into(),
                    })?;
                on_failure = t.on_failure;
                (
                    Some(TemplateRef {
                        name: t.name,
                        version: t.version,
                    }),
                    t.tasks,
                )
            }
        };
        if !errors.is_empty() {
            return Err(EngineError::Validation(errors));
        }
        let steps = self.catalog.steps_for(&tasks).map_err(|e| match e {
            StepsError::Unknown(names) => EngineError::UnknownTask(names),
            StepsError::Unsupported { task, kind } => EngineError::invalid(
                "tasks",
                format!(
                    "task `{task}` is of kind `{kind}`, which this version of onramp cannot run yet"
                ),
            ),
        })?;
        let new = NewOnboarding {
            id: OnboardingId::new(),
            customer: request.customer,
            template,
            priority,
            steps,
            on_failure,
            now: self.clock.now(),
            actor: actor.to_owned(),
        };
        let created = self.store.create_onboarding(new, claim).await?;
        if let Created::New(_) = created {
            self.metrics.onboarding_created();
        }
        Ok(created)
    }

    /// failed → running. Refused once the failure's dead letter was discarded
    /// (`retry_available` is false then).
    pub async fn retry_onboarding(
        &self,
        id: &OnboardingId,
        actor: &str,
    ) -> Result<OnboardingRecord, EngineError> {
        let current = self.store.get_onboarding(id).await?;
        let stuck = matches!(
            current.status,
            OnboardingStatus::Failed | OnboardingStatus::Cancelling
        );
        if stuck && !current.retry_available {
            return Err(EngineError::InvalidTransition(format!(
                "onboarding {id} has nothing to retry (no open dead letter)"
            )));
        }
        Ok(self
            .store
            .retry_onboarding(id, self.clock.now(), actor)
            .await?)
    }

    /// → cancelling → cancelled.
    pub async fn cancel_onboarding(
        &self,
        id: &OnboardingId,
        reason: &str,
        actor: &str,
    ) -> Result<OnboardingRecord, EngineError> {
        if reason.chars().count() > 1000 {
            return Err(EngineError::invalid(
                "reason",
                "must be at most 1000 characters",
            ));
        }
        Ok(self
            .store
            .cancel_onboarding(id, reason, self.clock.now(), actor)
            .await?)
    }

    /// Replays one dead letter.
    pub async fn replay_dead_letter(
        &self,
        id: &DeadLetterId,
        actor: &str,
    ) -> Result<DeadLetterRecord, EngineError> {
        Ok(self
            .store
            .replay_dead_letter(id, self.clock.now(), actor)
            .await?)
    }

    /// Discards one dead letter.
    pub async fn discard_dead_letter(
        &self,
        id: &DeadLetterId,
        actor: &str,
    ) -> Result<DeadLetterRecord, EngineError> {
        Ok(self
            .store
            .discard_dead_letter(id, self.clock.now(), actor)
            .await?)
    }

    /// Replays every open dead letter of a known stage.
    pub async fn replay_stage(&self, stage: &str, actor: &str) -> Result<u64, EngineError> {
        let stage = self.known_stage(stage)?;
        Ok(self
            .store
            .replay_stage(&stage, self.clock.now(), actor)
            .await?)
    }

    /// Pauses or resumes a known stage. Resuming wakes the stage's workers, so queued steps
    /// run at once rather than at the next poll.
    pub async fn set_stage_paused(
        &self,
        stage: &str,
        paused: bool,
        actor: &str,
    ) -> Result<(), EngineError> {
        let stage = self.known_stage(stage)?;
        self.store
            .set_stage_paused(&stage, paused, self.clock.now(), actor)
            .await?;
        self.refresh_paused().await?;
        if !paused {
            self.store.signals().wake(&stage);
        }
        Ok(())
    }

    /// A stage the config knows.
    pub fn known_stage(&self, stage: &str) -> Result<StageName, EngineError> {
        stage
            .parse::<StageName>()
            .ok()
            .filter(|s| self.catalog.stages().any(|(name, _)| name == s))
            .ok_or_else(|| EngineError::NotFound(format!("stage `{stage}`")))
    }

    /// Stores a new version of a template after checking its tasks and their order.
    pub async fn put_template(
        &self,
        name: &str,
        tasks: &[String],
        on_failure: Option<&str>,
        actor: &str,
    ) -> Result<TemplateRecord, EngineError> {
        let on_failure = match on_failure {
            None => FailurePolicy::Hold,
            Some(s) => s
                .parse::<FailurePolicy>()
                .map_err(|why| EngineError::invalid("on_failure", why))?,
        };
        let name: TemplateName = name
            .parse()
            .map_err(|e: onramp_core::InvalidName| EngineError::invalid("name", e.to_string()))?;
        if tasks.is_empty() {
            return Err(EngineError::invalid("tasks", "must not be empty"));
        }
        let mut parsed = Vec::new();
        let mut unknown = Vec::new();
        for t in tasks {
            match t.parse::<TaskTypeName>() {
                Ok(n) if self.catalog.task(&n).is_some() => parsed.push(n),
                _ => unknown.push(t.clone()),
            }
        }
        if !unknown.is_empty() {
            return Err(EngineError::UnknownTask(unknown));
        }
        if let Some((i, problem)) = self.catalog.order_problems(&parsed).into_iter().next() {
            return Err(EngineError::invalid(&format!("tasks[{i}]"), problem));
        }
        let spec = TemplateSpec {
            tasks: parsed,
            on_failure,
        };
        Ok(self
            .store
            .put_template(&name, &spec, self.clock.now(), actor)
            .await?)
    }

    /// Creates a token for `actor`; returns the secret (shown once) and the stored record.
    pub async fn create_token(
        &self,
        name: &str,
        role: Role,
        csr: Option<CsrId>,
        actor: &str,
    ) -> Result<(String, TokenRecord), EngineError> {
        let secret = tokens::generate();
        let record = self.store_token(name, role, csr, &secret, actor).await?;
        Ok((secret, record))
    }

    /// Stores a token with a given secret (bootstrap from `ONRAMP_ADMIN_TOKEN`).
    pub async fn store_token(
        &self,
        name: &str,
        role: Role,
        csr: Option<CsrId>,
        secret: &str,
        actor: &str,
    ) -> Result<TokenRecord, EngineError> {
        if name.is_empty() || name.chars().count() > 100 {
            return Err(EngineError::invalid("name", "must be 1 to 100 characters"));
        }
        if secret.len() < 16 {
            return Err(EngineError::invalid(
                "token",
                "must be at least 16 characters",
            ));
        }
        Ok(self
            .store
            .create_token(NewToken {
                name: name.to_owned(),
                role,
                hash: tokens::hash(secret),
                csr,
                now: self.clock.now(),
                actor: actor.to_owned(),
            })
            .await?)
    }

    /// Revokes a live token by name.
    pub async fn revoke_token(&self, name: &str, actor: &str) -> Result<(), EngineError> {
        Ok(self
            .store
            .revoke_token(name, self.clock.now(), actor)
            .await?)
    }

    /// The administrative audit chain: up to `limit` entries after `after`, in order.
    pub async fn admin_audit(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<onramp_core::audit::AuditEntry>, EngineError> {
        Ok(self.store.admin_audit(after, limit).await?)
    }

    /// The live token for a presented secret.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<TokenRecord>, EngineError> {
        Ok(self.store.token_by_hash(&tokens::hash(secret)).await?)
    }

    /// Makes sure an admin token exists: with `preset` (from `ONRAMP_ADMIN_TOKEN`) that
    /// secret becomes an admin token; otherwise, when there are no tokens at all, a new one is
    /// generated and returned so it can be printed once.
    pub async fn bootstrap_admin(
        &self,
        preset: Option<&str>,
    ) -> Result<Option<String>, EngineError> {
        if let Some(secret) = preset {
            if self.authenticate(secret).await?.is_none() {
                let name = format!("admin-env-{}", &tokens::hash(secret)[..8]);
                self.store_token(&name, Role::Admin, None, secret, SYSTEM_ACTOR)
                    .await?;
            }
            return Ok(None);
        }
        if !self.store.list_tokens().await?.is_empty() {
            return Ok(None);
        }
        let (secret, _) = self
            .create_token("admin", Role::Admin, None, SYSTEM_ACTOR)
            .await?;
        Ok(Some(secret))
    }

    /// Checks the audit chains of one onboarding or of all; returns how many chains were
    /// checked and every broken one.
    pub async fn verify_audit(
        &self,
        only: Option<&OnboardingId>,
    ) -> Result<AuditReport, EngineError> {
        let mut report = AuditReport::default();
        let check =
            async |id: &OnboardingId, report: &mut AuditReport| -> Result<(), EngineError> {
                let entries = self.store.audit_entries(id).await?;
                report.chains += 1;
                report.entries += entries.len() as u64;
                if let Err(broken) = verify_chain(&entries) {
                    report.broken.push((id.to_string(), broken));
                }
                Ok(())
            };
        match only {
            Some(id) => check(id, &mut report).await?,
            None => {
                self.verify_admin_audit(&mut report).await?;
                let mut after: Option<OnboardingId> = None;
                loop {
                    let ids = self.store.onboarding_ids(after.as_ref(), 500).await?;
                    let Some(last) = ids.last().cloned() else {
                        break;
                    };
                    for id in &ids {
                        check(id, &mut report).await?;
                    }
                    after = Some(last);
                }
            }
        }
        Ok(report)
    }

    /// Checks the chain of administrative actions, read a page at a time.
    async fn verify_admin_audit(&self, report: &mut AuditReport) -> Result<(), EngineError> {
        let mut entries = Vec::new();
        loop {
            let after = entries
                .last()
                .map_or(0, |e: &onramp_core::audit::AuditEntry| e.seq);
            let page = self.store.admin_audit(after, 1000).await?;
            if page.is_empty() {
                break;
            }
            entries.extend(page);
        }
        report.admin_chain = true;
        report.entries += entries.len() as u64;
        if let Err(broken) = verify_chain(&entries) {
            report.broken.push((ADMIN_CHAIN.to_owned(), broken));
        }
        Ok(())
    }
}

/// How `audit verify` names the chain of administrative actions.
pub const ADMIN_CHAIN: &str = "admin";

/// The result of `audit verify`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AuditReport {
    /// Onboarding chains checked.
    pub chains: u64,
    /// Whether the chain of administrative actions was checked too.
    pub admin_chain: bool,
    /// Entries checked.
    pub entries: u64,
    /// Broken chains (an onboarding id, or [`ADMIN_CHAIN`]) and where.
    pub broken: Vec<(String, BrokenLink)>,
}

fn field(name: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: name.into(),
        message: message.into(),
    }
}

/// SHA-256 of the canonical JSON of a request (keys sorted), hex.
pub fn request_hash(body: &Value) -> String {
    let digest = Sha256::digest(body.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
