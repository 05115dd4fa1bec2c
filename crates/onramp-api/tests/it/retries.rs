//! `http` steps against a scripted external service: retryable failures are retried with the
//! same idempotency key, permanent ones dead-letter at once, exhausted retries fail the
//! onboarding until an operator replays or retries it.

use crate::{config, id_of, with_crm};
use onramp_testkit::{Backend, Reply, TestApp, factory, step};
use serde_json::{Value, json};
use std::time::Duration;

on_both_backends!(
    a_failing_service_is_retried_with_one_idempotency_key_until_it_succeeds,
    retry_after_from_the_service_postpones_the_next_attempt,
    exhausted_retries_dead_letter_the_step_and_a_replay_completes_the_onboarding,
    a_permanent_client_error_dead_letters_at_once_and_retry_runs_it_again,
    a_timed_out_request_is_retried,
    a_refused_connection_is_retried_until_the_attempts_run_out,
    a_success_with_a_huge_body_still_succeeds_with_a_capped_output,
    a_request_template_that_refers_to_a_missing_output_dead_letters_at_once,
    a_task_list_using_an_output_before_its_step_is_refused_at_create,
    answers_with_nul_characters_are_stored_on_every_backend,
);

fn retrying_entries(audit: &[Value]) -> Vec<&Value> {
    audit
        .iter()
        .filter(|e| e["action"] == "step.retrying")
        .collect()
}

async fn a_failing_service_is_retried_with_one_idempotency_key_until_it_succeeds(backend: Backend) {
    let (crm, config) = with_crm().await;
    crm.script(
        "/verifications",
        [
            Reply::status(503),
            Reply::json(502, json!({"error": "bad gateway"})),
            Reply::json(200, json!({"id": "ver_1"})),
        ],
    );
    crm.script(
        "/accounts/ver_1",
        [Reply::json(201, json!({"account": "acc_1"}))],
    );
    let app = TestApp::spawn_on(backend, &config).await;

    let body = factory::with_tasks(&["verify_identity", "create_account"]);
    let id = id_of(&app.create_onboarding(body.clone()).await);
    let done = app.wait_for_status(&id, "completed").await;

    let verifications = crm.requests_to("/verifications");
    assert_eq!(verifications.len(), 3, "{verifications:#?}");
    for r in &verifications {
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.header("authorization"),
            Some("Bearer crm-secret"),
            "the service's headers"
        );
        assert_eq!(r.idempotency_key(), Some(format!("{id}:1").as_str()));
        assert_eq!(r.body, json!({"email": body["customer"]["email"]}));
    }
    let accounts = crm.requests_to("/accounts/ver_1");
    assert_eq!(
        accounts.len(),
        1,
        "the second step used the first step's output"
    );
    assert_eq!(
        accounts[0].idempotency_key(),
        Some(format!("{id}:2").as_str())
    );

    let first = step(&done, 1);
    assert_eq!(first["attempts"], 3);
    assert_eq!(first["output"], json!({"id": "ver_1"}));
    assert_eq!(first["error"], Value::Null);
    assert_eq!(step(&done, 2)["output"], json!({"account": "acc_1"}));

    let audit = app.audit(&id).await;
    let retries = retrying_entries(&audit);
    assert_eq!(retries.len(), 2, "{audit:#?}");
    assert!(
        retries[0]["detail"]["error"]
            .as_str()
            .unwrap()
            .contains("HTTP 503")
    );
    assert!(
        retries[1]["detail"]["error"]
            .as_str()
            .unwrap()
            .contains("HTTP 502")
    );
    app.assert_audit_chain_valid(&id).await;
    app.stop().await;
}

async fn retry_after_from_the_service_postpones_the_next_attempt(backend: Backend) {
    let (crm, config) = with_crm().await;
    crm.script(
        "/verifications",
        [
            Reply::status(429).with_header("Retry-After", "2"),
            Reply::json(200, json!({"id": "v"})),
        ],
    );
    let app = TestApp::spawn_on(backend, &config).await;
    let id = id_of(
        &app.create_onboarding(factory::with_tasks(&["verify_identity"]))
            .await,
    );
    app.wait_for_status(&id, "completed").await;

    let audit = app.audit(&id).await;
    let retry = retrying_entries(&audit)[0];
    let at: jiff::Timestamp = retry["at"].as_str().unwrap().parse().unwrap();
    let retry_at: jiff::Timestamp = retry["detail"]["retry_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let waited = retry_at.duration_since(at);
    assert!(
        waited >= jiff::SignedDuration::from_secs(2),
        "retry scheduled after {waited:?}: {retry}"
    );

    let requests = crm.requests_to("/verifications");
    assert_eq!(requests.len(), 2);
    let gap = requests[1].received_at - requests[0].received_at;
    assert!(
        gap >= Duration::from_secs(2),
        "the next attempt must not come before Retry-After: came after {gap:?}"
    );
    app.stop().await;
}

async fn exhausted_retries_dead_letter_the_step_and_a_replay_completes_the_onboarding(
    backend: Backend,
) {
    let (crm, config) = with_crm().await;
    crm.script(
        "/verifications",
        [Reply::json(503, json!({"error": "down"}))],
    );
    let app = TestApp::spawn_on(backend, &config).await;
    let id = id_of(
        &app.create_onboarding(factory::with_tasks(&["verify_identity", "check_identity"]))
            .await,
    );

    let failed = app.wait_for_status(&id, "failed").await;
    assert_eq!(failed["retry_available"], true);
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("HTTP 503") && error.contains("gave up after 3 attempts"),
        "{error}"
    );
    assert_eq!(failed["stage"], "crm");
    let dead = step(&failed, 1);
    assert_eq!(
        (&dead["status"], &dead["attempts"]),
        (&json!("dead"), &json!(3))
    );
    assert_eq!(step(&failed, 2)["status"], "pending");
    let status = app.get(&format!("/v1/onboardings/{id}/status")).await;
    assert_eq!(status.body["status"], "failed");
    assert_eq!(status.body["retry_available"], true);
    assert_eq!(status.body["error"], failed["error"]);

    let letters = app.get("/v1/dead-letters?stage=crm").await;
    letters.assert_status(200);
    let items = letters.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{letters}");
    let letter = &items[0];
    assert!(letter["id"].as_str().unwrap().starts_with("dlq_"));
    assert_eq!(letter["onboarding_id"], id);
    assert_eq!(letter["step_seq"], 1);
    assert_eq!(letter["task"], "verify_identity");
    assert_eq!(letter["stage"], "crm");
    assert_eq!(letter["attempts"], 3);
    assert!(letter["error"].as_str().unwrap().contains("HTTP 503"));
    assert!(letter["dead_at"].is_string());
    let stages = app.get("/v1/stages").await;
    let crm_stage = stages
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "crm")
        .unwrap();
    assert_eq!(crm_stage["dead"], 1, "{stages}");

    crm.script("/verifications", [Reply::json(200, json!({"id": "v"}))]);
    let letter_id = letter["id"].as_str().unwrap();
    let replay = app
        .post(&format!("/v1/dead-letters/{letter_id}/replay"))
        .await;
    replay.assert_status(202);
    assert_eq!(replay.body["id"], letter_id);

    let done = app.wait_for_status(&id, "completed").await;
    assert_eq!(
        step(&done, 1)["attempts"],
        1,
        "a replay starts a fresh attempt budget"
    );
    assert_eq!(done["error"], Value::Null);
    assert_eq!(done["retry_available"], false);
    let letters = app.get("/v1/dead-letters").await;
    assert_eq!(letters.body["items"], json!([]));
    let keys: Vec<_> = crm
        .requests_to("/verifications")
        .iter()
        .map(|r| r.idempotency_key().map(str::to_owned))
        .collect();
    assert_eq!(
        keys,
        vec![Some(format!("{id}:1")); 4],
        "every attempt, replayed or not, has one key"
    );

    let audit = app.audit(&id).await;
    let resumed = audit
        .iter()
        .find(|e| e["action"] == "onboarding.running" && e["from"] == "failed")
        .unwrap_or_else(|| panic!("no failed -> running entry: {audit:#?}"));
    assert_eq!(resumed["detail"]["via"], "dead_letter_replay");
    assert_eq!(resumed["actor"], "token:test-admin");
    app.assert_audit_chain_valid(&id).await;
    app.stop().await;
}

async fn a_permanent_client_error_dead_letters_at_once_and_retry_runs_it_again(backend: Backend) {
    let (crm, config) = with_crm().await;
    crm.script(
        "/verifications",
        [Reply::json(422, json!({"error": "email rejected"}))],
    );
    let app = TestApp::spawn_on(backend, &config).await;
    let id = id_of(
        &app.create_onboarding(factory::with_tasks(&["verify_identity"]))
            .await,
    );

    let failed = app.wait_for_status(&id, "failed").await;
    let dead = step(&failed, 1);
    assert_eq!(dead["status"], "dead");
    assert_eq!(dead["attempts"], 1);
    assert!(
        dead["error"].as_str().unwrap().contains("HTTP 422"),
        "{dead}"
    );
    assert!(
        dead["error"].as_str().unwrap().contains("email rejected"),
        "{dead}"
    );
    assert_eq!(crm.requests_to("/verifications").len(), 1);

    crm.script("/verifications", [Reply::json(200, json!({"id": "v"}))]);
    let retried = app.post(&format!("/v1/onboardings/{id}/retry")).await;
    retried.assert_status(202);
    assert_eq!(retried.body["status"], "running");
    assert_eq!(step(&retried.body, 1)["status"], "queued");
    app.wait_for_status(&id, "completed").await;
    assert_eq!(crm.requests_to("/verifications").len(), 2);
    app.stop().await;
}

async fn a_timed_out_request_is_retried(backend: Backend) {
    let (crm, config) = with_crm().await;
    crm.script(
        "/verifications",
        [
            Reply::json(200, json!({"id": "too-late"})).delayed(Duration::from_millis(1500)),
            Reply::json(200, json!({"id": "v"})),
        ],
    );
    let app = TestApp::spawn_on(backend, &config).await;
    let id = id_of(
        &app.create_onboarding(factory::with_tasks(&["verify_identity"]))
            .await,
    );
    let done = app.wait_for_status(&id, "completed").await;
    assert_eq!(step(&done, 1)["attempts"], 2);
    assert_eq!(step(&done, 1)["output"], json!({"id": "v"}));
    let audit = app.audit(&id).await;
    let retry = retrying_entries(&audit)[0];
    assert!(
        retry["detail"]["error"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{retry}"
    );
    app.stop().await;
}

async fn a_refused_connection_is_retried_until_the_attempts_run_out(backend: Backend) {
    // A port that was free a moment ago: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let app = TestApp::spawn_on(backend, &config(&format!("http://{closed}"))).await;
    let id = id_of(
        &app.create_onboarding(factory::with_tasks(&["verify_identity"]))
            .await,
    );

    let failed = app.wait_for_status(&id, "failed").await;
    let dead = step(&failed, 1);
    assert_eq!(
        dead["attempts"], 3,
        "a connection error is retryable: {failed}"
    );
    let error = dead["error"].as_str().unwrap();
    assert!(
        error.contains("could not connect") && error.contains("gave up after 3 attempts"),
        "{error}"
    );
    assert_eq!(retrying_entries(&app.audit(&id).await).len(), 2);
    app.stop().await;
}

async fn a_success_with_a_huge_body_still_succeeds_with_a_capped_output(backend: Backend) {
    let (crm, config) = with_crm().await;
    crm.script(
        "/verifications",
        [Reply::json(200, json!({"blob": "x".repeat(100 * 1024)}))],
    );
    let app = TestApp::spawn_on(backend, &config).await;
    let id = id_of(
        &app.create_onboarding(factory::with_tasks(&["verify_identity"]))
            .await,
    );
    let done = app.wait_for_status(&id, "completed").await;
    let s = step(&done, 1);
    assert_eq!(
        s["attempts"], 1,
        "the call succeeded, so it is not repeated: {done}"
    );
    let kept = s["output"].to_string();
    assert!(
        kept.len() < 70 * 1024,
        "the output is capped: {} bytes",
        kept.len()
    );
    assert_eq!(s["output"]["truncated"], true, "{s}");
    app.stop().await;
}

async fn a_request_template_that_refers_to_a_missing_output_dead_letters_at_once(backend: Backend) {
    let (crm, config) = with_crm().await;
    // The verification answers without the `id` that `create_account` puts in its path:
    // knowable only at run time, so a permanent error naming what is missing.
    crm.script(
        "/verifications",
        [Reply::json(200, json!({"status": "ok"}))],
    );
    let app = TestApp::spawn_on(backend, &config).await;
    let id = id_of(
        &app.create_onboarding(factory::with_tasks(&["verify_identity", "create_account"]))
            .await,
    );
    let failed = app.wait_for_status(&id, "failed").await;
    let s = step(&failed, 2);
    assert_eq!(s["attempts"], 1);
    assert!(
        s["error"]
            .as_str()
            .unwrap()
            .contains("steps.verify_identity.output.id"),
        "{s}"
    );
    assert_eq!(crm.requests().len(), 1, "only the verification was sent");
    app.stop().await;
}

/// A hand-picked task list whose task uses the output of a step that does not run before it
/// is refused when it is created: knowable from the config, so never left to fail later.
async fn a_task_list_using_an_output_before_its_step_is_refused_at_create(backend: Backend) {
    let (crm, config) = with_crm().await;
    let app = TestApp::spawn_on(backend, &config).await;
    let refused = app
        .post_json(
            "/v1/onboardings",
            &factory::with_tasks(&["create_account", "verify_identity"]),
        )
        .await;
    refused.assert_status(400);
    assert_eq!(refused.body["error"]["code"], "validation_failed");
    let detail = &refused.body["error"]["details"][0];
    assert_eq!(detail["field"], "tasks[0]", "{refused}");
    assert!(
        detail["message"].as_str().unwrap().contains(
            "`steps.verify_identity.output.id` needs task `verify_identity` to run earlier"
        ),
        "{refused}"
    );
    assert!(crm.requests().is_empty());
    app.stop().await;
}

/// PostgreSQL refuses NUL in text and `jsonb`; what a service answers must still be kept.
async fn answers_with_nul_characters_are_stored_on_every_backend(backend: Backend) {
    let (crm, config) = with_crm().await;
    crm.script(
        "/verifications",
        [
            Reply::json(422, json!({"error": "email\u{0}rejected"})),
            Reply::json(200, json!({"id": "ver\u{0}1"})),
        ],
    );
    let app = TestApp::spawn_on(backend, &config).await;
    let id = id_of(
        &app.create_onboarding(factory::with_tasks(&["verify_identity"]))
            .await,
    );
    let failed = app.wait_for_status(&id, "failed").await;
    assert!(
        step(&failed, 1)["error"]
            .as_str()
            .unwrap()
            .contains("rejected"),
        "{failed}"
    );

    app.post(&format!("/v1/onboardings/{id}/retry"))
        .await
        .assert_status(202);
    let done = app.wait_for_status(&id, "completed").await;
    let output = step(&done, 1)["output"]["id"].as_str().unwrap().to_owned();
    assert!(output.starts_with("ver") && output.ends_with('1'), "{done}");
    app.get(&format!("/v1/onboardings/{id}/audit"))
        .await
        .assert_status(200);
    app.stop().await;
}
