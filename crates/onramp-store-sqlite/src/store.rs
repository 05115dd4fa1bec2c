//! [`SqliteStore`]: opening the file, the reader pool, and the `Store` impl that hands each
//! call to the module that does it.

use crate::writer::{AfterCommit, Writer};
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
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Read connections kept open for reuse.
const MAX_IDLE_READERS: usize = 8;

/// The SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    writer: Writer,
    readers: Arc<Mutex<Vec<Connection>>>,
    signals: Arc<Signals>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

/// When the last handle goes, fold the WAL back into the main file, so that a stopped onramp
/// leaves one complete database file (one that can be copied on its own as a backup). The
/// process usually exits before the writer thread closes its connection, which would
/// otherwise leave every recent commit only in `onramp.db-wal`.
impl Drop for SqliteStore {
    fn drop(&mut self) {
        let checkpoint = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .and_then(|conn| {
                conn.busy_timeout(Duration::from_secs(1))?;
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            });
        if let Err(e) = checkpoint {
            tracing::debug!(path = %self.path.display(), error = %e, "no WAL checkpoint at close");
        }
    }
}

/// The file path of a `sqlite://` URL: `sqlite://onramp.db` is relative,
/// `sqlite:///var/lib/onramp.db` absolute. Query parameters are ignored.
pub fn path_from_url(url: &str) -> Result<PathBuf, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::Unavailable(format!("`{url}` is not a sqlite:// URL")))?;
    let rest = rest.split('?').next().unwrap_or_default();
    if rest.is_empty() || rest == ":memory:" {
        return Err(StoreError::Unavailable(
            "a SQLite URL needs a file path, e.g. sqlite://onramp.db".into(),
        ));
    }
    Ok(PathBuf::from(rest))
}

fn configure(conn: &Connection, writer: bool) -> Result<(), StoreError> {
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(db_error)?;
    conn.execute_batch("PRAGMA foreign_keys = ON;")
        .map_err(db_error)?;
    if writer {
        // WAL lets readers run beside the writer; FULL syncs the WAL on every commit, so a
        // commit survives power loss, not only a process crash.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(db_error)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable(format!(
                "could not switch the database to WAL mode (got {mode})"
            )));
        }
        conn.execute_batch("PRAGMA synchronous = FULL;")
            .map_err(db_error)?;
        // Every job runs in a savepoint; its statement journal belongs in memory, not in a
        // temporary file written (and discarded) on each job.
        conn.execute_batch("PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16384;")
            .map_err(db_error)?;
    } else {
        conn.execute_batch("PRAGMA query_only = ON;")
            .map_err(db_error)?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at a `sqlite://` URL and brings its schema up
    /// to date. A damaged or locked file is a clear error, never a panic.
    pub async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        let path = path_from_url(url)?;
        tokio::task::spawn_blocking(move || Self::open_blocking(&path))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?
    }

    fn open_blocking(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.exists()
        {
            return Err(StoreError::Unavailable(format!(
                "the directory {} does not exist",
                parent.display()
            )));
        }
        let mut conn = Connection::open(path).map_err(db_error)?;
        configure(&conn, true)?;
        migrate::migrate(&mut conn).map_err(|e| {
            if e.contains("not a database") || e.contains("malformed") {
                StoreError::Corrupt(format!("{}: {e}", path.display()))
            } else {
                StoreError::Unavailable(format!("{}: {e}", path.display()))
            }
        })?;
        let writer = Writer::start(conn).map_err(|e| StoreError::Internal(e.to_string()))?;
        Ok(SqliteStore {
            path: path.to_owned(),
            writer,
            readers: Arc::new(Mutex::new(Vec::new())),
            signals: Arc::new(Signals::default()),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a read-only connection on the blocking pool.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().pop();
            let conn = match pooled {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(db_error)?;
                    configure(&c, false)?;
                    c
                }
            };
            let result = f(&conn);
            let mut idle = readers.lock();
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
    }

    /// Runs `f` in the writer's next transaction; `f` reports what it woke and changed so
    /// that the notifications go out after the commit.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<(T, Notices)> + Send + 'static,
    {
        let signals = self.signals.clone();
        self.writer
            .write(move |conn| {
                let (value, notices) = f(conn)?;
                let after: Option<AfterCommit> = if notices.is_empty() {
                    None
                } else {
                    Some(Box::new(move || notices.send(&signals)))
                };
                Ok((value, after))
            })
            .await
    }
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
    fn is_empty(&self) -> bool {
        self.wake.is_empty() && self.changed.is_empty() && !self.published
    }

    /// Adds another write's notices.
    pub fn merge(&mut self, other: Notices) {
        self.wake.extend(other.wake);
        self.changed.extend(other.changed);
        self.published |= other.published;
    }

    fn send(self, signals: &Signals) {
        let mut woken: Vec<&StageName> = Vec::new();
        for stage in &self.wake {
            if !woken.contains(&stage) {
                signals.wake(stage);
                woken.push(stage);
            }
        }
        for change in self.changed {
            signals.changed(change);
        }
        if self.published {
            signals.published();
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn signals(&self) -> Arc<Signals> {
        self.signals.clone()
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(db_error))
            .await
    }

    async fn create_onboarding(
        &self,
        new: NewOnboarding,
        idempotency: Option<IdempotencyClaim>,
    ) -> StoreResult<Created> {
        self.write(move |c| onboardings::create(c, new, idempotency))
            .await
    }

    async fn get_onboarding(&self, id: &OnboardingId) -> StoreResult<OnboardingRecord> {
        let id = id.clone();
        self.read(move |c| onboardings::get(c, &id)).await
    }

    async fn list_onboardings(
        &self,
        filter: &OnboardingFilter,
        page: &PageRequest<OnboardingId>,
    ) -> StoreResult<Page<OnboardingRecord, OnboardingId>> {
        let (filter, page) = (filter.clone(), page.clone());
        self.read(move |c| onboardings::list(c, &filter, &page))
            .await
    }

    async fn onboarding_counts(&self) -> StoreResult<Vec<(OnboardingStatus, u64)>> {
        self.read(onboardings::counts).await
    }

    async fn audit_entries(&self, id: &OnboardingId) -> StoreResult<Vec<AuditEntry>> {
        let id = id.clone();
        self.read(move |c| onboardings::audit_entries(c, &id)).await
    }

    async fn onboarding_ids(
        &self,
        after: Option<&OnboardingId>,
        limit: usize,
    ) -> StoreResult<Vec<OnboardingId>> {
        let after = after.cloned();
        self.read(move |c| onboardings::ids(c, after.as_ref(), limit))
            .await
    }

    async fn claim(
        &self,
        stage: &StageName,
        limit: usize,
        now: Millis,
        lease_for: Duration,
    ) -> StoreResult<Vec<ClaimedStep>> {
        let stage = stage.clone();
        self.write(move |c| queue::claim(c, &stage, limit, now, lease_for))
            .await
    }

    async fn finish_steps(&self, finishes: Vec<StepFinish>) -> Vec<StoreResult<()>> {
        // One job per finish: the writer puts them in one transaction anyway, and a refused
        // finish rolls back only its own savepoint.
        let jobs = finishes
            .into_iter()
            .map(|f| self.write(move |c| queue::finish(c, f)));
        futures::future::join_all(jobs).await
    }

    async fn expired_leases(&self, now: Millis, limit: usize) -> StoreResult<Vec<ClaimedStep>> {
        self.read(move |c| queue::expired_leases(c, now, limit))
            .await
    }

    async fn unclaimed_since(
        &self,
        stage: &StageName,
        queued_before: Millis,
        limit: usize,
    ) -> StoreResult<Vec<StepRef>> {
        let stage = stage.clone();
        self.read(move |c| queue::unclaimed_since(c, &stage, queued_before, limit))
            .await
    }

    async fn retry_onboarding(
        &self,
        id: &OnboardingId,
        now: Millis,
        actor: &str,
    ) -> StoreResult<OnboardingRecord> {
        let (id, actor) = (id.clone(), actor.to_owned());
        self.write(move |c| operations::retry(c, &id, now, &actor))
            .await
    }

    async fn cancel_onboarding(
        &self,
        id: &OnboardingId,
        reason: &str,
        now: Millis,
        actor: &str,
    ) -> StoreResult<OnboardingRecord> {
        let (id, reason, actor) = (id.clone(), reason.to_owned(), actor.to_owned());
        self.write(move |c| operations::cancel(c, &id, &reason, now, &actor))
            .await
    }

    async fn list_dead_letters(
        &self,
        stage: Option<&StageName>,
        page: &PageRequest<DeadLetterId>,
    ) -> StoreResult<Page<DeadLetterRecord, DeadLetterId>> {
        let (stage, page) = (stage.cloned(), page.clone());
        self.read(move |c| operations::list_dead_letters(c, stage.as_ref(), &page))
            .await
    }

    async fn replay_dead_letter(
        &self,
        id: &DeadLetterId,
        now: Millis,
        actor: &str,
    ) -> StoreResult<DeadLetterRecord> {
        let (id, actor) = (id.clone(), actor.to_owned());
        self.write(move |c| operations::replay_dead_letter(c, &id, now, &actor))
            .await
    }

    async fn discard_dead_letter(
        &self,
        id: &DeadLetterId,
        now: Millis,
        actor: &str,
    ) -> StoreResult<DeadLetterRecord> {
        let (id, actor) = (id.clone(), actor.to_owned());
        self.write(move |c| operations::discard_dead_letter(c, &id, now, &actor))
            .await
    }

    async fn replay_stage(&self, stage: &StageName, now: Millis, actor: &str) -> StoreResult<u64> {
        let (stage, actor) = (stage.clone(), actor.to_owned());
        self.write(move |c| operations::replay_stage(c, &stage, now, &actor))
            .await
    }

    async fn stage_counts(&self) -> StoreResult<Vec<StageCounts>> {
        self.read(registry::stage_counts).await
    }

    async fn work_levels(&self, now: Millis) -> StoreResult<WorkLevels> {
        self.read(move |c| levels::work_levels(c, now)).await
    }

    async fn set_stage_paused(
        &self,
        stage: &StageName,
        paused: bool,
        now: Millis,
        actor: &str,
    ) -> StoreResult<()> {
        let entry = admin::stage_paused(stage, paused, now, actor);
        let stage = stage.clone();
        self.write(move |c| {
            let done = registry::set_stage_paused(c, &stage, paused, now)?;
            admin_audit::append(c, entry)?;
            Ok(done)
        })
        .await
    }

    async fn paused_stages(&self) -> StoreResult<Vec<StageName>> {
        self.read(registry::paused_stages).await
    }

    async fn put_template(
        &self,
        name: &TemplateName,
        spec: &TemplateSpec,
        now: Millis,
        actor: &str,
    ) -> StoreResult<TemplateRecord> {
        let (name, spec, actor) = (name.clone(), spec.clone(), actor.to_owned());
        self.write(move |c| registry::put_template(c, &name, &spec, now, false, &actor))
            .await
    }

    async fn sync_template(
        &self,
        name: &TemplateName,
        spec: &TemplateSpec,
        now: Millis,
    ) -> StoreResult<TemplateRecord> {
        let (name, spec) = (name.clone(), spec.clone());
        self.write(move |c| registry::put_template(c, &name, &spec, now, true, "config"))
            .await
    }

    async fn get_template(
        &self,
        name: &TemplateName,
        version: Option<u32>,
    ) -> StoreResult<TemplateRecord> {
        let name = name.clone();
        self.read(move |c| registry::get_template(c, &name, version))
            .await
    }

    async fn template_versions(&self, name: &TemplateName) -> StoreResult<Vec<TemplateRecord>> {
        let name = name.clone();
        self.read(move |c| registry::template_versions(c, &name))
            .await
    }

    async fn list_templates(&self) -> StoreResult<Vec<TemplateRecord>> {
        self.read(registry::list_templates).await
    }

    async fn create_token(&self, token: NewToken) -> StoreResult<TokenRecord> {
        let entry = admin::token_created(&token);
        self.write(move |c| {
            let created = registry::create_token(c, token)?;
            admin_audit::append(c, entry)?;
            Ok(created)
        })
        .await
    }

    async fn token_by_hash(&self, hash: &str) -> StoreResult<Option<TokenRecord>> {
        let hash = hash.to_owned();
        self.read(move |c| registry::token_by_hash(c, &hash)).await
    }

    async fn list_tokens(&self) -> StoreResult<Vec<TokenRecord>> {
        self.read(registry::list_tokens).await
    }

    async fn revoke_token(&self, name: &str, now: Millis, actor: &str) -> StoreResult<()> {
        let entry = admin::token_revoked(name, now, actor);
        let name = name.to_owned();
        self.write(move |c| {
            let done = registry::revoke_token(c, &name, now)?;
            admin_audit::append(c, entry)?;
            Ok(done)
        })
        .await
    }

    async fn admin_audit(&self, after: u64, limit: usize) -> StoreResult<Vec<AuditEntry>> {
        self.read(move |c| admin_audit::entries(c, after, limit))
            .await
    }

    async fn status_changes(
        &self,
        id: &OnboardingId,
        after: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<StatusChange>> {
        let id = id.clone();
        self.read(move |c| events::status_changes(c, &id, after, limit))
            .await
    }

    async fn publish_events(
        &self,
        limit: usize,
        amqp: bool,
        now: Millis,
    ) -> StoreResult<Published> {
        self.write(move |c| events::publish(c, limit, amqp, now))
            .await
    }

    async fn published_events(
        &self,
        after: i64,
        types: &[EventType],
        limit: usize,
    ) -> StoreResult<Vec<PublishedEvent>> {
        let types = types.to_vec();
        self.read(move |c| events::published_events(c, after, &types, limit))
            .await
    }

    async fn last_published_seq(&self) -> StoreResult<i64> {
        self.read(events::last_published_seq).await
    }

    async fn create_webhook(&self, new: NewWebhook) -> StoreResult<WebhookRecord> {
        let entry = admin::webhook_created(&new);
        self.write(move |c| {
            let created = events::create_webhook(c, new)?;
            admin_audit::append(c, entry)?;
            Ok(created)
        })
        .await
    }

    async fn list_webhooks(&self) -> StoreResult<Vec<WebhookRecord>> {
        self.read(events::list_webhooks).await
    }

    async fn get_webhook(&self, id: &WebhookId) -> StoreResult<WebhookRecord> {
        let id = id.clone();
        self.read(move |c| events::get_webhook(c, &id)).await
    }

    async fn delete_webhook(&self, id: &WebhookId, now: Millis, actor: &str) -> StoreResult<()> {
        let entry = admin::webhook_deleted(id, now, actor);
        let id = id.clone();
        self.write(move |c| {
            let done = events::delete_webhook(c, &id)?;
            admin_audit::append(c, entry)?;
            Ok(done)
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        target: &DeliveryTarget,
        limit: usize,
        now: Millis,
        lease_for: Duration,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        let target = target.clone();
        self.write(move |c| events::claim_deliveries(c, &target, limit, now, lease_for))
            .await
    }

    async fn finish_deliveries(&self, finishes: Vec<DeliveryFinish>) -> Vec<StoreResult<()>> {
        let jobs = finishes
            .into_iter()
            .map(|f| self.write(move |c| events::finish_delivery(c, f)));
        futures::future::join_all(jobs).await
    }

    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        page: &PageRequest<DeliveryId>,
    ) -> StoreResult<Page<DeliveryRecord, DeliveryId>> {
        let (filter, page) = (filter.clone(), page.clone());
        self.read(move |c| events::list_deliveries(c, &filter, &page))
            .await
    }

    async fn replay_deliveries(
        &self,
        target: &DeliveryTarget,
        only: Option<&DeliveryId>,
        now: Millis,
    ) -> StoreResult<u64> {
        let (target, only) = (target.clone(), only.cloned());
        self.write(move |c| events::replay_deliveries(c, &target, only.as_ref(), now))
            .await
    }

    async fn create_csr(
        &self,
        id: &CsrId,
        spec: &CsrSpec,
        now: Millis,
        actor: &str,
    ) -> StoreResult<CsrRecord> {
        let entry = admin::csr_created(id, spec, now, actor);
        let (id, spec) = (id.clone(), spec.clone());
        self.write(move |c| {
            let created = human::create_csr(c, &id, &spec, now)?;
            admin_audit::append(c, entry)?;
            Ok(created)
        })
        .await
    }

    async fn get_csr(&self, id: &CsrId) -> StoreResult<CsrRecord> {
        let id = id.clone();
        self.read(move |c| human::get_csr(c, &id)).await
    }

    async fn list_csrs(&self, page: &PageRequest<CsrId>) -> StoreResult<Page<CsrRecord, CsrId>> {
        let page = page.clone();
        self.read(move |c| human::list_csrs(c, &page)).await
    }

    async fn update_csr(
        &self,
        id: &CsrId,
        spec: &CsrSpec,
        now: Millis,
        actor: &str,
    ) -> StoreResult<CsrRecord> {
        let (id, spec, actor) = (id.clone(), spec.clone(), actor.to_owned());
        self.write(move |c| {
            let before = human::get_csr(c, &id)?.spec;
            let updated = human::update_csr(c, &id, &spec, now)?;
            admin_audit::append(c, admin::csr_changed(&id, &before, &spec, now, &actor))?;
            Ok(updated)
        })
        .await
    }

    async fn delete_csr(&self, id: &CsrId, now: Millis, actor: &str) -> StoreResult<()> {
        let entry = admin::csr_deleted(id, now, actor);
        let id = id.clone();
        self.write(move |c| {
            let done = human::delete_csr(c, &id, now)?;
            admin_audit::append(c, entry)?;
            Ok(done)
        })
        .await
    }

    async fn assign_tasks(&self, now: Millis, limit: usize) -> StoreResult<Vec<TaskRecord>> {
        self.write(move |c| human::assign_tasks(c, now, limit))
            .await
    }

    async fn assign_task(
        &self,
        id: &TaskId,
        csr: &CsrId,
        now: Millis,
        actor: &str,
    ) -> StoreResult<TaskRecord> {
        let (id, csr, actor) = (id.clone(), csr.clone(), actor.to_owned());
        self.write(move |c| human::assign_task(c, &id, &csr, now, &actor))
            .await
    }

    async fn complete_task(
        &self,
        id: &TaskId,
        assignee: Option<&CsrId>,
        notes: Option<String>,
        now: Millis,
        actor: &str,
    ) -> StoreResult<TaskRecord> {
        let (id, assignee, actor) = (id.clone(), assignee.cloned(), actor.to_owned());
        self.write(move |c| human::complete_task(c, &id, assignee.as_ref(), notes, now, &actor))
            .await
    }

    async fn get_task(&self, id: &TaskId) -> StoreResult<TaskRecord> {
        let id = id.clone();
        self.read(move |c| human::get_task(c, &id)).await
    }

    async fn list_tasks(
        &self,
        filter: &TaskFilter,
        page: &PageRequest<TaskId>,
    ) -> StoreResult<Page<TaskRecord, TaskId>> {
        let (filter, page) = (filter.clone(), page.clone());
        self.read(move |c| human::list_tasks(c, &filter, &page))
            .await
    }

    async fn csr_schedule(
        &self,
        csr: &CsrId,
        from: Millis,
        to: Millis,
    ) -> StoreResult<Vec<TaskRecord>> {
        let csr = csr.clone();
        self.read(move |c| human::csr_schedule(c, &csr, from, to))
            .await
    }

    async fn mark_overdue(&self, now: Millis, limit: usize) -> StoreResult<Vec<TaskRecord>> {
        self.write(move |c| human::mark_overdue(c, now, limit))
            .await
    }

    async fn due_waits(&self, now: Millis, limit: usize) -> StoreResult<Vec<WaitingStep>> {
        self.read(move |c| human::due_waits(c, now, limit)).await
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
        let (id, name, sender_id, actor) = (
            id.clone(),
            name.to_owned(),
            sender_id.to_owned(),
            actor.to_owned(),
        );
        self.write(move |c| human::record_signal(c, &id, &name, &sender_id, &payload, now, &actor))
            .await
    }

    async fn take_signal(
        &self,
        id: &OnboardingId,
        seq: StepSeq,
        name: &str,
        now: Millis,
        actor: &str,
    ) -> StoreResult<bool> {
        let (id, name, actor) = (id.clone(), name.to_owned(), actor.to_owned());
        self.write(move |c| human::take_signal(c, &id, seq, &name, now, &actor))
            .await
    }
}
