//! A request the database cannot serve in time is answered 503 at `[server] request_timeout`
//! instead of hanging; sent again with its Idempotency-Key once the database is back, it makes
//! exactly one onboarding.

use crate::common::{Refusal, Scratch, open_db};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
request_timeout = "500ms"

[tasks.check]
kind = "sim"
stage = "checks"

[templates.quick]
tasks = ["check"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_stuck_on_a_locked_database_gets_503_and_its_retry_makes_one_onboarding() {
    let scratch = Scratch::new();
    let config = scratch.write("onramp.toml", CONFIG);
    let served = scratch.serve(Some(&config));
    served
        .api
        .create_from("quick", 0, "warm-up")
        .await
        .unwrap_or_else(|e| panic!("create: {e:?}"));

    // Another program holds the database's write lock.
    let locker = open_db(&scratch);
    locker
        .execute_batch("BEGIN EXCLUSIVE")
        .expect("take the write lock");
    let asked = Instant::now();
    let stuck = served.api.create_from("quick", 1, "signup-1").await;
    let waited = asked.elapsed();
    match &stuck {
        Err(Refusal::Unavailable(why)) => assert!(why.contains("unavailable"), "{why}"),
        other => panic!("expected a 503, got {other:?}"),
    }
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(3),
        "answered after {waited:?}"
    );
    locker.execute_batch("COMMIT").expect("release the lock");

    let created = served
        .api
        .create_from("quick", 1, "signup-1")
        .await
        .unwrap_or_else(|e| panic!("the retry: {e:?}"));
    let id = created["id"].as_str().expect("an id").to_owned();
    served
        .api
        .wait_all_completed(std::slice::from_ref(&id), Duration::from_secs(10))
        .await;
    let count: i64 = open_db(&scratch)
        .query_row(
            "SELECT count(*) FROM onboardings WHERE customer_email = 'c1@example.com'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(
        count, 1,
        "one onboarding for the customer, however often asked"
    );
    assert!(served.terminate(Duration::from_secs(10)).success());
}
