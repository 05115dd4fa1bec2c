//! SPEC §4: a `kill -9` at any moment loses nothing acknowledged, and every step's success
//! is recorded exactly once.

use crate::common::{Scratch, THREE_STAGES, open_db};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

const ONBOARDINGS: usize = 300;

fn count(conn: &rusqlite::Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).expect(sql)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_loses_nothing_and_runs_each_step_to_success_once() {
    let scratch = Scratch::new();
    let config = scratch.write("onramp.toml", THREE_STAGES);
    let first = scratch.serve(Some(&config));

    // Submit every onboarding, 16 at a time, each with an idempotency key so that the ones
    // whose answer is lost in the crash can be sent again safely.
    let api = first.api.clone();
    let slots = Arc::new(Semaphore::new(16));
    let mut submissions = tokio::task::JoinSet::new();
    for n in 0..ONBOARDINGS {
        let (api, slots) = (api.clone(), slots.clone());
        submissions.spawn(async move {
            let _slot = slots.acquire_owned().await.expect("semaphore");
            (
                n,
                api.create_onboarding(n, Some(&format!("crash-{n}"))).await,
            )
        });
    }

    // Kill the server once some onboardings are done, while others are mid-pipeline.
    let conn = open_db(&scratch);
    let deadline = Instant::now() + Duration::from_secs(30);
    let completed_at_kill = loop {
        let completed = count(
            &conn,
            "SELECT count(*) FROM onboardings WHERE status = 'completed'",
        );
        if completed >= 30 {
            break completed;
        }
        assert!(
            Instant::now() < deadline,
            "no progress before the kill:\n{}",
            first.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.kill();
    assert!(
        (completed_at_kill as usize) < ONBOARDINGS,
        "everything completed before the kill; the test proves nothing"
    );
    let in_flight = count(&conn, "SELECT count(*) FROM steps WHERE status = 'running'");
    eprintln!("killed with {completed_at_kill} completed and {in_flight} steps running");

    let mut acknowledged: HashMap<usize, String> = HashMap::new();
    let mut unanswered = Vec::new();
    while let Some(joined) = submissions.join_next().await {
        match joined.expect("submission task") {
            (n, Ok(id)) => {
                acknowledged.insert(n, id);
            }
            (n, Err(_)) => unanswered.push(n),
        }
    }

    eprintln!(
        "{} submission(s) acknowledged before the kill, {} unanswered",
        acknowledged.len(),
        unanswered.len()
    );

    let second = scratch.serve(Some(&config));
    for n in unanswered {
        let id = second
            .api
            .create_onboarding(n, Some(&format!("crash-{n}")))
            .await
            .expect("resubmission after restart");
        if let Some(earlier) = acknowledged.insert(n, id.clone()) {
            assert_eq!(earlier, id);
        }
    }
    let ids: Vec<String> = acknowledged.into_values().collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ONBOARDINGS);
    second
        .api
        .wait_all_completed(&ids, Duration::from_secs(60))
        .await;

    let total = ONBOARDINGS as i64;
    assert_eq!(
        count(&conn, "SELECT count(*) FROM onboardings"),
        total,
        "no duplicates"
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM steps WHERE status = 'succeeded'"
        ),
        3 * total
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM audit WHERE action = 'step.succeeded'"
        ),
        3 * total,
        "one step.succeeded audit entry per step"
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM (SELECT onboarding_id, json_extract(detail, '$.step_seq') AS seq
             FROM audit WHERE action = 'step.succeeded' GROUP BY 1, 2 HAVING count(*) = 1)"
        ),
        3 * total,
        "every step succeeded exactly once"
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM outbox WHERE type = 'step.succeeded'"
        ),
        3 * total
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM outbox WHERE type = 'onboarding.completed'"
        ),
        total
    );
    let retried = count(&conn, "SELECT count(*) FROM steps WHERE attempts > 1");
    eprintln!("{retried} step(s) ran again after the crash");
    drop(conn);

    let status = second.terminate(Duration::from_secs(15));
    assert!(status.success(), "serve exited with {status}");
    let verify = scratch.run(&["audit", "verify", "--database", &scratch.db_url()]);
    verify.success();
    assert!(
        verify.stdout().contains(&format!(
            "checked {ONBOARDINGS} onboarding chain(s) and the admin chain"
        )),
        "{}",
        verify.stdout()
    );
    assert!(
        verify.stdout().contains("all intact"),
        "{}",
        verify.stdout()
    );
}
