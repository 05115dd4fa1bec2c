//! Time-driven duties under a manual clock: expired leases are rescued (and the worker that
//! lost its lease is fenced), and steps nobody picks up are dead-lettered.
//!
//! These apps start without workers, so a test can claim a step itself — playing a worker
//! that then vanishes — move the clock, and run one scheduler pass at a time.

use crate::{id_of, sim_config, with_crm};
use onramp_core::outcome::Resolution;
use onramp_core::time::Millis;
use onramp_store::{StepFinish, StepGuard, StepRef, StoreError};
use onramp_testkit::{Backend, ManualClock, Reply, TestApp, factory, step};
use serde_json::json;
use std::time::Duration;

on_both_backends!(
    a_step_whose_worker_vanished_runs_again_after_the_visibility_timeout_and_succeeds_once,
    an_expired_lease_on_the_last_attempt_dead_letters_the_step,
    a_step_queued_longer_than_the_pickup_timeout_is_dead_lettered,
    a_retrying_step_waits_for_its_backoff_to_pass,
    higher_priority_steps_are_claimed_first,
);

/// 2027-01-15T08:00:00Z.
const START: Millis = Millis(1_800_000_000_000);

async fn manual_app(backend: Backend) -> TestApp {
    TestApp::builder(&sim_config())
        .backend(backend)
        .manual_clock(ManualClock::new(START))
        .without_runtime()
        .spawn()
        .await
}

async fn a_step_whose_worker_vanished_runs_again_after_the_visibility_timeout_and_succeeds_once(
    backend: Backend,
) {
    let mut app = manual_app(backend).await;
    let id = id_of(
        &app.create_onboarding(factory::with_tasks(&["check_identity"]))
            .await,
    );

    // A worker claims the step (lease: the stage's 30 s visibility timeout) and vanishes.
    let stage = "checks".parse().unwrap();
    let claimed = app
        .engine
        .store
        .claim(&stage, 10, app.now(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let lost = claimed[0].clone();
    assert_eq!(lost.attempt, 1);
    let running = app.onboarding(&id).await;
    assert_eq!(running["status"], "running");
    assert_eq!(step(&running, 1)["status"], "running");

    // Before the lease runs out nothing happens.
    app.advance(Duration::from_secs(29));
    assert_eq!(app.run_scheduler_once().await, (0, 0));
    assert_eq!(step(&app.onboarding(&id).await, 1)["status"], "running");

    // After it, the step is handed back for another attempt.
    app.advance(Duration::from_secs(2));
    assert_eq!(app.run_scheduler_once().await, (1, 0));
    let rescued = app.onboarding(&id).await;
    let s = step(&rescued, 1);
    assert_eq!(s["status"], "retrying");
    assert_eq!(s["attempts"], 1, "the lost attempt counts");
    assert!(
        s["error"].as_str().unwrap().contains("lease expired"),
        "{s}"
    );

    // The vanished worker comes back with its result: refused, the lease is gone.
    let late = app
        .engine
        .store
        .finish_steps(vec![StepFinish {
            step: StepRef {
                onboarding_id: lost.onboarding_id.clone(),
                seq: lost.seq,
                stage: lost.stage.clone(),
            },
            guard: StepGuard::Lease(lost.lease),
            resolution: Resolution::Succeed(json!({"late": true})),
            now: app.now(),
            actor: "worker".into(),
        }])
        .await;
    assert!(matches!(late[0], Err(StoreError::Conflict(_))), "{late:?}");

    // A live worker runs it; it succeeds exactly once.
    app.start_runtime();
    let done = app.wait_for_status(&id, "completed").await;
    let s = step(&done, 1);
    assert_eq!(s["attempts"], 2);
    assert_eq!(
        s["output"]["simulated"], true,
        "the late result was not recorded: {s}"
    );
    let audit = app.audit(&id).await;
    let successes = audit
        .iter()
        .filter(|e| e["action"] == "step.succeeded")
        .count();
    assert_eq!(successes, 1, "{audit:#?}");
    assert_eq!(
        audit
            .iter()
            .filter(|e| e["action"] == "step.running")
            .count(),
        2,
        "two attempts: {audit:#?}"
    );
    app.assert_audit_chain_valid(&id).await;
    app.stop().await;
}

async fn an_expired_lease_on_the_last_attempt_dead_letters_the_step(backend: Backend) {
    let app = manual_app(backend).await;
    let id = id_of(
        &app.create_onboarding(factory::with_tasks(&["always_fails"]))
            .await,
    );
    let stage = "fragile".parse().unwrap();
    let claimed = app
        .engine
        .store
        .claim(&stage, 1, app.now(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);

    app.advance(Duration::from_secs(31));
    assert_eq!(app.run_scheduler_once().await, (1, 0));
    let failed = app.onboarding(&id).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["retry_available"], true);
    assert_eq!(step(&failed, 1)["status"], "dead");
    let letters = app.get("/v1/dead-letters?stage=fragile").await;
    assert_eq!(
        letters.body["items"].as_array().unwrap().len(),
        1,
        "{letters}"
    );
    app.stop().await;
}

async fn a_step_queued_longer_than_the_pickup_timeout_is_dead_lettered(backend: Backend) {
    let mut app = manual_app(backend).await;
    let id = id_of(
        &app.create_onboarding(factory::with_tasks(&["check_identity", "check_credit"]))
            .await,
    );

    app.advance(Duration::from_secs(9 * 60));
    assert_eq!(app.run_scheduler_once().await, (0, 0));
    assert_eq!(app.onboarding(&id).await["status"], "pending");

    app.advance(Duration::from_secs(2 * 60));
    assert_eq!(app.run_scheduler_once().await, (0, 1));
    let failed = app.onboarding(&id).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["retry_available"], true);
    let s = step(&failed, 1);
    assert_eq!(s["status"], "dead");
    assert_eq!(s["attempts"], 0, "it never ran");
    assert!(
        s["error"].as_str().unwrap().contains("pickup timeout"),
        "{s}"
    );
    let letters = app.get("/v1/dead-letters?stage=checks").await;
    let items = letters.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{letters}");
    assert_eq!(items[0]["onboarding_id"], id);

    // Replayed, it re-enters the queue with a fresh pickup window, and a worker runs it.
    let letter = items[0]["id"].as_str().unwrap();
    app.post(&format!("/v1/dead-letters/{letter}/replay"))
        .await
        .assert_status(202);
    app.advance(Duration::from_secs(60));
    assert_eq!(app.run_scheduler_once().await, (0, 0));
    app.start_runtime();
    app.wait_for_status(&id, "completed").await;
    app.assert_audit_chain_valid(&id).await;
    app.stop().await;
}

async fn a_retrying_step_waits_for_its_backoff_to_pass(backend: Backend) {
    let (crm, config) = with_crm().await;
    // Full jitter may draw a zero backoff; `Retry-After` makes the wait at least 1 s.
    crm.script(
        "/verifications",
        [
            Reply::status(503).with_header("Retry-After", "1"),
            Reply::json(200, json!({"id": "v"})),
        ],
    );
    let app = TestApp::builder(&config)
        .backend(backend)
        .manual_clock(ManualClock::new(START))
        .spawn()
        .await;
    let id = id_of(
        &app.create_onboarding(factory::with_tasks(&["verify_identity"]))
            .await,
    );

    // The clock stands still, so the second attempt is never due.
    let waiting = app.wait_for_step_status(&id, 1, "retrying").await;
    assert_eq!(step(&waiting, 1)["attempts"], 1);
    let stages = app.get("/v1/stages").await;
    let crm_stage = stages
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "crm")
        .unwrap();
    assert_eq!(crm_stage["retrying"], 1, "{stages}");
    assert_eq!(crm.requests_to("/verifications").len(), 1);

    app.advance(Duration::from_secs(1));
    let done = app.wait_for_status(&id, "completed").await;
    assert_eq!(step(&done, 1)["attempts"], 2);
    app.stop().await;
}

async fn higher_priority_steps_are_claimed_first(backend: Backend) {
    let app = manual_app(backend).await;
    let low = id_of(
        &app.create_onboarding(factory::with_tasks(&["check_identity"]))
            .await,
    );
    let mut urgent_body = factory::with_tasks(&["check_identity"]);
    urgent_body["priority"] = json!(9);
    let urgent = id_of(&app.create_onboarding(urgent_body).await);

    let stage = "checks".parse().unwrap();
    let first = app
        .engine
        .store
        .claim(&stage, 1, app.now(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(first[0].onboarding_id.as_str(), urgent);
    let second = app
        .engine
        .store
        .claim(&stage, 1, app.now(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(second[0].onboarding_id.as_str(), low);
    app.stop().await;
}
