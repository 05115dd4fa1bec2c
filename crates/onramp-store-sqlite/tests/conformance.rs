//! The store conformance suite against a real SQLite file, plus what only SQLite can show:
//! the file itself refuses audit tampering, and state survives reopening.

use onramp_core::StageName;
use onramp_store::conformance::{self, T0};
use onramp_store::{Created, SharedStore, Store};
use onramp_store_sqlite::SqliteStore;
use std::sync::Arc;
use tempfile::TempDir;

fn url(dir: &TempDir) -> String {
    format!("sqlite://{}", dir.path().join("onramp.db").display())
}

/// A fresh store in its own temp dir (keep the dir alive as long as the store).
async fn fresh() -> (TempDir, SharedStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&url(&dir)).await.expect("open store");
    (dir, Arc::new(store))
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let (_dir, store) = fresh().await;
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
fn every_conformance_check_runs_against_sqlite() {
    let suite: Vec<&str> = conformance::ALL.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        suite, RUN_HERE,
        "add the new check to the conformance! list above"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_runs_the_whole_suite_with_a_factory() {
    let dirs = Arc::new(parking_lot::Mutex::new(Vec::new()));
    conformance::run_all(|| {
        let dirs = dirs.clone();
        async move {
            let (dir, store) = fresh().await;
            dirs.lock().push(dir);
            store
        }
    })
    .await;
}

#[tokio::test]
async fn the_audit_table_refuses_update_and_delete() {
    let (dir, store) = fresh().await;
    let record = match store
        .create_onboarding(conformance::new_onboarding(&[("a", "s1")], 0, T0), None)
        .await
        .expect("create")
    {
        Created::New(r) => r,
        other => panic!("{other:?}"),
    };
    let before = store.audit_entries(&record.id).await.expect("audit");
    assert!(!before.is_empty());

    let conn = rusqlite::Connection::open(dir.path().join("onramp.db")).expect("open file");
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .expect("busy timeout");
    let update = conn.execute(
        "UPDATE audit SET actor = 'mallory' WHERE onboarding_id = ?1",
        [record.id.as_str()],
    );
    let err = update.expect_err("UPDATE on audit must fail").to_string();
    assert!(err.contains("append-only"), "{err}");
    let delete = conn.execute(
        "DELETE FROM audit WHERE onboarding_id = ?1",
        [record.id.as_str()],
    );
    let err = delete.expect_err("DELETE on audit must fail").to_string();
    assert!(err.contains("append-only"), "{err}");

    assert_eq!(
        store.audit_entries(&record.id).await.expect("audit"),
        before
    );
}

#[tokio::test]
async fn onboardings_and_paused_stages_survive_reopening() {
    let (dir, store) = fresh().await;
    let record = match store
        .create_onboarding(conformance::new_onboarding(&[("a", "s1")], 0, T0), None)
        .await
        .expect("create")
    {
        Created::New(r) => r,
        other => panic!("{other:?}"),
    };
    let billing: StageName = "billing".parse().expect("stage");
    store
        .set_stage_paused(&billing, true, T0, "test")
        .await
        .expect("pause");
    drop(store);

    let reopened = SqliteStore::open(&url(&dir)).await.expect("reopen");
    assert_eq!(
        reopened.get_onboarding(&record.id).await.expect("get"),
        record
    );
    assert_eq!(
        reopened.paused_stages().await.expect("paused"),
        vec![billing]
    );
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("onramp.db"), vec![0x5a_u8; 8192]).expect("write garbage");
    let err = SqliteStore::open(&url(&dir))
        .await
        .expect_err("garbage must not open");
    assert!(
        matches!(err, onramp_store::StoreError::Corrupt(_)),
        "expected Corrupt, got {err:?}"
    );
}
