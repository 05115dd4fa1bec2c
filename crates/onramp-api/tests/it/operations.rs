//! What operators do besides dead letters: cancel onboardings, pause and resume stages,
//! publish template versions; and the unauthenticated health endpoints.

use crate::{id_of, sim_config};
use onramp_testkit::{Backend, Reply, TestApp, factory, step};
use serde_json::{Value, json};
use std::time::Duration;

on_both_backends!(
    cancelling_skips_the_remaining_steps_and_ends_cancelled,
    a_step_cancelled_mid_attempt_stays_cancelled_when_its_worker_reports_back,
    a_cancel_needs_no_body,
    a_paused_stage_runs_nothing_until_it_is_resumed,
    stages_lists_every_configured_stage_with_its_counts,
    a_new_template_version_applies_to_new_onboardings_only,
    template_versions_with_unknown_or_no_tasks_are_refused,
    health_and_readiness_need_no_token,
);

async fn stage(app: &TestApp, name: &str) -> Value {
    let r = app.get("/v1/stages").await;
    r.assert_status(200);
    r.body
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no stage {name} in {r}"))
}

async fn cancelling_skips_the_remaining_steps_and_ends_cancelled(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    app.post("/v1/stages/provisioning/pause")
        .await
        .assert_status(200);
    let id = id_of(
        &app.create_onboarding(factory::with_tasks(&[
            "check_identity",
            "provision",
            "check_credit",
        ]))
        .await,
    );
    app.wait_for_step_status(&id, 2, "queued").await;

    let r = app
        .post_json(
            &format!("/v1/onboardings/{id}/cancel"),
            &json!({"reason": "customer left"}),
        )
        .await;
    r.assert_status(202);
    let cancelled = &r.body;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["stage"], Value::Null);
    assert!(cancelled["completed_at"].is_string(), "{cancelled}");
    let statuses: Vec<&Value> = cancelled["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["status"])
        .collect();
    assert_eq!(statuses, ["succeeded", "skipped", "skipped"]);
    assert_eq!(app.onboarding(&id).await["status"], "cancelled");

    let audit = app.audit(&id).await;
    let cancelling = audit
        .iter()
        .find(|e| e["action"] == "onboarding.cancelling")
        .expect("cancelling entry");
    assert_eq!(cancelling["detail"]["reason"], "customer left");
    assert_eq!(cancelling["actor"], "token:test-admin");
    assert_eq!(audit.last().unwrap()["action"], "onboarding.cancelled");
    app.assert_audit_chain_valid(&id).await;

    // The skipped step is no longer queued: resuming the stage does not run it.
    app.post("/v1/stages/provisioning/resume")
        .await
        .assert_status(200);
    assert_eq!(stage(&app, "provisioning").await["queued"], 0);
    app.stop().await;
}

async fn a_step_cancelled_mid_attempt_stays_cancelled_when_its_worker_reports_back(
    backend: Backend,
) {
    let (crm, config) = crate::with_crm().await;
    crm.script(
        "/slow",
        [Reply::json(200, json!({"id": "late"})).delayed(Duration::from_secs(1))],
    );
    let mut app = TestApp::spawn_on(backend, &config).await;
    let id = id_of(
        &app.create_onboarding(factory::with_tasks(&["slow_verify", "check_identity"]))
            .await,
    );
    crm.wait_for_requests("/slow", 1).await;

    let r = app
        .post_json(
            &format!("/v1/onboardings/{id}/cancel"),
            &json!({"reason": "stop"}),
        )
        .await;
    r.assert_status(202);
    assert_eq!(step(&r.body, 1)["status"], "cancelled");

    // The `serial` stage runs one step at a time: once this next step has completed, the
    // slow attempt has ended and handed its late result to the completer. Stopping the
    // workers then waits until the completer has committed or refused all it was handed
    // (it commits several batches at once, so the order of commits proves nothing).
    let next = id_of(
        &app.create_onboarding(factory::with_tasks(&["serial_check"]))
            .await,
    );
    app.wait_for_status(&next, "completed").await;
    app.stop_runtime().await;

    let after = app.onboarding(&id).await;
    assert_eq!(after["status"], "cancelled");
    assert_eq!(step(&after, 1)["status"], "cancelled");
    assert_eq!(
        step(&after, 1)["output"],
        Value::Null,
        "the late success was not recorded"
    );
    assert_eq!(step(&after, 2)["status"], "skipped");
    let audit = app.audit(&id).await;
    assert!(
        !audit.iter().any(|e| e["action"] == "step.succeeded"),
        "{audit:#?}"
    );
    assert_eq!(crm.requests_to("/slow").len(), 1);
    app.assert_audit_chain_valid(&id).await;
    app.stop().await;
}

async fn a_cancel_needs_no_body(backend: Backend) {
    let app = TestApp::builder(&sim_config())
        .backend(backend)
        .without_runtime()
        .spawn()
        .await;
    let id = id_of(
        &app.create_onboarding(factory::with_tasks(&["check_identity"]))
            .await,
    );
    let r = app.post(&format!("/v1/onboardings/{id}/cancel")).await;
    r.assert_status(202);
    assert_eq!(r.body["status"], "cancelled");
    assert_eq!(step(&r.body, 1)["status"], "skipped");
    app.stop().await;
}

async fn a_paused_stage_runs_nothing_until_it_is_resumed(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    let paused = app.post("/v1/stages/provisioning/pause").await;
    paused.assert_status(200);
    assert_eq!(paused.body["name"], "provisioning");
    assert_eq!(paused.body["paused"], true);

    let waiting = id_of(
        &app.create_onboarding(factory::with_tasks(&["provision"]))
            .await,
    );
    // Work created after it in another stage finishes; the paused stage's step stays put.
    let other = id_of(
        &app.create_onboarding(factory::with_tasks(&["check_identity"]))
            .await,
    );
    app.wait_for_status(&other, "completed").await;
    let still = app.onboarding(&waiting).await;
    assert_eq!(still["status"], "pending", "{still}");
    assert_eq!(step(&still, 1)["status"], "queued");
    assert_eq!(step(&still, 1)["attempts"], 0);
    let counts = stage(&app, "provisioning").await;
    assert_eq!(counts["paused"], true);
    assert_eq!(counts["queued"], 1);
    assert_eq!(counts["running"], 0);

    let resumed = app.post("/v1/stages/provisioning/resume").await;
    resumed.assert_status(200);
    assert_eq!(resumed.body["paused"], false);
    app.wait_for_status(&waiting, "completed").await;
    let counts = stage(&app, "provisioning").await;
    assert_eq!(
        (counts["paused"].clone(), counts["queued"].clone()),
        (json!(false), json!(0))
    );
    app.stop().await;
}

async fn stages_lists_every_configured_stage_with_its_counts(backend: Backend) {
    let app = TestApp::builder(&sim_config())
        .backend(backend)
        .without_runtime()
        .spawn()
        .await;
    app.create_onboarding(factory::with_tasks(&["check_identity"]))
        .await;
    app.create_onboarding(factory::with_tasks(&["check_credit"]))
        .await;

    let r = app.get("/v1/stages").await;
    r.assert_status(200);
    let names: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["checks", "crm", "fragile", "provisioning", "serial"]
    );
    assert_eq!(
        stage(&app, "checks").await,
        json!({"name": "checks", "queued": 2, "running": 0, "retrying": 0, "dead": 0,
               "concurrency": 4, "paused": false})
    );
    assert_eq!(stage(&app, "crm").await["queued"], 0);
    app.stop().await;
}

async fn a_new_template_version_applies_to_new_onboardings_only(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    let list = app.get("/v1/templates").await;
    list.assert_status(200);
    let names: Vec<&Value> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["name"])
        .collect();
    assert_eq!(names, ["provisioned", "standard"]);
    let v1 = app.get("/v1/templates/provisioned").await;
    v1.assert_status(200);
    assert_eq!(v1.body["version"], 1);
    assert_eq!(v1.body["tasks"], json!(["check_identity", "provision"]));
    assert_eq!(v1.body["versions"], json!([1]));

    // An onboarding on version 1, held at its provisioning step.
    app.post("/v1/stages/provisioning/pause")
        .await
        .assert_status(200);
    let old = id_of(
        &app.create_onboarding(factory::from_template("provisioned"))
            .await,
    );
    app.wait_for_step_status(&old, 2, "queued").await;

    let put = app
        .put_json(
            "/v1/templates/provisioned",
            &json!({"tasks": ["check_credit", "check_identity", "provision"]}),
        )
        .await;
    put.assert_status(201);
    assert_eq!(put.body["name"], "provisioned");
    assert_eq!(put.body["version"], 2);
    let latest = app.get("/v1/templates/provisioned").await;
    assert_eq!(latest.body["version"], 2);
    assert_eq!(latest.body["versions"], json!([1, 2]));
    let first = app.get("/v1/templates/provisioned?version=1").await;
    assert_eq!(first.body["tasks"], json!(["check_identity", "provision"]));

    let new = app
        .create_onboarding(factory::from_template("provisioned"))
        .await;
    assert_eq!(
        new["template"],
        json!({"name": "provisioned", "version": 2})
    );
    assert_eq!(new["steps"].as_array().unwrap().len(), 3);

    app.post("/v1/stages/provisioning/resume")
        .await
        .assert_status(200);
    let done = app.wait_for_status(&old, "completed").await;
    assert_eq!(
        done["template"],
        json!({"name": "provisioned", "version": 1})
    );
    let tasks: Vec<&Value> = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["task"])
        .collect();
    assert_eq!(
        tasks,
        ["check_identity", "provision"],
        "the old onboarding kept its version"
    );
    app.wait_for_status(&id_of(&new), "completed").await;

    // A brand-new template name starts at version 1.
    let fresh = app
        .put_json("/v1/templates/quick", &json!({"tasks": ["check_identity"]}))
        .await;
    fresh.assert_status(201);
    assert_eq!(fresh.body["version"], 1);
    assert_eq!(fresh.body["on_failure"], "hold", "the default");
    // The failure policy is part of a version.
    let compensating = app
        .put_json(
            "/v1/templates/quick",
            &json!({"tasks": ["check_identity"], "on_failure": "compensate"}),
        )
        .await;
    compensating.assert_status(201);
    assert_eq!(
        (
            &compensating.body["version"],
            &compensating.body["on_failure"]
        ),
        (&json!(2), &json!("compensate"))
    );
    app.stop().await;
}

async fn template_versions_with_unknown_or_no_tasks_are_refused(backend: Backend) {
    let app = TestApp::builder(&sim_config())
        .backend(backend)
        .without_runtime()
        .spawn()
        .await;
    app.put_json(
        "/v1/templates/standard",
        &json!({"tasks": ["check_identity", "nope"]}),
    )
    .await
    .assert_error(400, "unknown_task");
    app.put_json("/v1/templates/standard", &json!({"tasks": []}))
        .await
        .assert_error(400, "validation_failed");
    app.put_json(
        "/v1/templates/standard",
        &json!({"tasks": ["check_identity"], "on_failure": "retry_forever"}),
    )
    .await
    .assert_error(400, "validation_failed");
    // A task that needs an earlier step's output, listed first.
    app.put_json(
        "/v1/templates/standard",
        &json!({"tasks": ["create_account", "verify_identity"]}),
    )
    .await
    .assert_error(400, "validation_failed");
    app.put_json(
        "/v1/templates/standard",
        &json!({"tasks": ["check_identity"], "extra": 1}),
    )
    .await
    .assert_error(400, "validation_failed");
    app.put_json(
        "/v1/templates/Bad%20Name",
        &json!({"tasks": ["check_identity"]}),
    )
    .await
    .assert_error(400, "validation_failed");
    assert_eq!(
        app.get("/v1/templates/standard").await.body["versions"],
        json!([1])
    );
    app.stop().await;
}

async fn health_and_readiness_need_no_token(backend: Backend) {
    let app = TestApp::builder(&sim_config())
        .backend(backend)
        .without_runtime()
        .spawn()
        .await;
    let health = app.get_as(None, "/healthz").await;
    health.assert_status(200);
    assert_eq!(health.body, json!({"status": "ok"}));
    let ready = app.get_as(None, "/readyz").await;
    ready.assert_status(200);
    assert_eq!(
        ready.body,
        json!({"status": "ready", "events": {"status": "ok"}})
    );
    app.stop().await;
}
