//! What operators rely on to run onramp on a shared network: metrics that follow the work,
//! per-token rate limits, an audit trail of administrative actions, and bodies refused when
//! nested too deep.

use crate::{id_of, sim_config};
use onramp_testkit::{Backend, TestApp, factory};
use serde_json::{Value, json};
use std::time::Duration;

on_both_backends!(
    metrics_follow_a_run_from_queued_to_done,
    a_token_over_its_rate_limit_gets_429_with_retry_after,
    administrative_actions_are_audited_in_their_own_chain,
    bodies_nested_too_deep_are_refused,
);

/// The value of the sample `name{labels}` in a metrics text (0 when absent).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            let have: Vec<&str> = rest.trim_end_matches('}').split(',').collect();
            metric == name && wanted.iter().all(|w| have.contains(&w.as_str()))
        })
        .map(|(_, value)| value.parse::<f64>().expect("a number"))
        .sum()
}

async fn scrape(app: &TestApp) -> String {
    // Levels are read from the database at most once a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let response = app.get_as(None, "/metrics").await;
    response.assert_status(200);
    assert!(
        response.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        response.headers
    );
    response.text
}

async fn metrics_follow_a_run_from_queued_to_done(backend: Backend) {
    let mut app = TestApp::builder(&sim_config())
        .backend(backend)
        .without_runtime()
        .spawn()
        .await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let created = app
            .create_onboarding(factory::with_tasks(&["check_identity", "check_credit"]))
            .await;
        ids.push(id_of(&created));
    }

    let before = scrape(&app).await;
    let queued = [("stage", "checks"), ("state", "queued")];
    assert_eq!(
        sample(&before, "onramp_queue_steps", &queued),
        5.0,
        "{before}"
    );
    assert_eq!(
        sample(&before, "onramp_onboardings", &[("status", "pending")]),
        5.0
    );
    assert_eq!(
        sample(&before, "onramp_onboardings_created_total", &[]),
        5.0
    );
    assert_eq!(
        sample(
            &before,
            "onramp_queue_steps",
            &[("stage", "provisioning"), ("state", "queued")]
        ),
        0.0,
        "idle stages are shown too"
    );
    assert!(before.contains("onramp_queue_steps{stage=\"provisioning\",state=\"queued\"} 0"));
    assert_eq!(
        sample(
            &before,
            "onramp_breaker_state",
            &[("service", "crm"), ("state", "closed")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &before,
            "onramp_http_requests_total",
            &[
                ("route", "/v1/onboardings"),
                ("method", "POST"),
                ("status", "201")
            ]
        ),
        5.0,
        "{before}"
    );

    app.start_runtime();
    for id in &ids {
        app.wait_for_status(id, "completed").await;
    }
    let after = scrape(&app).await;
    assert_eq!(
        sample(&after, "onramp_queue_steps", &queued),
        0.0,
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "onramp_step_attempts_total",
            &[("outcome", "succeeded")]
        ),
        10.0,
        "one succeeded attempt per step: {after}"
    );
    assert_eq!(
        sample(
            &after,
            "onramp_step_duration_seconds_count",
            &[
                ("stage", "checks"),
                ("task", "check_credit"),
                ("outcome", "succeeded")
            ]
        ),
        5.0
    );
    assert_eq!(
        sample(&after, "onramp_onboardings", &[("status", "pending")]),
        0.0
    );
    assert_eq!(
        sample(&after, "onramp_onboardings", &[("status", "running")]),
        0.0
    );
    assert!(
        sample(&after, "onramp_outbox_unpublished_events", &[]) >= 0.0
            && after.contains("onramp_levels_up 1"),
        "{after}"
    );
    assert!(
        after.contains("onramp_http_requests_total{route=\"/v1/onboardings/{id}\",method=\"GET\",status=\"200\"}"),
        "routes are counted by pattern, not by raw path: {after}"
    );
    assert!(!after.contains(&ids[0]), "no onboarding id becomes a label");
}

async fn a_token_over_its_rate_limit_gets_429_with_retry_after(backend: Backend) {
    let config = format!("[server]\nrate_limit = \"5/m\"\n\n{}", sim_config());
    let app = TestApp::spawn_on(backend, &config).await;
    for _ in 0..5 {
        app.get("/v1/stages").await.assert_status(200);
    }
    let refused = app.get("/v1/stages").await;
    refused.assert_status(429);
    assert_eq!(refused.body["error"]["code"], "rate_limited", "{refused}");
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("whole seconds");
    assert!(
        (1..=12).contains(&retry_after),
        "one request comes back every 12 s: {retry_after}"
    );

    let other = app.token(onramp_core::auth::Role::Viewer).await;
    app.get_as(Some(&other), "/v1/stages")
        .await
        .assert_status(200);
    app.get_as(None, "/healthz").await.assert_status(200);
    app.get_as(None, "/metrics").await.assert_status(200);
    let metrics = app.get_as(None, "/metrics").await.text;
    assert_eq!(
        sample(
            &metrics,
            "onramp_http_requests_total",
            &[("route", "/v1/stages"), ("status", "429")]
        ),
        1.0
    );
}

async fn administrative_actions_are_audited_in_their_own_chain(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    app.put_json("/v1/templates/quick", &json!({"tasks": ["check_identity"]}))
        .await
        .assert_status(201);
    let csr = app
        .post_json(
            "/v1/csrs",
            &json!({"name": "Ada", "email": "ada@example.com", "skills": ["call"],
                    "timezone": "Europe/Berlin",
                    "working_hours": {"mon": ["09:00-17:00"]}}),
        )
        .await;
    csr.assert_status(201);
    let csr_id = csr.body["id"].as_str().unwrap().to_owned();
    app.send(
        app.request(reqwest::Method::PATCH, &format!("/v1/csrs/{csr_id}"))
            .json(&json!({"active": false})),
    )
    .await
    .assert_status(200);
    app.send(app.request(reqwest::Method::DELETE, &format!("/v1/csrs/{csr_id}")))
        .await
        .assert_status(204);
    app.post("/v1/stages/checks/pause").await.assert_status(200);
    app.post("/v1/stages/checks/resume")
        .await
        .assert_status(200);
    let hook = app
        .post_json(
            "/v1/webhooks",
            &json!({"url": "http://127.0.0.1:9/hook", "events": ["onboarding.completed"]}),
        )
        .await;
    hook.assert_status(201);
    let secret = hook.body["secret"].as_str().unwrap().to_owned();
    let hook_id = hook.body["id"].as_str().unwrap().to_owned();
    app.send(app.request(reqwest::Method::DELETE, &format!("/v1/webhooks/{hook_id}")))
        .await
        .assert_status(204);
    // Refused changes leave no entry.
    app.post("/v1/stages/no_such_stage/pause")
        .await
        .assert_status(404);

    let audit = app.get("/v1/audit").await;
    audit.assert_status(200);
    let entries = audit.body["items"].as_array().unwrap().clone();
    let actions: Vec<&str> = entries
        .iter()
        .filter(|e| e["actor"] == "token:test-admin")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "template.changed",
            "csr.created",
            "csr.changed",
            "csr.deleted",
            "stage.paused",
            "stage.resumed",
            "webhook.created",
            "webhook.deleted",
        ],
        "{audit}"
    );
    assert!(
        entries.iter().any(|e| e["action"] == "token.created"),
        "the test's own admin token was created too: {audit}"
    );
    for pair in entries.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"], "{audit}");
    }
    assert!(!audit.text.contains(&secret), "webhook secrets stay out");
    let changed = entries
        .iter()
        .find(|e| e["action"] == "csr.changed")
        .unwrap();
    assert_eq!(
        (changed["from"].as_str(), changed["to"].as_str()),
        (Some("active"), Some("inactive"))
    );

    let page = app.get("/v1/audit?limit=2").await;
    page.assert_status(200);
    let cursor = page.body["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let next = app.get(&format!("/v1/audit?limit=2&cursor={cursor}")).await;
    assert_eq!(next.body["items"][0]["seq"], entries[2]["seq"]);

    let operator = app.token(onramp_core::auth::Role::Operator).await;
    app.get_as(Some(&operator), "/v1/audit")
        .await
        .assert_status(403);
    let report = app.engine.verify_audit(None).await.expect("verify");
    assert!(report.broken.is_empty(), "{:?}", report.broken);
}

async fn bodies_nested_too_deep_are_refused(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    let nested = |depth: usize| {
        let mut v = json!("leaf");
        for _ in 0..depth {
            v = json!({ "deeper": v });
        }
        v
    };
    let body = |attributes: Value| {
        json!({"customer": {"name": "Ada", "email": "ada@example.com", "attributes": attributes},
               "tasks": ["check_identity"]})
    };
    let refused = app.post_json("/v1/onboardings", &body(nested(40))).await;
    refused.assert_status(400);
    assert_eq!(refused.body["error"]["code"], "validation_failed");
    assert!(refused.text.contains("nested deeper than 32"), "{refused}");
    // serde_json's own limit (128) is a 400 as well, never a crash.
    app.post_json("/v1/onboardings", &body(nested(500)))
        .await
        .assert_status(400);
    app.post_json("/v1/onboardings", &body(nested(20)))
        .await
        .assert_status(201);
}
