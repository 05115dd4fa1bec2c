//! [`PostgresStore`]: the pool, the transaction boundaries (begin, commit, announce, signal),
//! and the `Store` impl that hands each call to the module that does it.

use crate::announcer::Announcer;
use crate::listener::{self, ListenerTask};
use crate::{
    admin_audit, db_error, events, human, levels, migrate, onboardings, operations, queue, registry,
};
use async_trait::async_trait;
use onramp_core::audit::AuditEntry;
use onramp_core::events::EventType;
use onramp_core::onboarding::OnboardingStatus;
use onramp_core::time::Millis;
use onramp_core::{
    CsrId, DeadLetterId, DeliveryId, OnboardingId, StageName, StepSeq, TaskId, TemplateName,
    WebhookId,
};
use onramp_store::*;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection, Postgres, Transaction};
use std::sync::Arc;
use std::time::Duration;

/// Connections per process unless the caller says otherwise.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// How long a call waits for a free (or new) connection before it is `Unavailable`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes run at `READ COMMITTED` whatever the database's default: correctness comes from
/// row locks taken in a fixed order, not from the isolation level.
const BEGIN_WRITE: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

/// A claim: a write whose commit need not wait for the disk (see [`PostgresStore::claim`]).
const BEGIN_CLAIM: &str =
    "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL synchronous_commit = off";

/// Reads of several statements see one snapshot (an onboarding and its steps agree).
const BEGIN_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// Settings of every connection: plan joins as nested loops only, no hash or merge joins.
///
/// Every statement of this store reaches its rows through a key: a batch write joins an
/// `unnest` of a few ids to rows found through an index, and the joins of the reads are paged
/// lookups by key. PostgreSQL keeps a prepared statement's generic plan, made after its fifth
/// execution, for the life of the connection. Made while the tables were empty (a new
/// database), that plan was a hash join over a sequential scan, and it stayed one as the
/// tables grew: a W1 run on a fresh database read `steps` in full 4,400 times. A nested loop
/// over the key's index is the right plan at any size; with the other join methods off the
/// generic plan is that from the start, whatever the statistics say or lack. Planning every
/// execution instead (`plan_cache_mode = force_custom_plan`, which this replaced) took about a
/// third of PostgreSQL's CPU, the foreign key checks' queries included. The settings hold for
/// this store's connections only, not for other users of the database.
const SESSION_OPTIONS: [(&str, &str); 2] =
    [("enable_hashjoin", "off"), ("enable_mergejoin", "off")];

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: PgPool,
    /// Connections reserved for claims and finishes, so that a burst of creates or reads
    /// cannot starve the workers (and the workers cannot starve the API).
    queue_pool: PgPool,
    signals: Arc<Signals>,
    /// This instance's name in its change notifications, to recognise its own.
    origin: Arc<str>,
    /// Tells other processes about this one's commits.
    announcer: Announcer,
    /// Stops the notification listener when the store goes.
    _listener: ListenerTask,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at a `postgres://` URL with up to
    /// [`DEFAULT_MAX_CONNECTIONS`] connections, brings its schema up to date, and starts
    /// listening for other processes' notifications.
    pub async fn open(url: &str) -> Result<PostgresStore, StoreError> {
        Self::open_with(url, DEFAULT_MAX_CONNECTIONS).await
    }

    /// [`open`](Self::open) with a pool of up to `max_connections` connections (at least
    /// two: the notification listener keeps one).
    pub async fn open_with(url: &str, max_connections: u32) -> Result<PostgresStore, StoreError> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("not a usable PostgreSQL URL: {e}")))?;
        let options = options.options(SESSION_OPTIONS);
        // One plain connection first: it fails at once with the real reason (refused,
        // password, unknown database), where a pool would retry until its timeout.
        let mut conn =
            PgConnection::connect_with(&options)
                .await
                .map_err(|e| match db_error(e) {
                    StoreError::Unavailable(why) | StoreError::Internal(why) => {
                        StoreError::Unavailable(format!("cannot connect to PostgreSQL: {why}"))
                    }
                    other => other,
                })?;
        migrate::migrate(&mut conn).await?;
        let _ = conn.close().await;
        let (general, queue) = split_connections(max_connections);
        let pool = PgPoolOptions::new()
            .max_connections(general)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options.clone());
        let queue_pool = PgPoolOptions::new()
            .max_connections(queue)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        let signals = Arc::new(Signals::default());
        let origin: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
        let listener = listener::start(&pool, signals.clone(), origin.clone()).await?;
        let announcer = Announcer::start(pool.clone(), &origin);
        Ok(PostgresStore {
            announcer,
            pool,
            queue_pool,
            signals,
            origin,
            _listener: listener,
        })
    }

    /// Stops listening and closes every connection, waiting for those in use to be returned.
    pub async fn close(self) {
        let PostgresStore {
            pool,
            queue_pool,
            _listener,
            ..
        } = self;
        drop(_listener);
        queue_pool.close().await;
        pool.close().await;
    }

    /// The connection pool (for tests and tools that need plain SQL).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin(&self) -> StoreResult<Transaction<'static, Postgres>> {
        self.pool.begin_with(BEGIN_WRITE).await.map_err(db_error)
    }

    /// A write transaction for the queue's hot path (claims, finishes).
    async fn begin_queue(
        &self,
        begin: &'static str,
    ) -> StoreResult<Transaction<'static, Postgres>> {
        self.queue_pool.begin_with(begin).await.map_err(db_error)
    }

    /// Commits, then announces `notices` to other processes and signals this process.
    async fn commit(
        &self,
        tx: Transaction<'static, Postgres>,
        notices: Notices,
    ) -> StoreResult<()> {
        tx.commit().await.map_err(db_error)?;
        self.announce(notices);
        Ok(())
    }

    /// Tells other processes and this one about a committed write.
    fn announce(&self, notices: Notices) {
        self.announcer.announce(&notices);
        notices.send(&self.signals);
    }

    async fn snapshot(&self) -> StoreResult<Transaction<'static, Postgres>> {
        self.pool.begin_with(BEGIN_READ).await.map_err(db_error)
    }

    async fn connection(&self) -> StoreResult<sqlx::pool::PoolConnection<Postgres>> {
        self.pool.acquire().await.map_err(db_error)
    }
}

/// How a process's `max_connections` is shared: the general pool (creates, reads, operator
/// actions, the notification listener) and the queue's pool (claims and finishes), about half
/// each; at least two general connections (the listener keeps one) and one for the queue.
fn split_connections(max_connections: u32) -> (u32, u32) {
    let total = max_connections.max(3);
    let queue = (total / 2).max(1);
    (total - queue, queue)
}

/// Notifications a write sends once committed.
#[derive(Debug, Default)]
pub struct Notices {
    /// Stages that got claimable work.
    pub wake: Vec<StageName>,
    /// Onboardings that changed.
    pub changed: Vec<Changed>,
    /// Events were published (or deliveries became due by a replay).
    pub published: bool,
}

impl Notices {
    /// Adds another write's notices.
    pub fn merge(&mut self, other: Notices) {
        self.wake.extend(other.wake);
        self.changed.extend(other.changed);
        self.published |= other.published;
    }

    /// The woken stages, each once.
    pub fn distinct_wakes(&self) -> Vec<&StageName> {
        let mut woken: Vec<&StageName> = Vec::new();
        for stage in &self.wake {
            if !woken.contains(&stage) {
                woken.push(stage);
            }
        }
        woken
    }

    fn send(self, signals: &Signals) {
        for stage in self.distinct_wakes() {
            signals.wake(stage);
        }
        for change in self.changed {
            signals.changed(change);
        }
        if self.published {
            signals.published();
        }
    }
}

/// Runs one finish in its own savepoint, so that a refused finish undoes only itself.
/// The slow path of `finish_steps`: each finish in its own savepoint, in onboarding id order.
async fn one_at_a_time(
    conn: &mut PgConnection,
    finishes: Vec<StepFinish>,
) -> (Vec<StoreResult<()>>, Notices) {
    let n = finishes.len();
    let mut ordered: Vec<(usize, StepFinish)> = finishes.into_iter().enumerate().collect();
    ordered.sort_by(|(_, a), (_, b)| a.step.onboarding_id.cmp(&b.step.onboarding_id));
    let mut results: Vec<StoreResult<()>> = vec![Ok(()); n];
    let mut notices = Notices::default();
    for (index, finish) in ordered {
        match finish_in_savepoint(conn, finish).await {
            Ok(more) => notices.merge(more),
            Err(e) => results[index] = Err(e),
        }
    }
    (results, notices)
}

async fn finish_in_savepoint(conn: &mut PgConnection, finish: StepFinish) -> StoreResult<Notices> {
    let mut savepoint = conn.begin().await.map_err(db_error)?;
    match queue::finish(&mut savepoint, finish).await {
        Ok(notices) => {
            savepoint.commit().await.map_err(db_error)?;
            Ok(notices)
        }
        Err(e) => {
            savepoint.rollback().await.map_err(db_error)?;
            Err(e)
        }
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn signals(&self) -> Arc<Signals> {
        self.signals.clone()
    }

    async fn ping(&self) -> StoreResult<()> {
        let mut conn = self.connection().await?;
        sqlx::query("SELECT 1")
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn create_onboarding(
        &self,
        new: NewOnboarding,
        idempotency: Option<IdempotencyClaim>,
    ) -> StoreResult<Created> {
        if new.steps.is_empty() {
            let mut tx = self.begin().await?;
            let refused = onboardings::refuse_empty(&mut tx, &new, idempotency.as_ref()).await;
            tx.rollback().await.map_err(db_error)?;
            return refused;
        }
        // One statement, committed on its own: no transaction to open or close.
        let (created, notices) =
            onboardings::create(&mut *self.connection().await?, new, idempotency).await?;
        self.announce(notices);
        Ok(created)
    }

    async fn get_onboarding(&self, id: &OnboardingId) -> StoreResult<OnboardingRecord> {
        let mut tx = self.snapshot().await?;
        let record = onboardings::get(&mut tx, id).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(record)
    }

    async fn list_onboardings(
        &self,
        filter: &OnboardingFilter,
        page: &PageRequest<OnboardingId>,
    ) -> StoreResult<Page<OnboardingRecord, OnboardingId>> {
        onboardings::list(&mut *self.connection().await?, filter, page).await
    }

    async fn onboarding_counts(&self) -> StoreResult<Vec<(OnboardingStatus, u64)>> {
        onboardings::counts(&mut *self.connection().await?).await
    }

    async fn audit_entries(&self, id: &OnboardingId) -> StoreResult<Vec<AuditEntry>> {
        let mut tx = self.snapshot().await?;
        let entries = onboardings::audit_entries(&mut tx, id).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(entries)
    }

    async fn onboarding_ids(
        &self,
        after: Option<&OnboardingId>,
        limit: usize,
    ) -> StoreResult<Vec<OnboardingId>> {
        onboardings::ids(&mut *self.connection().await?, after, limit).await
    }

    async fn claim(
        &self,
        stage: &StageName,
        limit: usize,
        now: Millis,
        lease_for: Duration,
    ) -> StoreResult<Vec<ClaimedStep>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_queue(BEGIN_CLAIM).await?;
        let (claimed, notices) = queue::claim(&mut tx, stage, limit, now, lease_for).await?;
        self.commit(tx, notices).await?;
        Ok(claimed)
    }

    /// One transaction for the whole batch (one commit); if the batched write misses, a new
    /// transaction with each finish in its own savepoint. Finishes run in onboarding id order, the lock order of every multi-onboarding
    /// transaction, so two concurrent batches cannot deadlock; results come back in input
    /// order.
    async fn finish_steps(&self, finishes: Vec<StepFinish>) -> Vec<StoreResult<()>> {
        let n = finishes.len();
        if n == 0 {
            return Vec::new();
        }
        let mut tx = match self.begin_queue(BEGIN_WRITE).await {
            Ok(tx) => tx,
            Err(e) => return vec![Err(e); n],
        };
        let (mut results, notices) = match queue::finish_all(&mut tx, &finishes).await {
            Ok(Some(done)) => done,
            Ok(None) => {
                // What the batch wrote before it missed goes with this transaction.
                if let Err(e) = tx.rollback().await.map_err(db_error) {
                    return vec![Err(e); n];
                }
                tx = match self.begin_queue(BEGIN_WRITE).await {
                    Ok(tx) => tx,
                    Err(e) => return vec![Err(e); n],
                };
                one_at_a_time(&mut tx, finishes).await
            }
            Err(e) => return vec![Err(e); n],
        };
        if let Err(e) = self.commit(tx, notices).await {
            for result in &mut results {
                if result.is_ok() {
                    *result = Err(e.clone());
                }
            }
        }
        results
    }

    async fn expired_leases(&self, now: Millis, limit: usize) -> StoreResult<Vec<ClaimedStep>> {
        queue::expired_leases(&mut *self.connection().await?, now, limit).await
    }

    async fn unclaimed_since(
        &self,
        stage: &StageName,
        queued_before: Millis,
        limit: usize,
    ) -> StoreResult<Vec<StepRef>> {
        queue::unclaimed_since(&mut *self.connection().await?, stage, queued_before, limit).await
    }

    async fn retry_onboarding(
        &self,
        id: &OnboardingId,
        now: Millis,
        actor: &str,
    ) -> StoreResult<OnboardingRecord> {
        let mut tx = self.begin().await?;
        let (record, notices) = operations::retry(&mut tx, id, now, actor).await?;
        self.commit(tx, notices).await?;
        Ok(record)
    }

    async fn cancel_onboarding(
        &self,
        id: &OnboardingId,
        reason: &str,
        now: Millis,
        actor: &str,
    ) -> StoreResult<OnboardingRecord> {
        let mut tx = self.begin().await?;
        let (record, notices) = operations::cancel(&mut tx, id, reason, now, actor).await?;
        self.commit(tx, notices).await?;
        Ok(record)
    }

    async fn list_dead_letters(
        &self,
        stage: Option<&StageName>,
        page: &PageRequest<DeadLetterId>,
    ) -> StoreResult<Page<DeadLetterRecord, DeadLetterId>> {
        operations::list_dead_letters(&mut *self.connection().await?, stage, page).await
    }

    async fn replay_dead_letter(
        &self,
        id: &DeadLetterId,
        now: Millis,
        actor: &str,
    ) -> StoreResult<DeadLetterRecord> {
        let mut tx = self.begin().await?;
        let (dead, notices) = operations::replay_dead_letter(&mut tx, id, now, actor).await?;
        self.commit(tx, notices).await?;
        Ok(dead)
    }

    async fn discard_dead_letter(
        &self,
        id: &DeadLetterId,
        now: Millis,
        actor: &str,
    ) -> StoreResult<DeadLetterRecord> {
        let mut tx = self.begin().await?;
        let (dead, notices) = operations::discard_dead_letter(&mut tx, id, now, actor).await?;
        self.commit(tx, notices).await?;
        Ok(dead)
    }

    async fn replay_stage(&self, stage: &StageName, now: Millis, actor: &str) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let (replayed, notices) = operations::replay_stage(&mut tx, stage, now, actor).await?;
        self.commit(tx, notices).await?;
        Ok(replayed)
    }

    async fn stage_counts(&self) -> StoreResult<Vec<StageCounts>> {
        let mut tx = self.snapshot().await?;
        let counts = registry::stage_counts(&mut tx).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(counts)
    }

    async fn work_levels(&self, now: Millis) -> StoreResult<WorkLevels> {
        let mut tx = self.snapshot().await?;
        let levels = levels::work_levels(&mut tx, now).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(levels)
    }

    async fn set_stage_paused(
        &self,
        stage: &StageName,
        paused: bool,
        now: Millis,
        actor: &str,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let notices = registry::set_stage_paused(&mut tx, stage, paused, now).await?;
        admin_audit::append(&mut tx, admin::stage_paused(stage, paused, now, actor)).await?;
        self.commit(tx, notices).await
    }

    async fn paused_stages(&self) -> StoreResult<Vec<StageName>> {
        registry::paused_stages(&mut *self.connection().await?).await
    }

    async fn put_template(
        &self,
        name: &TemplateName,
        spec: &TemplateSpec,
        now: Millis,
        actor: &str,
    ) -> StoreResult<TemplateRecord> {
        let mut tx = self.begin().await?;
        let record = registry::put_template(&mut tx, name, spec, now, false, actor).await?;
        self.commit(tx, Notices::default()).await?;
        Ok(record)
    }

    async fn sync_template(
        &self,
        name: &TemplateName,
        spec: &TemplateSpec,
        now: Millis,
    ) -> StoreResult<TemplateRecord> {
        let mut tx = self.begin().await?;
        let record = registry::put_template(&mut tx, name, spec, now, true, "config").await?;
        self.commit(tx, Notices::default()).await?;
        Ok(record)
    }

    async fn get_template(
        &self,
        name: &TemplateName,
        version: Option<u32>,
    ) -> StoreResult<TemplateRecord> {
        registry::get_template(&mut *self.connection().await?, name, version).await
    }

    async fn template_versions(&self, name: &TemplateName) -> StoreResult<Vec<TemplateRecord>> {
        registry::template_versions(&mut *self.connection().await?, name).await
    }

    async fn list_templates(&self) -> StoreResult<Vec<TemplateRecord>> {
        registry::list_templates(&mut *self.connection().await?).await
    }

    async fn create_token(&self, token: NewToken) -> StoreResult<TokenRecord> {
        let entry = admin::token_created(&token);
        let mut tx = self.begin().await?;
        let record = registry::create_token(&mut tx, token).await?;
        admin_audit::append(&mut tx, entry).await?;
        self.commit(tx, Notices::default()).await?;
        Ok(record)
    }

    async fn token_by_hash(&self, hash: &str) -> StoreResult<Option<TokenRecord>> {
        registry::token_by_hash(&mut *self.connection().await?, hash).await
    }

    async fn list_tokens(&self) -> StoreResult<Vec<TokenRecord>> {
        registry::list_tokens(&mut *self.connection().await?).await
    }

    async fn revoke_token(&self, name: &str, now: Millis, actor: &str) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        registry::revoke_token(&mut tx, name, now).await?;
        admin_audit::append(&mut tx, admin::token_revoked(name, now, actor)).await?;
        self.commit(tx, Notices::default()).await
    }

    async fn admin_audit(&self, after: u64, limit: usize) -> StoreResult<Vec<AuditEntry>> {
        admin_audit::entries(&mut *self.connection().await?, after, limit).await
    }

    async fn status_changes(
        &self,
        id: &OnboardingId,
        after: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<StatusChange>> {
        events::status_changes(&mut *self.connection().await?, id, after, limit).await
    }

    async fn publish_events(
        &self,
        limit: usize,
        amqp: bool,
        now: Millis,
    ) -> StoreResult<Published> {
        let mut tx = self.begin().await?;
        let (published, notices) = events::publish(&mut tx, limit, amqp, now).await?;
        self.commit(tx, notices).await?;
        Ok(published)
    }

    async fn published_events(
        &self,
        after: i64,
        types: &[EventType],
        limit: usize,
    ) -> StoreResult<Vec<PublishedEvent>> {
        events::published_events(&mut *self.connection().await?, after, types, limit).await
    }

    async fn last_published_seq(&self) -> StoreResult<i64> {
        events::last_published_seq(&mut *self.connection().await?).await
    }

    async fn create_webhook(&self, new: NewWebhook) -> StoreResult<WebhookRecord> {
        let entry = admin::webhook_created(&new);
        let mut tx = self.begin().await?;
        let record = events::create_webhook(&mut tx, new).await?;
        admin_audit::append(&mut tx, entry).await?;
        self.commit(tx, Notices::default()).await?;
        Ok(record)
    }

    async fn list_webhooks(&self) -> StoreResult<Vec<WebhookRecord>> {
        events::list_webhooks(&mut *self.connection().await?).await
    }

    async fn get_webhook(&self, id: &WebhookId) -> StoreResult<WebhookRecord> {
        events::get_webhook(&mut *self.connection().await?, id).await
    }

    async fn delete_webhook(&self, id: &WebhookId, now: Millis, actor: &str) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        events::delete_webhook(&mut tx, id).await?;
        admin_audit::append(&mut tx, admin::webhook_deleted(id, now, actor)).await?;
        self.commit(tx, Notices::default()).await
    }

    async fn claim_deliveries(
        &self,
        target: &DeliveryTarget,
        limit: usize,
        now: Millis,
        lease_for: Duration,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let claimed = events::claim_deliveries(&mut tx, target, limit, now, lease_for).await?;
        self.commit(tx, Notices::default()).await?;
        Ok(claimed)
    }

    async fn finish_deliveries(&self, finishes: Vec<DeliveryFinish>) -> Vec<StoreResult<()>> {
        let n = finishes.len();
        if n == 0 {
            return Vec::new();
        }
        let mut conn = match self.connection().await {
            Ok(conn) => conn,
            Err(e) => return vec![Err(e); n],
        };
        events::finish_deliveries(&mut conn, &finishes)
            .await
            .unwrap_or_else(|e| vec![Err(e); n])
    }

    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        page: &PageRequest<DeliveryId>,
    ) -> StoreResult<Page<DeliveryRecord, DeliveryId>> {
        events::list_deliveries(&mut *self.connection().await?, filter, page).await
    }

    async fn replay_deliveries(
        &self,
        target: &DeliveryTarget,
        only: Option<&DeliveryId>,
        now: Millis,
    ) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let (replayed, notices) = events::replay_deliveries(&mut tx, target, only, now).await?;
        self.commit(tx, notices).await?;
        Ok(replayed)
    }

    async fn create_csr(
        &self,
        id: &CsrId,
        spec: &CsrSpec,
        now: Millis,
        actor: &str,
    ) -> StoreResult<CsrRecord> {
        let mut tx = self.begin().await?;
        let record = human::create_csr(&mut tx, id, spec, now).await?;
        admin_audit::append(&mut tx, admin::csr_created(id, spec, now, actor)).await?;
        self.commit(tx, Notices::default()).await?;
        Ok(record)
    }

    async fn get_csr(&self, id: &CsrId) -> StoreResult<CsrRecord> {
        human::get_csr(&mut *self.connection().await?, id).await
    }

    async fn list_csrs(&self, page: &PageRequest<CsrId>) -> StoreResult<Page<CsrRecord, CsrId>> {
        human::list_csrs(&mut *self.connection().await?, page).await
    }

    async fn update_csr(
        &self,
        id: &CsrId,
        spec: &CsrSpec,
        now: Millis,
        actor: &str,
    ) -> StoreResult<CsrRecord> {
        let mut tx = self.begin().await?;
        // Admin changes take turns from here, so `before` is what this change replaces.
        admin_audit::lock(&mut tx).await?;
        let before = human::get_csr(&mut tx, id).await?.spec;
        let record = human::update_csr(&mut tx, id, spec, now).await?;
        admin_audit::append(&mut tx, admin::csr_changed(id, &before, spec, now, actor)).await?;
        self.commit(tx, Notices::default()).await?;
        Ok(record)
    }

    async fn delete_csr(&self, id: &CsrId, now: Millis, actor: &str) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        human::delete_csr(&mut tx, id).await?;
        admin_audit::append(&mut tx, admin::csr_deleted(id, now, actor)).await?;
        self.commit(tx, Notices::default()).await
    }

    async fn assign_tasks(&self, now: Millis, limit: usize) -> StoreResult<Vec<TaskRecord>> {
        let mut tx = self.begin().await?;
        let (tasks, notices) = human::assign_tasks(&mut tx, now, limit).await?;
        self.commit(tx, notices).await?;
        Ok(tasks)
    }

    async fn assign_task(
        &self,
        id: &TaskId,
        csr: &CsrId,
        now: Millis,
        actor: &str,
    ) -> StoreResult<TaskRecord> {
        let mut tx = self.begin().await?;
        let (task, notices) = human::assign_task(&mut tx, id, csr, now, actor).await?;
        self.commit(tx, notices).await?;
        Ok(task)
    }

    async fn complete_task(
        &self,
        id: &TaskId,
        assignee: Option<&CsrId>,
        notes: Option<String>,
        now: Millis,
        actor: &str,
    ) -> StoreResult<TaskRecord> {
        let mut tx = self.begin().await?;
        let (task, notices) =
            human::complete_task(&mut tx, id, assignee, notes, now, actor).await?;
        self.commit(tx, notices).await?;
        Ok(task)
    }

    async fn get_task(&self, id: &TaskId) -> StoreResult<TaskRecord> {
        human::get_task(&mut *self.connection().await?, id).await
    }

    async fn list_tasks(
        &self,
        filter: &TaskFilter,
        page: &PageRequest<TaskId>,
    ) -> StoreResult<Page<TaskRecord, TaskId>> {
        human::list_tasks(&mut *self.connection().await?, filter, page).await
    }

    async fn csr_schedule(
        &self,
        csr: &CsrId,
        from: Millis,
        to: Millis,
    ) -> StoreResult<Vec<TaskRecord>> {
        human::csr_schedule(&mut *self.connection().await?, csr, from, to).await
    }

    async fn mark_overdue(&self, now: Millis, limit: usize) -> StoreResult<Vec<TaskRecord>> {
        let mut tx = self.begin().await?;
        let (tasks, notices) = human::mark_overdue(&mut tx, now, limit).await?;
        self.commit(tx, notices).await?;
        Ok(tasks)
    }

    async fn due_waits(&self, now: Millis, limit: usize) -> StoreResult<Vec<WaitingStep>> {
        human::due_waits(&mut *self.connection().await?, now, limit).await
    }

    async fn record_signal(
        &self,
        id: &OnboardingId,
        name: &str,
        sender_id: &str,
        payload: serde_json::Value,
        now: Millis,
        actor: &str,
    ) -> StoreResult<SignalReceipt> {
        let mut tx = self.begin().await?;
        let (receipt, notices) =
            human::record_signal(&mut tx, id, name, sender_id, &payload, now, actor).await?;
        self.commit(tx, notices).await?;
        Ok(receipt)
    }

    async fn take_signal(
        &self,
        id: &OnboardingId,
        seq: StepSeq,
        name: &str,
        now: Millis,
        actor: &str,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let (taken, notices) = human::take_signal(&mut tx, id, seq, name, now, actor).await?;
        self.commit(tx, notices).await?;
        Ok(taken)
    }
}
