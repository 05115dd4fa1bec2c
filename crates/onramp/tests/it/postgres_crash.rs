//! SPEC §4 and §12 on PostgreSQL: with several processes on one database, a worker process
//! killed with SIGKILL, or every database connection cut under the processes' feet, loses no
//! onboarding and records each step's success exactly once.

use crate::common::THREE_STAGES;
use crate::common::postgres::{
    COMPLETED, Cluster, LEASE_REQUEUES, assert_each_step_succeeded_once, stop_gracefully, submit,
};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_killed_twice_mid_run_loses_nothing_and_runs_each_step_to_success_once() {
    const ONBOARDINGS: usize = 500;
    let Some(cluster) = Cluster::start(THREE_STAGES).await else {
        return;
    };
    let serve = cluster.serve();
    let survivor = cluster.worker(None);
    let mut victim = cluster.worker(None);
    let mut sql = cluster.sql().await;

    let submitted = submit(&serve.api, "three", ONBOARDINGS, "kill");
    let mut completed_at_kill = 0;
    for completed in [100, 250] {
        sql.wait_for_count(COMPLETED, completed, Duration::from_secs(60))
            .await;
        victim.kill();
        completed_at_kill = sql.count(COMPLETED).await;
        let running = sql
            .count("SELECT count(*) FROM steps WHERE status = 'running'")
            .await;
        eprintln!("killed a worker at {completed_at_kill} completed, {running} step(s) running");
        victim = cluster.worker(None);
    }
    assert!(
        completed_at_kill < ONBOARDINGS as i64,
        "everything completed before the second kill; the test proves nothing"
    );
    let ids = submitted.await.expect("submissions");
    assert_eq!(ids.len(), ONBOARDINGS);
    sql.wait_for_count(COMPLETED, ONBOARDINGS as i64, Duration::from_secs(60))
        .await;

    assert_each_step_succeeded_once(&mut sql, ONBOARDINGS as i64, 3).await;
    let requeued = sql.count(LEASE_REQUEUES).await;
    eprintln!("{requeued} step(s) requeued after their worker was killed");
    assert!(
        requeued >= 1,
        "the killed workers held no step; the test proves nothing"
    );
    stop_gracefully([serve, survivor, victim]);
    cluster.assert_audit_intact(ONBOARDINGS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_database_connection_cut_twice_mid_run_is_replaced_and_the_run_finishes() {
    const ONBOARDINGS: usize = 200;
    let Some(cluster) = Cluster::start(THREE_STAGES).await else {
        return;
    };
    let serve = cluster.serve();
    let worker = cluster.worker(None);
    let mut sql = cluster.sql().await;

    let submitted = submit(&serve.api, "three", ONBOARDINGS, "cut");
    for completed in [40, 120] {
        sql.wait_for_count(COMPLETED, completed, Duration::from_secs(60))
            .await;
        let cut = sql.terminate_other_connections().await;
        eprintln!("cut {cut} connection(s) at {completed}+ completed");
        assert!(cut >= 2, "both processes should have been connected");
    }
    let ids = submitted.await.expect("submissions");
    assert_eq!(ids.len(), ONBOARDINGS);
    sql.wait_for_count(COMPLETED, ONBOARDINGS as i64, Duration::from_secs(60))
        .await;

    assert_each_step_succeeded_once(&mut sql, ONBOARDINGS as i64, 3).await;
    // Each process listens for the others' wake-ups again, on a new connection.
    sql.wait_for_listeners(2, Duration::from_secs(10)).await;
    stop_gracefully([serve, worker]);
    cluster.assert_audit_intact(ONBOARDINGS);
}
