//! The store conformance suite against a real PostgreSQL server, plus what only PostgreSQL
//! shows: the database itself refuses audit tampering, state survives reopening, several
//! processes (store instances) share one database — migrating, claiming and waking each other
//! — and a store recovers after its connections are killed.
//!
//! Every test gets its own fresh database on the server named by `ONRAMP_TEST_POSTGRES_URL`;
//! without that variable each test prints a skip line and passes.

use onramp_core::StageName;
use onramp_core::audit::verify_chain;
use onramp_core::outcome::Resolution;
use onramp_store::conformance::{self, LEASE, T0};
use onramp_store::{
    Created, IdempotencyClaim, OnboardingRecord, SharedStore, StepFinish, StepGuard, StepRef,
    Store, StoreError,
};
use onramp_store_postgres::PostgresStore;
use onramp_store_postgres::testing::FreshDatabase;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

async fn open(db: &FreshDatabase) -> PostgresStore {
    PostgresStore::open(db.url()).await.expect("open store")
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let Some(db) = FreshDatabase::from_env().await else { return };
                let store: SharedStore = Arc::new(open(&db).await);
                conformance::$name(store).await;
            }
        )*

        /// The checks this file runs, to compare with the suite's list.
        const RUN_HERE: &[&str] = &[$(stringify!($name)),*];
    };
}

conformance!(
    create_then_get_round_trips,
    create_without_steps_is_refused,
    idempotent_create_replays_the_same_request_and_refuses_another,
    concurrent_creates_with_one_key_make_exactly_one_onboarding,
    concurrent_claimers_take_every_step_exactly_once,
    claim_takes_higher_priority_first_then_oldest,
    claim_skips_steps_not_yet_due,
    stale_lease_is_reclaimed_and_old_worker_fenced,
    successful_steps_advance_and_complete_the_onboarding,
    dead_letter_fails_the_onboarding_and_retry_requeues_it,
    dead_letters_can_be_replayed_and_discarded,
    cancel_skips_remaining_steps,
    paused_stage_state_is_kept,
    audit_entries_chain_and_verify,
    templates_are_versioned,
    tokens_are_found_by_hash_and_revoked,
    unclaimed_since_finds_steps_queued_too_long,
    list_onboardings_filters_and_pages,
    cancel_compensates_succeeded_steps_in_reverse_through_the_queue,
    a_dead_compensation_is_replayed_and_the_cancel_finishes,
    on_failure_compensate_undoes_what_ran_when_a_step_dead_letters,
    onboardings_are_counted_by_status,
    admin_actions_chain_in_one_audit_log,
    work_levels_count_open_work,
    status_changes_record_every_visible_change,
    publication_orders_events_and_fans_out_to_subscribers,
    deliveries_keep_each_onboardings_order_and_fence_stale_leases,
    failed_deliveries_retry_die_and_replay,
    webhooks_are_created_listed_and_deleted,
    concurrent_delivery_claimers_take_each_delivery_once,
    human_tasks_are_assigned_within_capacity_and_completed,
    signals_are_kept_deduplicated_and_taken_once,
);

#[test]
fn every_conformance_check_runs_against_postgres() {
    let suite: Vec<&str> = conformance::ALL.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        suite, RUN_HERE,
        "add the new check to the conformance! list above"
    );
}

fn stage(name: &str) -> StageName {
    name.parse().expect("stage name")
}

async fn create(store: &PostgresStore, steps: &[(&str, &str)]) -> OnboardingRecord {
    match store
        .create_onboarding(conformance::new_onboarding(steps, 0, T0), None)
        .await
        .expect("create")
    {
        Created::New(record) => record,
        other => panic!("expected a new onboarding, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_table_refuses_update_and_delete() {
    let Some(db) = FreshDatabase::from_env().await else {
        return;
    };
    let store = open(&db).await;
    let record = create(&store, &[("a", "s1")]).await;
    let before = store.audit_entries(&record.id).await.expect("audit");
    assert!(!before.is_empty());

    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    let update = sqlx::query("UPDATE audit SET actor = 'mallory' WHERE onboarding_id = $1")
        .bind(record.id.as_str())
        .execute(&mut conn)
        .await;
    let err = update.expect_err("UPDATE on audit must fail").to_string();
    assert!(err.contains("append-only"), "{err}");
    let delete = sqlx::query("DELETE FROM audit WHERE onboarding_id = $1")
        .bind(record.id.as_str())
        .execute(&mut conn)
        .await;
    let err = delete.expect_err("DELETE on audit must fail").to_string();
    assert!(err.contains("append-only"), "{err}");
    let truncate = sqlx::query("TRUNCATE audit").execute(&mut conn).await;
    let err = truncate
        .expect_err("TRUNCATE on audit must fail")
        .to_string();
    assert!(err.contains("append-only"), "{err}");

    assert_eq!(
        store.audit_entries(&record.id).await.expect("audit"),
        before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboardings_and_paused_stages_survive_reopening() {
    let Some(db) = FreshDatabase::from_env().await else {
        return;
    };
    let store = open(&db).await;
    let record = create(&store, &[("a", "s1")]).await;
    store
        .set_stage_paused(&stage("billing"), true, T0, "test")
        .await
        .expect("pause");
    drop(store);

    let reopened = open(&db).await;
    assert_eq!(
        reopened.get_onboarding(&record.id).await.expect("get"),
        record
    );
    assert_eq!(
        reopened.paused_stages().await.expect("paused"),
        vec![stage("billing")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_starting_together_migrate_once() {
    let Some(db) = FreshDatabase::from_env().await else {
        return;
    };
    let opened = futures::future::join_all((0..4).map(|_| PostgresStore::open(db.url()))).await;
    let stores: Vec<PostgresStore> = opened
        .into_iter()
        .map(|s| s.expect("every process opens"))
        .collect();
    let versions: Vec<i32> =
        sqlx::query_scalar("SELECT version FROM onramp_schema_migrations ORDER BY version")
            .fetch_all(stores[0].pool())
            .await
            .expect("versions");
    // Every migration applied exactly once, in order.
    assert_eq!(
        versions,
        vec![1, 2, 3, 4, 5, 6],
        "each migration applied once"
    );
    let record = create(&stores[1], &[("a", "s1")]).await;
    assert_eq!(
        stores[3].get_onboarding(&record.id).await.expect("get"),
        record
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_a_newer_onramp_is_refused() {
    let Some(db) = FreshDatabase::from_env().await else {
        return;
    };
    let store = open(&db).await;
    sqlx::query("INSERT INTO onramp_schema_migrations (version) VALUES (999)")
        .execute(store.pool())
        .await
        .expect("pretend a newer schema");
    drop(store);
    let err = PostgresStore::open(db.url())
        .await
        .expect_err("must refuse a newer schema");
    assert!(err.to_string().contains("newer"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_creates_with_one_key_make_one_onboarding() {
    let Some(db) = FreshDatabase::from_env().await else {
        return;
    };
    let store = Arc::new(open(&db).await);
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..20 {
        let store = store.clone();
        creates.spawn(async move {
            store
                .create_onboarding(
                    conformance::new_onboarding(
                        &[("a", "s1")],
                        0,
                        T0.plus(Duration::from_millis(i)),
                    ),
                    Some(IdempotencyClaim {
                        scope: "svc".into(),
                        key: "signup-4711".into(),
                        request_hash: "h".into(),
                    }),
                )
                .await
        });
    }
    let (mut new, mut replayed) = (0, 0);
    while let Some(joined) = creates.join_next().await {
        match joined.expect("task").expect("create") {
            Created::New(_) => new += 1,
            Created::Replayed(_) => replayed += 1,
        }
    }
    assert_eq!((new, replayed), (1, 19));
    assert_eq!(store.onboarding_ids(None, 100).await.expect("ids").len(), 1);
}

/// Two processes claiming from one stage at once: every step is claimed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claimers_in_two_processes_take_every_step_once() {
    let Some(db) = FreshDatabase::from_env().await else {
        return;
    };
    let a = Arc::new(open(&db).await);
    let b = Arc::new(open(&db).await);
    const STEPS: usize = 120;
    for _ in 0..STEPS {
        create(&a, &[("a", "shared")]).await;
    }
    let mut claimers = tokio::task::JoinSet::new();
    for store in [a.clone(), b.clone(), a.clone(), b.clone()] {
        claimers.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store
                    .claim(&stage("shared"), 5, T0.plus(LEASE), LEASE)
                    .await
                    .expect("claim");
                if batch.is_empty() {
                    break mine;
                }
                mine.extend(batch.into_iter().map(|c| c.step_id));
            }
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = claimers.join_next().await {
        all.extend(joined.expect("claimer"));
    }
    let distinct: HashSet<_> = all.iter().cloned().collect();
    assert_eq!((all.len(), distinct.len()), (STEPS, STEPS));
}

/// Finishes, cancels and retries racing on the same onboardings from two processes never
/// fork an audit chain: every chain verifies afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_transitions_on_one_onboarding_keep_its_audit_chain_whole() {
    let Some(db) = FreshDatabase::from_env().await else {
        return;
    };
    let a = Arc::new(open(&db).await);
    let b = Arc::new(open(&db).await);
    const ONBOARDINGS: usize = 20;
    let mut ids = Vec::new();
    for _ in 0..ONBOARDINGS {
        ids.push(create(&a, &[("a", "race"), ("b", "race")]).await.id);
    }
    let claimed = a
        .claim(&stage("race"), ONBOARDINGS, T0.plus(LEASE), LEASE)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), ONBOARDINGS);
    let now = T0.plus(LEASE * 2);
    let mut racers = tokio::task::JoinSet::new();
    for step in claimed {
        let finish = StepFinish {
            step: StepRef {
                onboarding_id: step.onboarding_id.clone(),
                seq: step.seq,
                stage: step.stage.clone(),
            },
            guard: StepGuard::Lease(step.lease),
            resolution: Resolution::Succeed(json!({"ok": true})),
            now,
            actor: "worker".into(),
        };
        let finisher = a.clone();
        racers.spawn(async move {
            let mut results = finisher.finish_steps(vec![finish]).await;
            match results.remove(0) {
                Ok(()) | Err(StoreError::Conflict(_)) => {}
                Err(e) => panic!("a finish failed unexpectedly: {e}"),
            }
        });
        let canceller = b.clone();
        let id = step.onboarding_id.clone();
        racers.spawn(async move {
            // Whatever ran first, the onboarding is not terminal yet: the cancel must apply.
            canceller
                .cancel_onboarding(&id, "race", now, "token:ops")
                .await
                .expect("cancel");
        });
        let claimer = b.clone();
        racers.spawn(async move {
            claimer
                .claim(&stage("race"), 2, now, LEASE)
                .await
                .expect("claim");
        });
    }
    while let Some(joined) = racers.join_next().await {
        joined.expect("racer");
    }
    for id in &ids {
        let record = b.get_onboarding(id).await.expect("get");
        assert_eq!(
            record.status,
            onramp_core::onboarding::OnboardingStatus::Cancelled
        );
        let entries = a.audit_entries(id).await.expect("audit");
        verify_chain(&entries).expect("the chain verifies");
        let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=entries.len() as u64).collect::<Vec<_>>());
    }
}

/// A create in process A wakes process B's workers of that stage, and B hears of the new
/// onboarding, through LISTEN/NOTIFY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_in_one_process_wakes_another() {
    let Some(db) = FreshDatabase::from_env().await else {
        return;
    };
    let a = open(&db).await;
    let b = open(&db).await;
    let wake = b.signals().stage(&stage("verification"));
    let mut changes = b.signals().subscribe();

    let record = create(&a, &[("verify", "verification")]).await;
    tokio::time::timeout(Duration::from_secs(1), wake.notified())
        .await
        .expect("B's verification workers are woken within 1 s");
    let change = tokio::time::timeout(Duration::from_secs(1), changes.recv())
        .await
        .expect("B hears of the change within 1 s")
        .expect("change");
    assert_eq!(change.id, record.id);
}

/// A process does not hear its own changes twice (once from its commit, once from the
/// database), so counting changes counts each one once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_announces_its_own_changes_once() {
    let Some(db) = FreshDatabase::from_env().await else {
        return;
    };
    let a = open(&db).await;
    let b = open(&db).await;
    let mut heard_by_a = a.signals().subscribe();
    let own = create(&a, &[("x", "s1")]).await;
    let claimed = a.claim(&stage("s1"), 1, T0, LEASE).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    let from_b = create(&b, &[("x", "s2")]).await;
    // A's listener hears the database's notifications in commit order: A's own (to be
    // passed over), then B's. So what A hears after its own last change (the claim that set
    // it running) must be B's change, not a repeat of its own.
    loop {
        let change = heard_by_a.recv().await.expect("A's own changes");
        assert_eq!(change.id, own.id);
        if change.status == onramp_core::onboarding::OnboardingStatus::Running {
            break;
        }
    }
    let next = tokio::time::timeout(Duration::from_secs(1), heard_by_a.recv())
        .await
        .expect("A hears B's change within 1 s")
        .expect("change");
    assert_eq!(next.id, from_b.id, "A heard its own change twice");
}

async fn kill_other_connections(db: &FreshDatabase) {
    let mut admin = PgConnection::connect(db.url()).await.expect("connect");
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await
    .expect("terminate");
    assert!(!killed.is_empty(), "the stores had connections to kill");
    let _ = admin.close().await;
}

/// Retries `attempt` for up to 5 s while it fails.
async fn within_five_seconds<T, F, Fut>(mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the store did not recover within 5 s: {e}"),
        }
    }
}

/// After every connection is killed (as in a database restart), the store works again and
/// its listener hears other processes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_recovers_after_its_connections_are_killed() {
    let Some(db) = FreshDatabase::from_env().await else {
        return;
    };
    let a = open(&db).await;
    let b = open(&db).await;
    let before = create(&a, &[("a", "s1")]).await;

    kill_other_connections(&db).await;

    let read = within_five_seconds(|| a.get_onboarding(&before.id)).await;
    assert_eq!(read, before);
    within_five_seconds(|| {
        a.create_onboarding(conformance::new_onboarding(&[("a", "s1")], 0, T0), None)
    })
    .await;

    let wake = b.signals().stage(&stage("after_restart"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        within_five_seconds(|| {
            a.create_onboarding(
                conformance::new_onboarding(&[("a", "after_restart")], 0, T0),
                None,
            )
        })
        .await;
        if tokio::time::timeout(Duration::from_millis(250), wake.notified())
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "B's listener did not come back within 5 s"
        );
    }
}

/// Claims and finishes reach their rows through the keys' indexes even when their plans were
/// made while the tables were empty. PostgreSQL keeps a prepared statement's generic plan
/// (made after its fifth execution) for the connection's life; made on empty tables it was a
/// sequential scan of `steps` on every batch write, long after the tables had filled (see
/// `SESSION_OPTIONS` in `store.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_made_on_empty_tables_still_use_the_keys_once_the_tables_fill() {
    let Some(db) = FreshDatabase::from_env().await else {
        return;
    };
    // Three connections: one for the queue, so every claim and finish reuses its statements.
    let store = PostgresStore::open_with(db.url(), 3)
        .await
        .expect("open store");
    let mut admin = PgConnection::connect(db.url()).await.expect("connect");
    for table in ["onboardings", "steps", "audit"] {
        // An ANALYZE would replace the plans and hide a bad one.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE {table} SET (autovacuum_enabled = false)"
        )))
        .execute(&mut admin)
        .await
        .expect("autovacuum off");
    }
    // Well past five executions of every claim and finish statement, on empty tables.
    run_two_step_onboardings(&store, 8).await;

    let filler = 20_000;
    sqlx::query(
        "INSERT INTO onboardings (id, customer, customer_name, customer_email, status,
                                  current_seq, succeeded_steps, total_steps, created_at,
                                  updated_at, completed_at)
         SELECT 'filler-' || n, '{}', 'Filler', 'filler@example.com', 'completed', 1, 1, 1, 0,
                0, 0
         FROM generate_series(1, $1) AS n",
    )
    .bind(filler)
    .execute(&mut admin)
    .await
    .expect("fill onboardings");
    sqlx::query(
        "INSERT INTO steps (id, onboarding_id, seq, task, stage, kind, status, attempts)
         SELECT 'filler-step-' || n, 'filler-' || n, 1, 'a', 's1', 'sim', 'succeeded', 1
         FROM generate_series(1, $1) AS n",
    )
    .bind(filler)
    .execute(&mut admin)
    .await
    .expect("fill steps");

    run_two_step_onboardings(&store, 8).await;
    // Closing the connections makes their backends report their statistics.
    store.close().await;
    let inserted_steps = i64::from(filler) + 2 * 16;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let scanned: i64 = loop {
        let (inserted, scanned): (i64, i64) = sqlx::query_as(
            "SELECT n_tup_ins, coalesce(seq_tup_read, 0) FROM pg_stat_user_tables
             WHERE relname = 'steps'",
        )
        .fetch_one(&mut admin)
        .await
        .expect("statistics");
        if inserted >= inserted_steps {
            break scanned;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the store's statistics did not arrive ({inserted} of {inserted_steps} inserts)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        scanned < i64::from(filler),
        "claims and finishes read {scanned} step rows in sequential scans: a plan scans `steps`"
    );
}

/// Creates `n` onboardings of two steps and runs each step through a claim and a finish of
/// its own, so every statement runs several times.
async fn run_two_step_onboardings(store: &PostgresStore, n: usize) {
    let ids: Vec<_> = (0..n)
        .map(|_| conformance::new_onboarding(&[("a", "s1"), ("b", "s2")], 0, T0))
        .collect();
    for new in ids {
        store.create_onboarding(new, None).await.expect("create");
    }
    for stage_name in ["s1", "s2"] {
        for _ in 0..n {
            let claimed = store
                .claim(&stage(stage_name), 1, T0, LEASE)
                .await
                .expect("claim");
            let [step] = claimed.as_slice() else {
                panic!("expected one step of {stage_name}, got {claimed:?}");
            };
            let results = store
                .finish_steps(vec![StepFinish {
                    step: StepRef {
                        onboarding_id: step.onboarding_id.clone(),
                        seq: step.seq,
                        stage: step.stage.clone(),
                    },
                    guard: StepGuard::Lease(step.lease),
                    resolution: Resolution::Succeed(json!({})),
                    now: T0,
                    actor: "worker".into(),
                }])
                .await;
            assert!(results.iter().all(Result::is_ok), "{results:?}");
        }
    }
}
