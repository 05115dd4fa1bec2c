//! SIGTERM stops a serving process cleanly: exit 0 within a few seconds, work committed,
//! and the database folded into one file.

use crate::common::{Scratch, THREE_STAGES, open_db};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_an_idle_server_with_exit_0() {
    let scratch = Scratch::new();
    let served = scratch.serve(None);
    let health = served
        .api
        .request(reqwest::Method::GET, "/healthz", "")
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(health.status(), 200);

    let started = Instant::now();
    let status = served.terminate(Duration::from_secs(5));
    assert!(status.success(), "exit status {status}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_work_exits_0_and_a_restart_finishes_it() {
    let scratch = Scratch::new();
    let config = scratch.write("onramp.toml", THREE_STAGES);
    let served = scratch.serve(Some(&config));
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(served.api.create_onboarding(n, None).await.expect("create"));
    }
    let status = served.terminate(Duration::from_secs(12));
    assert!(status.success(), "exit status {status}");

    let again = scratch.serve(Some(&config));
    again
        .api
        .wait_all_completed(&ids, Duration::from_secs(20))
        .await;
    assert!(again.terminate(Duration::from_secs(12)).success());

    // A cleanly stopped server leaves one complete file: copied alone (the usual backup),
    // it holds everything, nothing is left behind in the WAL.
    let backup = Scratch::new();
    std::fs::copy(scratch.db_path(), backup.db_path()).expect("copy the database file");
    let completed: i64 = open_db(&backup)
        .query_row(
            "SELECT count(*) FROM onboardings WHERE status = 'completed'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(completed, ids.len() as i64);
}
