//! External services under stress: the circuit breaker stops hammering a failing service and
//! lets the work resume by itself once it recovers; a rate limit paces calls; deferrals never
//! cost attempts; `GET /v1/services` shows it all.

use crate::id_of;
use onramp_testkit::{Backend, FakeService, Reply, TestApp, factory, wait_until};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

on_both_backends!(
    a_failing_service_opens_the_breaker_and_every_step_completes_after_recovery,
    a_rate_limit_paces_calls_and_rejects_none,
    the_services_endpoint_shows_breakers_and_recent_errors,
);

/// One stage calling `crm` with the given breaker and rate limit.
fn config(url: &str, breaker: &str, rate_limit: Option<&str>) -> String {
    let rate_limit = rate_limit
        .map(|r| format!("rate_limit = \"{r}\""))
        .unwrap_or_default();
    format!(
        r#"
[stages.crm]
concurrency = 8
max_attempts = 10
backoff = {{ initial = "10ms", max = "40ms", multiplier = 2.0 }}
visibility_timeout = "30s"

[services.crm]
base_url = "{url}"
timeout = "2s"
breaker = {breaker}
{rate_limit}

[tasks.register]
kind = "http"
stage = "crm"
service = "crm"
request = {{ method = "POST", path = "/register", body = {{ email = "{{{{customer.email}}}}" }} }}
"#
    )
}

async fn create_many(app: &TestApp, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(id_of(
            &app.create_onboarding(factory::with_tasks(&["register"]))
                .await,
        ));
    }
    ids
}

async fn wait_all_completed(app: &TestApp, ids: &[String], within: Duration) -> Vec<Value> {
    wait_until("every onboarding completed", within, || async {
        let mut done = Vec::new();
        for id in ids {
            let o = app.onboarding(id).await;
            if o["status"] != "completed" {
                return Err(format!("{id} is {}", o["status"]));
            }
            done.push(o);
        }
        Ok(done)
    })
    .await
}

async fn a_failing_service_opens_the_breaker_and_every_step_completes_after_recovery(
    backend: Backend,
) {
    const FAILURES: usize = 40;
    const OPEN_FOR_MS: u64 = 150;
    let crm = FakeService::start().await;
    let mut replies = vec![Reply::status(503); FAILURES];
    replies.push(Reply::json(201, json!({"registered": true})));
    crm.script("/register", replies);
    let breaker = format!("{{ failure_threshold = 5, open_for = \"{OPEN_FOR_MS}ms\" }}");
    let app = TestApp::spawn_on(backend, &config(crm.url(), &breaker, None)).await;

    let ids = create_many(&app, 50).await;
    let seen_open = wait_until("the breaker opens", Duration::from_secs(20), || async {
        let services = app.get("/v1/services").await;
        match services.body[0]["breaker"].as_str() {
            Some("open") => Ok(services.body[0].clone()),
            other => Err(format!("breaker is {other:?}")),
        }
    })
    .await;
    assert_eq!(seen_open["name"], "crm");
    assert!(seen_open["open_until"].is_string(), "{seen_open}");
    assert!(
        seen_open["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("HTTP 503"),
        "{seen_open}"
    );

    let done = wait_all_completed(&app, &ids, Duration::from_secs(60)).await;
    let requests = crm.requests_to("/register");

    // Every step's key reached the service, and each was applied (answered 2xx) once.
    let mut applied: HashMap<String, usize> = HashMap::new();
    for r in &requests {
        let key = r
            .idempotency_key()
            .expect("every call has a key")
            .to_owned();
        *applied.entry(key).or_default() += usize::from((200..300).contains(&r.replied));
    }
    assert_eq!(applied.len(), 50, "one key per step");
    assert!(applied.values().all(|&n| n == 1), "{applied:?}");
    assert_eq!(requests.len(), FAILURES + 50);

    // While the breaker was open the service only saw probes: after the first failures
    // (the threshold, plus calls already on their way when it opened), failing calls came
    // one per open period.
    let failing: Vec<_> = requests.iter().filter(|r| r.replied == 503).collect();
    let probes = &failing[5 + 8..];
    for pair in probes.windows(2) {
        let gap = pair[1].received_at - pair[0].received_at;
        assert!(
            gap >= Duration::from_millis(OPEN_FOR_MS * 9 / 10),
            "two calls {gap:?} apart while the breaker was open"
        );
    }

    // Deferrals cost no attempts: attempts add up to the calls the service received.
    let attempts: u64 = done
        .iter()
        .map(|o| o["steps"][0]["attempts"].as_u64().unwrap())
        .sum();
    assert_eq!(attempts as usize, requests.len());
    let deferred = {
        let mut n = 0;
        for id in &ids {
            n += app
                .audit(id)
                .await
                .iter()
                .filter(|e| {
                    e["action"] == "step.queued"
                        && e["detail"]["reason"]
                            .as_str()
                            .is_some_and(|r| r.contains("circuit breaker"))
                })
                .count();
        }
        n
    };
    assert!(
        deferred > 0,
        "steps were deferred while the breaker was open"
    );

    let services = app.get("/v1/services").await;
    assert_eq!(services.body[0]["breaker"], "closed", "{services}");
    app.stop().await;
}

async fn a_rate_limit_paces_calls_and_rejects_none(backend: Backend) {
    let crm = FakeService::start().await;
    crm.script("/register", [Reply::json(200, json!({}))]);
    let breaker = "{ failure_threshold = 5, open_for = \"1s\" }";
    let app = TestApp::spawn_on(backend, &config(crm.url(), breaker, Some("10/s"))).await;

    let ids = create_many(&app, 100).await;
    wait_all_completed(&app, &ids, Duration::from_secs(60)).await;
    let requests = crm.requests_to("/register");
    assert_eq!(requests.len(), 100, "none rejected, none repeated");
    assert!(requests.iter().all(|r| r.replied == 200));
    let span = requests[99].received_at - requests[0].received_at;
    assert!(
        span >= Duration::from_secs(9),
        "100 calls at 10/s took only {span:?} at the service"
    );
    for window in requests.windows(11) {
        let took = window[10].received_at - window[0].received_at;
        assert!(
            took >= Duration::from_millis(950),
            "11 calls within {took:?}: more than 10 in a second"
        );
    }
    app.stop().await;
}

async fn the_services_endpoint_shows_breakers_and_recent_errors(backend: Backend) {
    let crm = FakeService::start().await;
    crm.script(
        "/register",
        [Reply::status(500), Reply::json(200, json!({}))],
    );
    let breaker = "{ failure_threshold = 3, open_for = \"30s\" }";
    let app = TestApp::spawn_on(backend, &config(crm.url(), breaker, Some("20/s"))).await;

    let before = app.get("/v1/services").await;
    before.assert_status(200);
    assert_eq!(
        before.body,
        json!([{
            "name": "crm",
            "base_url": crm.url(),
            "breaker": "closed",
            "consecutive_failures": 0,
            "open_until": null,
            "breaker_changed_at": null,
            "rate_limit": "20/s",
            "recent_calls": 0,
            "recent_failures": 0,
            "error_rate": 0.0,
            "last_error": null,
        }])
    );
    let id = id_of(
        &app.create_onboarding(factory::with_tasks(&["register"]))
            .await,
    );
    app.wait_for_status(&id, "completed").await;
    let after = app.get("/v1/services").await;
    let crm_status = &after.body[0];
    assert_eq!(crm_status["breaker"], "closed");
    assert_eq!(
        crm_status["consecutive_failures"], 0,
        "the success reset it"
    );
    assert_eq!(
        (&crm_status["recent_calls"], &crm_status["recent_failures"]),
        (&json!(2), &json!(1))
    );
    assert_eq!(crm_status["error_rate"], 0.5);
    assert!(
        crm_status["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("HTTP 500")
    );

    let service = app.token(onramp_core::auth::Role::Service).await;
    let denied = app.get_as(Some(&service), "/v1/services").await;
    denied.assert_status(403);
    let anonymous = app.get_as(None, "/v1/services").await;
    anonymous.assert_status(401);
    app.stop().await;
}
