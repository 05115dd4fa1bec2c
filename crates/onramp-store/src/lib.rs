//! The storage interface of onramp.
//!
//! [`Store`] speaks in named transitions (`claim`, `finish_steps`, `retry_onboarding`,
//! `cancel_onboarding`, `replay_dead_letter`, ...), never in generic status updates. Each
//! implementation reads the rows involved inside one transaction, asks
//! [`onramp_core::plan`] what the change means, and writes the result — status changes as
//! compare-and-set, audit entries chained, outbox events, queue entries — in that same
//! transaction. Two backends implement it: `onramp-store-sqlite` and
//! `onramp-store-postgres`; the [`conformance`] module (feature `testing`) is the behaviour
//! suite both must pass.
//!
//! Wake-ups and change notifications ([`Signals`]) are an optimisation: workers also poll,
//! so a lost notification only costs latency.
#![forbid(unsafe_code)]

pub mod admin;
mod error;
mod events;
mod records;
mod signals;

#[cfg(feature = "testing")]
pub mod conformance;

pub use error::{StoreError, StoreResult};
pub use events::*;
pub use records::*;
pub use signals::{Changed, Signals};

use async_trait::async_trait;
use onramp_core::audit::AuditEntry;
use onramp_core::events::EventType;
use onramp_core::onboarding::OnboardingStatus;
use onramp_core::time::Millis;
use onramp_core::{
    CsrId, DeadLetterId, DeliveryId, OnboardingId, StageName, StepSeq, TaskId, TemplateName,
    WebhookId,
};
use std::sync::Arc;
use std::time::Duration;

/// A shared store handle, as the engine and API hold it.
pub type SharedStore = Arc<dyn Store>;

/// Everything onramp keeps.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The wake-up and change notifications of this store.
    fn signals(&self) -> Arc<Signals>;

    /// Checks that the database answers.
    async fn ping(&self) -> StoreResult<()>;

    // ----- onboardings -----

    /// Creates an onboarding, its steps and its first queue entry in one transaction. With an
    /// idempotency claim, a repeat of the same key and request returns the original record
    /// ([`Created::Replayed`]); the same key with another request is
    /// [`StoreError::IdempotencyKeyReused`].
    async fn create_onboarding(
        &self,
        new: NewOnboarding,
        idempotency: Option<IdempotencyClaim>,
    ) -> StoreResult<Created>;

    /// An onboarding with its steps.
    async fn get_onboarding(&self, id: &OnboardingId) -> StoreResult<OnboardingRecord>;

    /// Onboardings, newest first, without steps.
    async fn list_onboardings(
        &self,
        filter: &OnboardingFilter,
        page: &PageRequest<OnboardingId>,
    ) -> StoreResult<Page<OnboardingRecord, OnboardingId>>;

    /// How many onboardings have each status (statuses with none are left out).
    async fn onboarding_counts(&self) -> StoreResult<Vec<(OnboardingStatus, u64)>>;

    /// An onboarding's audit entries in order.
    async fn audit_entries(&self, id: &OnboardingId) -> StoreResult<Vec<AuditEntry>>;

    /// Ids of onboardings after `after` in id order, for walking all of them.
    async fn onboarding_ids(
        &self,
        after: Option<&OnboardingId>,
        limit: usize,
    ) -> StoreResult<Vec<OnboardingId>>;

    // ----- the queue -----

    /// Claims up to `limit` claimable steps of `stage` (queued or retrying, available by
    /// `now`), highest priority first then oldest; each gets a fresh lease until
    /// `now + lease_for` and its attempt counted.
    async fn claim(
        &self,
        stage: &StageName,
        limit: usize,
        now: Millis,
        lease_for: Duration,
    ) -> StoreResult<Vec<ClaimedStep>>;

    /// Carries out decisions on steps, each in its own savepoint so one refused finish does
    /// not undo the others; the results are in input order. A finish whose guard no longer
    /// holds (lease lost, status changed) is [`StoreError::Conflict`].
    async fn finish_steps(&self, finishes: Vec<StepFinish>) -> Vec<StoreResult<()>>;

    /// Running steps whose lease expired by `now`.
    async fn expired_leases(&self, now: Millis, limit: usize) -> StoreResult<Vec<ClaimedStep>>;

    /// Queued steps of `stage` that entered the queue before `queued_before`.
    async fn unclaimed_since(
        &self,
        stage: &StageName,
        queued_before: Millis,
        limit: usize,
    ) -> StoreResult<Vec<StepRef>>;

    // ----- operator actions -----

    /// failed → running: re-queues the dead step.
    async fn retry_onboarding(
        &self,
        id: &OnboardingId,
        now: Millis,
        actor: &str,
    ) -> StoreResult<OnboardingRecord>;

    /// Cancels an onboarding: remaining steps skipped, ends `cancelled`.
    async fn cancel_onboarding(
        &self,
        id: &OnboardingId,
        reason: &str,
        now: Millis,
        actor: &str,
    ) -> StoreResult<OnboardingRecord>;

    /// Open dead letters, oldest first.
    async fn list_dead_letters(
        &self,
        stage: Option<&StageName>,
        page: &PageRequest<DeadLetterId>,
    ) -> StoreResult<Page<DeadLetterRecord, DeadLetterId>>;

    /// Replays one dead letter (its onboarding goes failed → running).
    async fn replay_dead_letter(
        &self,
        id: &DeadLetterId,
        now: Millis,
        actor: &str,
    ) -> StoreResult<DeadLetterRecord>;

    /// Discards one dead letter; its onboarding stays failed without retry.
    async fn discard_dead_letter(
        &self,
        id: &DeadLetterId,
        now: Millis,
        actor: &str,
    ) -> StoreResult<DeadLetterRecord>;

    /// Replays every open dead letter of a stage; returns how many.
    async fn replay_stage(&self, stage: &StageName, now: Millis, actor: &str) -> StoreResult<u64>;

    // ----- stages -----

    /// Queue counts per stage that has any steps or is paused.
    async fn stage_counts(&self) -> StoreResult<Vec<StageCounts>>;

    /// Levels of open work, for metrics (cheap on a large database: see [`WorkLevels`]).
    async fn work_levels(&self, now: Millis) -> StoreResult<WorkLevels>;

    /// Pauses or resumes a stage for every process (audited as `actor`'s).
    async fn set_stage_paused(
        &self,
        stage: &StageName,
        paused: bool,
        now: Millis,
        actor: &str,
    ) -> StoreResult<()>;

    /// The paused stages.
    async fn paused_stages(&self) -> StoreResult<Vec<StageName>>;

    // ----- templates -----

    /// Stores a new version of a template (audited as `actor`'s).
    async fn put_template(
        &self,
        name: &TemplateName,
        spec: &TemplateSpec,
        now: Millis,
        actor: &str,
    ) -> StoreResult<TemplateRecord>;

    /// Makes the latest version of `name` say `spec`, adding a version only when it differs
    /// (used to load templates from config at start; a new version is audited as `config`'s).
    async fn sync_template(
        &self,
        name: &TemplateName,
        spec: &TemplateSpec,
        now: Millis,
    ) -> StoreResult<TemplateRecord>;

    /// A template version (the latest when `version` is `None`).
    async fn get_template(
        &self,
        name: &TemplateName,
        version: Option<u32>,
    ) -> StoreResult<TemplateRecord>;

    /// Every version of a template, oldest first.
    async fn template_versions(&self, name: &TemplateName) -> StoreResult<Vec<TemplateRecord>>;

    /// The latest version of every template, by name.
    async fn list_templates(&self) -> StoreResult<Vec<TemplateRecord>>;

    // ----- tokens -----

    /// Stores a token (by its hash), audited. A taken name is [`StoreError::Conflict`].
    async fn create_token(&self, token: NewToken) -> StoreResult<TokenRecord>;

    /// The live (not revoked) token with this hash.
    async fn token_by_hash(&self, hash: &str) -> StoreResult<Option<TokenRecord>>;

    /// Every token, revoked ones included.
    async fn list_tokens(&self) -> StoreResult<Vec<TokenRecord>>;

    /// Revokes a token by name (audited as `actor`'s).
    async fn revoke_token(&self, name: &str, now: Millis, actor: &str) -> StoreResult<()>;

    /// The audit chain of administrative actions (tokens, templates, CSRs, stages, webhooks):
    /// up to `limit` entries with `seq` after `after`, in order.
    async fn admin_audit(&self, after: u64, limit: usize) -> StoreResult<Vec<AuditEntry>>;

    // ----- live status and events -----

    /// The visible status changes of an onboarding after `after` (a [`StatusChange::seq`]),
    /// oldest first, at most `limit`. With `after = None`, only its latest change. An unknown
    /// onboarding is [`StoreError::NotFound`].
    async fn status_changes(
        &self,
        id: &OnboardingId,
        after: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<StatusChange>>;

    /// Publishes up to `limit` outbox events: gives each its place in publication order
    /// (commit order per onboarding) and creates a pending delivery for every webhook
    /// subscribed to its type, and one for the broker when `amqp`. Only one process publishes
    /// at a time; while another does, this returns nothing at once.
    async fn publish_events(&self, limit: usize, amqp: bool, now: Millis)
    -> StoreResult<Published>;

    /// Published events after `after`, in publication order, at most `limit`; only those of
    /// `types` unless it is empty.
    async fn published_events(
        &self,
        after: i64,
        types: &[EventType],
        limit: usize,
    ) -> StoreResult<Vec<PublishedEvent>>;

    /// The place of the last published event (0 when there is none).
    async fn last_published_seq(&self) -> StoreResult<i64>;

    // ----- webhooks and deliveries -----

    /// Stores a webhook endpoint, audited.
    async fn create_webhook(&self, new: NewWebhook) -> StoreResult<WebhookRecord>;

    /// Every webhook endpoint, oldest first.
    async fn list_webhooks(&self) -> StoreResult<Vec<WebhookRecord>>;

    /// One webhook endpoint.
    async fn get_webhook(&self, id: &WebhookId) -> StoreResult<WebhookRecord>;

    /// Deletes a webhook endpoint and its deliveries (audited as `actor`'s).
    async fn delete_webhook(&self, id: &WebhookId, now: Millis, actor: &str) -> StoreResult<()>;

    /// Claims up to `limit` due deliveries to `target`, each the oldest open delivery of its
    /// onboarding (so one onboarding's events reach a target in order): pending or retrying
    /// ones due by `now`, or sending ones whose lease ran out. Each gets a fresh lease until
    /// `now + lease_for` and its attempt counted.
    async fn claim_deliveries(
        &self,
        target: &DeliveryTarget,
        limit: usize,
        now: Millis,
        lease_for: Duration,
    ) -> StoreResult<Vec<ClaimedDelivery>>;

    /// Records how attempts ended; results in input order. A finish whose lease was taken
    /// over is [`StoreError::Conflict`].
    async fn finish_deliveries(&self, finishes: Vec<DeliveryFinish>) -> Vec<StoreResult<()>>;

    /// Deliveries to a target, oldest first.
    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        page: &PageRequest<DeliveryId>,
    ) -> StoreResult<Page<DeliveryRecord, DeliveryId>>;

    /// Replays dead deliveries to `target` (only `only` when given): dead → pending, due at
    /// once, with a new retry window. Returns how many. Replaying a delivery that is not dead
    /// is [`StoreError::InvalidTransition`]; an unknown one [`StoreError::NotFound`].
    async fn replay_deliveries(
        &self,
        target: &DeliveryTarget,
        only: Option<&DeliveryId>,
        now: Millis,
    ) -> StoreResult<u64>;
    // ----- CSRs and human tasks -----

    /// Stores a new CSR (audited as `actor`'s).
    async fn create_csr(
        &self,
        id: &CsrId,
        spec: &CsrSpec,
        now: Millis,
        actor: &str,
    ) -> StoreResult<CsrRecord>;

    /// A CSR.
    async fn get_csr(&self, id: &CsrId) -> StoreResult<CsrRecord>;

    /// CSRs in id order.
    async fn list_csrs(&self, page: &PageRequest<CsrId>) -> StoreResult<Page<CsrRecord, CsrId>>;

    /// Replaces what a CSR is (audited as `actor`'s).
    async fn update_csr(
        &self,
        id: &CsrId,
        spec: &CsrSpec,
        now: Millis,
        actor: &str,
    ) -> StoreResult<CsrRecord>;

    /// Deletes a CSR; their open tasks become unassigned (and are assigned again by the next
    /// [`Store::assign_tasks`]). Audited as `actor`'s.
    async fn delete_csr(&self, id: &CsrId, now: Millis, actor: &str) -> StoreResult<()>;

    /// Assigns up to `limit` unassigned tasks, oldest first, in one transaction: each to the
    /// CSR with the skill, active, under capacity, with the earliest free slot (ties: fewer
    /// active tasks). Concurrent calls are serialised, so no slot is double-booked and no
    /// capacity exceeded. Returns the tasks it assigned.
    async fn assign_tasks(&self, now: Millis, limit: usize) -> StoreResult<Vec<TaskRecord>>;

    /// Gives a task to `csr` (an operator's choice) at that CSR's earliest free slot; refused
    /// with [`StoreError::Conflict`] when the CSR is at capacity or has no free slot.
    async fn assign_task(
        &self,
        id: &TaskId,
        csr: &CsrId,
        now: Millis,
        actor: &str,
    ) -> StoreResult<TaskRecord>;

    /// Completes an open task and moves its onboarding on, in one transaction. With
    /// `assignee`, the task must be assigned to that CSR ([`StoreError::Conflict`] otherwise).
    async fn complete_task(
        &self,
        id: &TaskId,
        assignee: Option<&CsrId>,
        notes: Option<String>,
        now: Millis,
        actor: &str,
    ) -> StoreResult<TaskRecord>;

    /// A task.
    async fn get_task(&self, id: &TaskId) -> StoreResult<TaskRecord>;

    /// Tasks, oldest first.
    async fn list_tasks(
        &self,
        filter: &TaskFilter,
        page: &PageRequest<TaskId>,
    ) -> StoreResult<Page<TaskRecord, TaskId>>;

    /// A CSR's assigned and done tasks whose slot overlaps `[from, to)`, by slot.
    async fn csr_schedule(
        &self,
        csr: &CsrId,
        from: Millis,
        to: Millis,
    ) -> StoreResult<Vec<TaskRecord>>;

    /// Flags open tasks past their `due_by` (once each, with a `task.overdue` event).
    async fn mark_overdue(&self, now: Millis, limit: usize) -> StoreResult<Vec<TaskRecord>>;

    // ----- waits and signals -----

    /// Waiting steps whose wait ends by `now` (a delay's end, a signal's timeout).
    async fn due_waits(&self, now: Millis, limit: usize) -> StoreResult<Vec<WaitingStep>>;

    /// Keeps a signal sent to an onboarding. The same `sender_id` again is
    /// [`SignalReceipt::Duplicate`]; a terminal onboarding refuses it
    /// ([`StoreError::InvalidTransition`]).
    async fn record_signal(
        &self,
        id: &OnboardingId,
        name: &str,
        sender_id: &str,
        payload: serde_json::Value,
        now: Millis,
        actor: &str,
    ) -> StoreResult<SignalReceipt>;

    /// If step `seq` is waiting and a kept, unused signal `name` exists, uses the oldest one:
    /// the step succeeds with it as output, in one transaction. Returns whether it did.
    async fn take_signal(
        &self,
        id: &OnboardingId,
        seq: StepSeq,
        name: &str,
        now: Millis,
        actor: &str,
    ) -> StoreResult<bool>;
}
