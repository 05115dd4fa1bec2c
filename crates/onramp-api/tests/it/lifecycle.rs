//! An onboarding from creation to `completed`: the JSON the API shows on the way, the status
//! endpoint, and the audit trail of every transition.

use crate::{id_of, sim_config};
use onramp_testkit::{Backend, TestApp, factory, step};
use serde_json::{Value, json};

on_both_backends!(
    a_template_onboarding_is_created_pending_and_runs_every_step_to_completed,
    steps_run_strictly_in_order_and_progress_counts_succeeded_steps,
    every_transition_is_in_the_audit_log_as_a_verifiable_hash_chain,
    a_higher_priority_is_kept_and_shown,
);

fn is_rfc3339_utc(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.ends_with('Z') && s.parse::<jiff::Timestamp>().is_ok())
}

async fn a_template_onboarding_is_created_pending_and_runs_every_step_to_completed(
    backend: Backend,
) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    let body = factory::from_template("standard");

    let response = app.post_json("/v1/onboardings", &body).await;
    response.assert_status(201);
    let created = &response.body;
    let id = id_of(created);
    assert!(id.starts_with("onb_"), "{created}");
    assert_eq!(
        response.header("location"),
        Some(format!("/v1/onboardings/{id}").as_str())
    );
    assert_eq!(response.header("idempotent-replayed"), None);
    assert_eq!(created["customer"], body["customer"]);
    assert_eq!(
        created["template"],
        json!({"name": "standard", "version": 1})
    );
    assert_eq!(created["status"], "pending");
    assert_eq!(created["stage"], "checks");
    assert_eq!(created["progress"], 0);
    assert_eq!(created["priority"], 0);
    assert_eq!(created["error"], Value::Null);
    assert_eq!(created["retry_available"], false);
    assert!(is_rfc3339_utc(&created["created_at"]), "{created}");
    assert_eq!(created["completed_at"], Value::Null);
    let tasks: Vec<&Value> = created["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["task"])
        .collect();
    assert_eq!(tasks, ["check_identity", "check_credit"]);
    assert_eq!(step(created, 1)["status"], "queued");
    assert_eq!(step(created, 2)["status"], "pending");
    let first = step(created, 1);
    assert!(first["id"].as_str().unwrap().starts_with("stp_"), "{first}");
    assert_eq!(first["stage"], "checks");
    assert_eq!(first["kind"], "sim");
    assert_eq!(first["attempts"], 0);

    let done = app.wait_for_status(&id, "completed").await;
    assert_eq!(done["progress"], 100);
    assert_eq!(done["stage"], Value::Null);
    assert_eq!(done["error"], Value::Null);
    assert!(is_rfc3339_utc(&done["completed_at"]), "{done}");
    for seq in [1, 2] {
        let s = step(&done, seq);
        assert_eq!(s["status"], "succeeded", "{done}");
        assert_eq!(s["attempts"], 1, "{done}");
        assert_eq!(s["output"]["simulated"], true, "{done}");
        assert_eq!(s["error"], Value::Null, "{done}");
        assert!(
            is_rfc3339_utc(&s["started_at"]) && is_rfc3339_utc(&s["finished_at"]),
            "{done}"
        );
    }

    let status = app.get(&format!("/v1/onboardings/{id}/status")).await;
    status.assert_status(200);
    assert_eq!(
        status.body,
        json!({"id": id, "status": "completed", "stage": null, "progress": 100,
               "error": null, "retry_available": false})
    );
    app.stop().await;
}

async fn steps_run_strictly_in_order_and_progress_counts_succeeded_steps(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    app.post("/v1/stages/provisioning/pause")
        .await
        .assert_status(200);

    let created = app
        .create_onboarding(factory::with_tasks(&["check_identity", "provision"]))
        .await;
    let id = id_of(&created);
    assert_eq!(created["template"], Value::Null);

    // Step 1 succeeds; step 2 waits in its paused stage.
    let halfway = app.wait_for_step_status(&id, 2, "queued").await;
    assert_eq!(step(&halfway, 1)["status"], "succeeded");
    let status = app.get(&format!("/v1/onboardings/{id}/status")).await;
    assert_eq!(status.body["status"], "running");
    assert_eq!(status.body["stage"], "provisioning");
    assert_eq!(status.body["progress"], 50);

    app.post("/v1/stages/provisioning/resume")
        .await
        .assert_status(200);
    let done = app.wait_for_status(&id, "completed").await;
    assert_eq!(done["progress"], 100);
    let first_finished = step(&done, 1)["finished_at"].as_str().unwrap().to_owned();
    let second_started = step(&done, 2)["started_at"].as_str().unwrap().to_owned();
    let (a, b): (jiff::Timestamp, jiff::Timestamp) = (
        first_finished.parse().unwrap(),
        second_started.parse().unwrap(),
    );
    assert!(a <= b, "step 2 started ({b}) before step 1 finished ({a})");
    app.stop().await;
}

async fn every_transition_is_in_the_audit_log_as_a_verifiable_hash_chain(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    let id = id_of(
        &app.create_onboarding(factory::from_template("standard"))
            .await,
    );
    app.wait_for_status(&id, "completed").await;

    let entries = app.audit(&id).await;
    let actions: Vec<(&str, Option<u64>, &Value, &Value)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["detail"]["step_seq"].as_u64(),
                &e["from"],
                &e["to"],
            )
        })
        .collect();
    let null = Value::Null;
    let s = |v: &str| Value::String(v.to_owned());
    assert_eq!(
        actions,
        vec![
            ("onboarding.created", None, &null, &s("pending")),
            ("step.queued", Some(1), &s("pending"), &s("queued")),
            ("onboarding.running", None, &s("pending"), &s("running")),
            ("step.running", Some(1), &s("queued"), &s("running")),
            ("step.succeeded", Some(1), &s("running"), &s("succeeded")),
            ("step.queued", Some(2), &s("pending"), &s("queued")),
            ("step.running", Some(2), &s("queued"), &s("running")),
            ("step.succeeded", Some(2), &s("running"), &s("succeeded")),
            ("onboarding.completed", None, &s("running"), &s("completed")),
        ],
        "{entries:#?}"
    );
    assert_eq!(entries[0]["actor"], "token:test-admin");
    assert_eq!(entries[3]["actor"], "worker");
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1, "{e}");
        assert!(is_rfc3339_utc(&e["at"]), "{e}");
        assert_eq!(e["hash"].as_str().map(str::len), Some(64), "{e}");
        if i > 0 {
            assert_eq!(
                e["prev_hash"],
                entries[i - 1]["hash"],
                "chain broken at {i}"
            );
        }
    }
    app.assert_audit_chain_valid(&id).await;
    app.stop().await;
}

async fn a_higher_priority_is_kept_and_shown(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    let mut body = factory::with_tasks(&["check_identity"]);
    body["priority"] = json!(9);
    let created = app.create_onboarding(body).await;
    assert_eq!(created["priority"], 9);
    let done = app.wait_for_status(&id_of(&created), "completed").await;
    assert_eq!(done["priority"], 9);
    app.stop().await;
}
