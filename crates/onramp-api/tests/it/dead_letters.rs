//! `/v1/dead-letters`: listing (with stage filter and cursor), replay, discard, and bulk
//! replay of a stage.

use crate::{id_of, with_crm};
use onramp_testkit::{Backend, Reply, TestApp, factory, step};
use serde_json::{Value, json};

on_both_backends!(
    dead_letters_are_listed_replayed_discarded_and_bulk_replayed_by_stage,
    cancelling_a_failed_onboarding_closes_its_dead_letter,
    a_replayed_step_that_fails_again_is_dead_lettered_again,
);

async fn letters(app: &TestApp, query: &str) -> Vec<Value> {
    let r = app.get(&format!("/v1/dead-letters{query}")).await;
    r.assert_status(200);
    r.body["items"].as_array().unwrap().clone()
}

fn letter_for<'a>(items: &'a [Value], onboarding: &str) -> &'a Value {
    items
        .iter()
        .find(|l| l["onboarding_id"] == onboarding)
        .unwrap_or_else(|| panic!("no dead letter for {onboarding} in {items:#?}"))
}

async fn dead_letters_are_listed_replayed_discarded_and_bulk_replayed_by_stage(backend: Backend) {
    let (crm, config) = with_crm().await;
    crm.script(
        "/verifications",
        [Reply::json(400, json!({"error": "rejected"}))],
    );
    let app = TestApp::spawn_on(backend, &config).await;

    let mut crm_failures = Vec::new();
    for _ in 0..4 {
        crm_failures.push(id_of(
            &app.create_onboarding(factory::with_tasks(&["verify_identity"]))
                .await,
        ));
    }
    let fragile = id_of(
        &app.create_onboarding(factory::with_tasks(&["check_identity", "always_fails"]))
            .await,
    );
    for id in crm_failures.iter().chain([&fragile]) {
        app.wait_for_status(id, "failed").await;
    }

    // Listing: everything, by stage, and page by page (oldest first).
    let all = letters(&app, "").await;
    assert_eq!(all.len(), 5);
    let fragile_letter = letter_for(&all, &fragile);
    assert_eq!(fragile_letter["stage"], "fragile");
    assert_eq!(fragile_letter["step_seq"], 2);
    assert_eq!(fragile_letter["attempts"], 1);
    assert!(
        fragile_letter["error"]
            .as_str()
            .unwrap()
            .contains("simulated failure")
    );
    assert_eq!(letters(&app, "?stage=crm").await.len(), 4);
    assert_eq!(letters(&app, "?stage=fragile").await.len(), 1);
    let page = app.get("/v1/dead-letters?limit=3").await;
    let first_page = page.body["items"].as_array().unwrap().clone();
    assert_eq!(first_page.len(), 3);
    let cursor = page.body["next_cursor"].as_str().expect("a next cursor");
    let second_page = letters(&app, &format!("?limit=3&cursor={cursor}")).await;
    assert_eq!(second_page.len(), 2);
    let mut paged: Vec<Value> = first_page
        .iter()
        .chain(&second_page)
        .map(|l| l["id"].clone())
        .collect();
    let listed: Vec<Value> = all.iter().map(|l| l["id"].clone()).collect();
    assert_eq!(paged, listed, "pages walk the same list in the same order");
    paged.dedup();
    assert_eq!(paged.len(), 5);

    // Discard one: it leaves the list; its onboarding stays failed, no longer retryable.
    let discarded_id = &crm_failures[0];
    let discarded = letter_for(&all, discarded_id)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .post(&format!("/v1/dead-letters/{discarded}/discard"))
        .await;
    r.assert_status(200);
    assert_eq!(r.body["id"], discarded);
    let after = app.onboarding(discarded_id).await;
    assert_eq!(after["status"], "failed");
    assert_eq!(after["retry_available"], false);
    app.post(&format!("/v1/dead-letters/{discarded}/discard"))
        .await
        .assert_error(404, "not_found");
    app.post(&format!("/v1/dead-letters/{discarded}/replay"))
        .await
        .assert_error(404, "not_found");
    app.post(&format!("/v1/onboardings/{discarded_id}/retry"))
        .await
        .assert_error(409, "invalid_transition");
    assert_eq!(letters(&app, "?stage=crm").await.len(), 3);
    let audit = app.audit(discarded_id).await;
    assert!(
        audit.iter().any(|e| e["action"] == "dead_letter.discarded"),
        "{audit:#?}"
    );

    // Bulk replay of the crm stage once the service is healthy again.
    crm.script("/verifications", [Reply::json(200, json!({"id": "v"}))]);
    let r = app.post("/v1/dead-letters/replay?stage=crm").await;
    r.assert_status(202);
    assert_eq!(r.body, json!({"stage": "crm", "replayed": 3}));
    for id in &crm_failures[1..] {
        let done = app.wait_for_status(id, "completed").await;
        assert_eq!(step(&done, 1)["output"], json!({"id": "v"}));
    }
    assert_eq!(letters(&app, "?stage=crm").await, Vec::<Value>::new());
    let rest = letters(&app, "").await;
    assert_eq!(rest.len(), 1, "other stages' dead letters stay: {rest:#?}");
    assert_eq!(rest[0]["onboarding_id"], fragile);
    assert_eq!(app.onboarding(discarded_id).await["status"], "failed");
    let again = app.post("/v1/dead-letters/replay?stage=crm").await;
    assert_eq!(again.body["replayed"], 0);
    app.stop().await;
}

async fn cancelling_a_failed_onboarding_closes_its_dead_letter(backend: Backend) {
    let (crm, config) = with_crm().await;
    crm.script("/verifications", [Reply::status(404)]);
    let app = TestApp::spawn_on(backend, &config).await;
    let id = id_of(
        &app.create_onboarding(factory::with_tasks(&["verify_identity", "check_identity"]))
            .await,
    );
    app.wait_for_status(&id, "failed").await;
    assert_eq!(letters(&app, "").await.len(), 1);

    let r = app
        .post_json(
            &format!("/v1/onboardings/{id}/cancel"),
            &json!({"reason": "gave up"}),
        )
        .await;
    r.assert_status(202);
    let statuses: Vec<&Value> = r.body["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["status"])
        .collect();
    assert_eq!(statuses, ["cancelled", "skipped"]);
    assert_eq!(r.body["retry_available"], false);
    assert_eq!(letters(&app, "").await, Vec::<Value>::new());
    app.assert_audit_chain_valid(&id).await;
    app.stop().await;
}

async fn a_replayed_step_that_fails_again_is_dead_lettered_again(backend: Backend) {
    let (crm, config) = with_crm().await;
    crm.script(
        "/verifications",
        [Reply::json(400, json!({"error": "still no"}))],
    );
    let app = TestApp::spawn_on(backend, &config).await;
    let id = id_of(
        &app.create_onboarding(factory::with_tasks(&["verify_identity"]))
            .await,
    );
    app.wait_for_status(&id, "failed").await;
    let first = letters(&app, "").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    app.post(&format!("/v1/dead-letters/{first}/replay"))
        .await
        .assert_status(202);
    crm.wait_for_requests("/verifications", 2).await;
    let failed = app
        .wait_for_onboarding("the replay to fail again", &id, |o| {
            o["status"] == "failed" && step(o, 1)["attempts"] == 1 && step(o, 1)["status"] == "dead"
        })
        .await;
    assert_eq!(failed["retry_available"], true);
    let now = letters(&app, "").await;
    assert_eq!(now.len(), 1, "{now:#?}");
    assert_ne!(now[0]["id"], first, "a new dead letter for the new failure");
    app.stop().await;
}
