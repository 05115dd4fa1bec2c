//! `Idempotency-Key` on `POST /v1/onboardings` (SPEC §7): a repeat gets the original
//! response, a reuse with another body gets 422, and racing repeats create one onboarding.

use crate::{id_of, sim_config};
use onramp_core::auth::Role;
use onramp_testkit::{ApiResponse, Backend, TestApp, factory};
use reqwest::Method;
use serde_json::{Value, json};

on_both_backends!(
    the_same_key_and_body_again_returns_the_original_response,
    the_same_key_with_another_body_is_refused_with_422,
    the_order_of_keys_in_the_body_does_not_make_it_another_request,
    keys_belong_to_the_caller_so_two_callers_never_collide,
    twenty_concurrent_requests_with_one_key_create_exactly_one_onboarding,
    an_overlong_key_is_refused,
);

async fn create_with_key(app: &TestApp, token: &str, key: &str, body: &Value) -> ApiResponse {
    app.send(
        app.request_as(Some(token), Method::POST, "/v1/onboardings")
            .header("Idempotency-Key", key)
            .json(body),
    )
    .await
}

async fn count_for(app: &TestApp, body: &Value) -> usize {
    let email = body["customer"]["email"].as_str().unwrap();
    let list = app.get(&format!("/v1/onboardings?q={email}")).await;
    list.assert_status(200);
    list.body["items"].as_array().unwrap().len()
}

async fn the_same_key_and_body_again_returns_the_original_response(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    let body = factory::with_tasks(&["check_identity"]);
    let first = create_with_key(&app, &app.admin_token, "signup-1", &body).await;
    first.assert_status(201);
    assert_eq!(first.header("idempotent-replayed"), None);
    let id = id_of(&first.body);
    // Let the onboarding move on: the replay still shows the response as first given.
    app.wait_for_status(&id, "completed").await;

    let again = create_with_key(&app, &app.admin_token, "signup-1", &body).await;
    again.assert_status(201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(again.body, first.body);
    assert_eq!(count_for(&app, &body).await, 1);
    app.stop().await;
}

async fn the_same_key_with_another_body_is_refused_with_422(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    let body = factory::with_tasks(&["check_identity"]);
    create_with_key(&app, &app.admin_token, "k-1", &body)
        .await
        .assert_status(201);

    let mut other = body.clone();
    other["tasks"] = json!(["check_credit"]);
    create_with_key(&app, &app.admin_token, "k-1", &other)
        .await
        .assert_error(422, "idempotency_key_reused");
    assert_eq!(count_for(&app, &body).await, 1);
    app.stop().await;
}

async fn the_order_of_keys_in_the_body_does_not_make_it_another_request(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    let send_raw = |text: &'static str| {
        app.send(
            app.request(Method::POST, "/v1/onboardings")
                .header("Idempotency-Key", "ordered")
                .header("Content-Type", "application/json")
                .body(text),
        )
    };
    let first = send_raw(
        r#"{"customer": {"name": "Ada", "email": "ada@example.com"}, "tasks": ["check_identity"]}"#,
    )
    .await;
    first.assert_status(201);
    let again = send_raw(
        r#"{"tasks": ["check_identity"], "customer": {"email": "ada@example.com", "name": "Ada"}}"#,
    )
    .await;
    again.assert_status(201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body["id"], first.body["id"]);
    app.stop().await;
}

async fn keys_belong_to_the_caller_so_two_callers_never_collide(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    let service = app.token(Role::Service).await;
    let body = factory::with_tasks(&["check_identity"]);
    let mine = create_with_key(&app, &app.admin_token, "shared", &body).await;
    let theirs = create_with_key(&app, &service, "shared", &body).await;
    mine.assert_status(201);
    theirs.assert_status(201);
    assert_eq!(theirs.header("idempotent-replayed"), None);
    assert_ne!(mine.body["id"], theirs.body["id"]);
    app.stop().await;
}

async fn twenty_concurrent_requests_with_one_key_create_exactly_one_onboarding(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    let body = factory::with_tasks(&["check_identity", "check_credit"]);
    let responses = futures::future::join_all(
        (0..20).map(|_| create_with_key(&app, &app.admin_token, "burst", &body)),
    )
    .await;

    let mut ids = Vec::new();
    let mut originals = 0;
    for r in &responses {
        match r.status {
            201 => {
                ids.push(r.body["id"].clone());
                if r.header("idempotent-replayed").is_none() {
                    originals += 1;
                }
            }
            // SPEC §7 allows telling a repeat that the original is still being processed.
            409 => assert_eq!(r.error_code(), Some("request_in_progress"), "{r}"),
            _ => panic!("unexpected answer to a repeat: {r}"),
        }
    }
    assert!(!ids.is_empty());
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "different onboardings: {ids:?}"
    );
    assert_eq!(originals, 1, "exactly one response is the original");
    assert_eq!(count_for(&app, &body).await, 1);
    app.wait_for_status(ids[0].as_str().unwrap(), "completed")
        .await;
    app.stop().await;
}

async fn an_overlong_key_is_refused(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    let body = factory::with_tasks(&["check_identity"]);
    let r = create_with_key(&app, &app.admin_token, &"k".repeat(256), &body).await;
    r.assert_error(400, "validation_failed");
    assert_eq!(count_for(&app, &body).await, 0);
    app.stop().await;
}
