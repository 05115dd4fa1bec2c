//! Work is picked up when it appears, not when a poll comes round: with the poll and
//! scheduler intervals set to an hour, every way a step becomes claimable still runs it
//! promptly (creation, the next step, a retry after its backoff, a resumed stage, a replay).

use crate::{id_of, with_crm};
use onramp_testkit::{Backend, FakeService, Reply, TestApp, factory};
use serde_json::json;

on_both_backends!(
    new_onboardings_and_their_next_steps_are_picked_up_at_once,
    a_retry_runs_when_its_backoff_ends,
    resuming_a_stage_wakes_its_workers,
    replayed_and_retried_steps_run_at_once,
);

const NO_POLLING: &str = "\n[worker]\npoll_interval = \"1h\"\nscheduler_interval = \"1h\"\n";

async fn app_without_polling(backend: Backend) -> (FakeService, TestApp) {
    let (crm, config) = with_crm().await;
    let app = TestApp::spawn_on(backend, &format!("{config}{NO_POLLING}")).await;
    (crm, app)
}

async fn new_onboardings_and_their_next_steps_are_picked_up_at_once(backend: Backend) {
    let (_crm, app) = app_without_polling(backend).await;
    let id = id_of(
        &app.create_onboarding(factory::from_template("provisioned"))
            .await,
    );
    app.wait_for_status(&id, "completed").await;
    app.stop().await;
}

async fn a_retry_runs_when_its_backoff_ends(backend: Backend) {
    let (crm, app) = app_without_polling(backend).await;
    crm.script(
        "/verifications",
        [Reply::status(503), Reply::json(200, json!({"id": "v"}))],
    );
    let id = id_of(
        &app.create_onboarding(factory::with_tasks(&["verify_identity"]))
            .await,
    );
    app.wait_for_status(&id, "completed").await;
    app.stop().await;
}

async fn resuming_a_stage_wakes_its_workers(backend: Backend) {
    let (_crm, app) = app_without_polling(backend).await;
    app.post("/v1/stages/provisioning/pause")
        .await
        .assert_status(200);
    let id = id_of(
        &app.create_onboarding(factory::with_tasks(&["provision"]))
            .await,
    );
    app.post("/v1/stages/provisioning/resume")
        .await
        .assert_status(200);
    app.wait_for_status(&id, "completed").await;
    app.stop().await;
}

async fn replayed_and_retried_steps_run_at_once(backend: Backend) {
    let (crm, app) = app_without_polling(backend).await;
    crm.script("/verifications", [Reply::status(400)]);
    let replayed = id_of(
        &app.create_onboarding(factory::with_tasks(&["verify_identity"]))
            .await,
    );
    let retried = id_of(
        &app.create_onboarding(factory::with_tasks(&["verify_identity"]))
            .await,
    );
    app.wait_for_status(&replayed, "failed").await;
    app.wait_for_status(&retried, "failed").await;

    crm.script("/verifications", [Reply::json(200, json!({"id": "v"}))]);
    let letters = app.get("/v1/dead-letters?stage=crm").await;
    let letter = letters.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["onboarding_id"] == replayed)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post(&format!("/v1/dead-letters/{letter}/replay"))
        .await
        .assert_status(202);
    app.post(&format!("/v1/onboardings/{retried}/retry"))
        .await
        .assert_status(202);
    app.wait_for_status(&replayed, "completed").await;
    app.wait_for_status(&retried, "completed").await;
    app.stop().await;
}
