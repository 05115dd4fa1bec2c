//! Several processes, one timer (SPEC §4, §12). Every worker process runs the scheduler, and
//! so does the API process: a retry that comes due is attempted once, a step whose lease ran
//! out is requeued once, whichever of them sees it first, and every attempt of a step calls
//! the service with the same `Idempotency-Key`.

use crate::common::millis;
use crate::common::postgres::{COMPLETED, Cluster, LEASE_REQUEUES, stop_gracefully, submit};
use onramp_testkit::{FakeService, Reply};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// `http` tasks against the fake service at `FAKE_URL`, one path per customer (it names the
/// customer's email) so that each onboarding has a script of its own: `open_account` in a
/// stage that retries after a short backoff, `open_account_slowly` in one whose leases run
/// out after two seconds.
const CALLS: &str = r#"
[server]
listen = "127.0.0.1:0"

[worker]
poll_interval = "100ms"
scheduler_interval = "100ms"

[services.accounts]
base_url = "FAKE_URL"
timeout = "1500ms"
# Ten scripted 503s must not open the breaker: this test is about retries coming due.
breaker = { failure_threshold = 1000, open_for = "1s" }

[stages.calls]
concurrency = 16
max_attempts = 5
backoff = { initial = "300ms", max = "300ms", multiplier = 1.0 }

[stages.slow_calls]
concurrency = 16
max_attempts = 5
visibility_timeout = "2s"

[tasks.open_account]
kind = "http"
stage = "calls"
service = "accounts"
request = { method = "POST", path = "/accounts/{{customer.email}}" }

[tasks.open_account_slowly]
kind = "http"
stage = "slow_calls"
service = "accounts"
request = { method = "POST", path = "/slow/{{customer.email}}" }

[templates.flaky]
tasks = ["open_account"]

[templates.slow]
tasks = ["open_account_slowly"]
"#;

const ONBOARDINGS: usize = 10;

/// The path customer `n`'s step calls under `prefix`.
fn path(prefix: &str, n: usize) -> String {
    format!("{prefix}/c{n}@example.com")
}

fn entries<'a>(audit: &'a [Value], action: &str) -> Vec<&'a Value> {
    audit.iter().filter(|e| e["action"] == action).collect()
}

async fn cluster_calling(fake: &FakeService) -> Option<Cluster> {
    Cluster::start(&CALLS.replace("FAKE_URL", fake.url())).await
}

/// Asserts that `path` was called exactly twice, both times with the key of step 1 of
/// onboarding `id`.
fn assert_called_twice_with_one_key(fake: &FakeService, path: &str, id: &str) {
    let calls = fake.requests_to(path);
    assert_eq!(calls.len(), 2, "calls to {path}: {calls:#?}");
    for call in &calls {
        assert_eq!(call.idempotency_key(), Some(format!("{id}:1").as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_that_comes_due_is_attempted_once_across_two_worker_processes() {
    let fake = FakeService::start().await;
    for n in 0..ONBOARDINGS {
        fake.script(
            &path("/accounts", n),
            [Reply::status(503), Reply::json(200, json!({"account": n}))],
        );
    }
    let Some(cluster) = cluster_calling(&fake).await else {
        return;
    };
    let api_process = cluster.serve_without_workers();
    let workers = [cluster.worker(None), cluster.worker(None)];
    let api = &api_process.api;
    let mut sql = cluster.sql().await;

    let ids = submit(api, "flaky", ONBOARDINGS, "flaky")
        .await
        .expect("submissions");
    sql.wait_for_count(COMPLETED, ONBOARDINGS as i64, Duration::from_secs(30))
        .await;
    stop_gracefully(workers);

    for (n, id) in ids.iter().enumerate() {
        assert_called_twice_with_one_key(&fake, &path("/accounts", n), id);
        let audit = api.audit(id).await;
        let retries = entries(&audit, "step.retrying");
        assert_eq!(retries.len(), 1, "one retry scheduled: {audit:#?}");
        assert_eq!(retries[0]["actor"], "worker");
        let claims = entries(&audit, "step.running");
        assert_eq!(claims.len(), 2, "two attempts: {audit:#?}");
        assert!(
            millis(&claims[1]["at"]) >= millis(&retries[0]["detail"]["retry_at"]),
            "the retry ran before it came due: {audit:#?}"
        );
        assert_eq!(entries(&audit, "step.succeeded").len(), 1, "{audit:#?}");
    }
    assert_eq!(sql.count(LEASE_REQUEUES).await, 0, "no lease ran out");
    cluster.assert_audit_intact(ONBOARDINGS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_lease_is_requeued_once_by_competing_schedulers_and_the_late_result_refused() {
    let fake = FakeService::start().await;
    for n in 0..ONBOARDINGS {
        fake.script(
            &path("/slow", n),
            [
                // Never answered in time: the caller is frozen, then gives up.
                Reply::json(200, json!({"attempt": "first"})).delayed(Duration::from_secs(5)),
                Reply::json(200, json!({"attempt": "second"})),
            ],
        );
    }
    let Some(cluster) = cluster_calling(&fake).await else {
        return;
    };
    let api_process = cluster.serve_without_workers();
    let frozen = cluster.worker(None);
    let api = &api_process.api;
    let mut sql = cluster.sql().await;

    // The first worker takes every step and calls the service; then it freezes mid-call,
    // holding the leases, and a second worker process starts. Its scheduler and the API
    // process's both see the leases run out.
    let ids = submit(api, "slow", ONBOARDINGS, "slow")
        .await
        .expect("submissions");
    wait_for_calls(&fake, "/slow/", ONBOARDINGS).await;
    frozen.freeze();
    let other = cluster.worker(None);
    sql.wait_for_count(COMPLETED, ONBOARDINGS as i64, Duration::from_secs(30))
        .await;

    // Thawed, the first worker finishes its attempts late; stopping it gracefully waits
    // until it has offered every result.
    frozen.thaw();
    stop_gracefully([frozen, other]);

    for (n, id) in ids.iter().enumerate() {
        assert_called_twice_with_one_key(&fake, &path("/slow", n), id);
        let audit = api.audit(id).await;
        let requeues = entries(&audit, "step.retrying");
        assert_eq!(requeues.len(), 1, "one requeue: {audit:#?}");
        assert_eq!(requeues[0]["actor"], "scheduler");
        assert!(
            requeues[0]["detail"]["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("lease expired")),
            "{audit:#?}"
        );
        assert_eq!(entries(&audit, "step.succeeded").len(), 1, "{audit:#?}");
        let onboarding = api.onboarding(id).await;
        let step = &onboarding["steps"][0];
        assert_eq!(step["attempts"], 2, "{onboarding:#}");
        assert_eq!(
            step["output"],
            json!({"attempt": "second"}),
            "{onboarding:#}"
        );
    }
    assert_eq!(sql.count(LEASE_REQUEUES).await, ONBOARDINGS as i64);
    cluster.assert_audit_intact(ONBOARDINGS);
}

/// Waits (bounded) until `n` requests to paths starting with `prefix` have arrived.
async fn wait_for_calls(fake: &FakeService, prefix: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let calls = fake
            .requests()
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .count();
        if calls >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{calls} call(s) to {prefix}, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
