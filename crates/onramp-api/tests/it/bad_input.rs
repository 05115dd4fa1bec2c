//! Bad requests get the SPEC's 4xx with the error JSON — never a 500 — and change nothing.

use crate::{id_of, sim_config};
use onramp_core::auth::Role;
use onramp_testkit::{Backend, TestApp, factory};
use reqwest::Method;
use serde_json::{Value, json};

on_both_backends!(
    invalid_onboarding_bodies_are_refused_with_400_and_create_nothing,
    malformed_json_wrong_content_types_and_huge_bodies_are_refused,
    missing_invalid_and_revoked_tokens_get_401,
    roles_without_the_permission_get_403,
    unknown_ids_names_and_routes_get_404,
    transitions_the_state_machine_refuses_get_409,
    bad_query_parameters_and_methods_are_refused,
    values_at_the_limits_are_accepted,
    undecodable_paths_and_queries_get_the_error_json,
);

fn valid() -> Value {
    factory::with_tasks(&["check_identity"])
}

fn with(mut body: Value, pointer: &str, value: Value) -> Value {
    *body
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in the body")) = value;
    body
}

fn with_priority(p: i64) -> Value {
    let mut body = valid();
    body["priority"] = json!(p);
    body
}

async fn invalid_onboarding_bodies_are_refused_with_400_and_create_nothing(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    let mut unknown_top = valid();
    unknown_top["colour"] = json!("blue");
    let mut unknown_customer = valid();
    unknown_customer["customer"]["shoe_size"] = json!(44);
    let mut both = valid();
    both["template"] = json!("standard");
    let cases: Vec<(&str, Value, &str, Option<&str>)> = vec![
        (
            "unknown top-level field",
            unknown_top,
            "validation_failed",
            None,
        ),
        (
            "unknown customer field",
            unknown_customer,
            "validation_failed",
            None,
        ),
        (
            "a NUL character in the name",
            with(valid(), "/customer/name", json!("Ada\u{0}")),
            "validation_failed",
            Some("customer.name"),
        ),
        (
            "empty task list",
            with(valid(), "/tasks", json!([])),
            "validation_failed",
            Some("tasks"),
        ),
        (
            "neither template nor tasks",
            json!({"customer": factory::customer()}),
            "validation_failed",
            Some("tasks"),
        ),
        (
            "template and tasks",
            both,
            "validation_failed",
            Some("template"),
        ),
        (
            "unknown task",
            with(
                valid(),
                "/tasks",
                json!(["check_identity", "launch_rocket"]),
            ),
            "unknown_task",
            None,
        ),
        (
            "malformed task name",
            with(valid(), "/tasks", json!(["Not A Task!"])),
            "unknown_task",
            None,
        ),
        (
            "unknown template",
            json!({"customer": factory::customer(), "template": "nope"}),
            "unknown_template",
            None,
        ),
        (
            "bad email",
            with(valid(), "/customer/email", json!("not-an-email")),
            "validation_failed",
            Some("customer.email"),
        ),
        (
            "empty name",
            with(valid(), "/customer/name", json!("")),
            "validation_failed",
            Some("customer.name"),
        ),
        (
            "name over 200 characters",
            with(valid(), "/customer/name", json!("x".repeat(201))),
            "validation_failed",
            Some("customer.name"),
        ),
        (
            "missing customer",
            json!({"tasks": ["check_identity"]}),
            "validation_failed",
            None,
        ),
        (
            "customer of the wrong type",
            with(valid(), "/customer", json!("Ada")),
            "validation_failed",
            None,
        ),
        (
            "tasks of the wrong type",
            with(valid(), "/tasks", json!("check_identity")),
            "validation_failed",
            None,
        ),
        (
            "priority above 9",
            with_priority(10),
            "validation_failed",
            Some("priority"),
        ),
        (
            "negative priority",
            with_priority(-1),
            "validation_failed",
            Some("priority"),
        ),
        ("a JSON array", json!([1, 2]), "validation_failed", None),
    ];
    for (what, body, code, field) in cases {
        let r = app.post_json("/v1/onboardings", &body).await;
        assert_eq!(r.status, 400, "{what}: {r}");
        r.assert_error(400, code);
        if let Some(field) = field {
            let fields: Vec<&str> = r.body["error"]["details"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|d| d["field"].as_str())
                .collect();
            assert!(
                fields.contains(&field),
                "{what}: expected a detail about {field}: {r}"
            );
        }
    }
    let list = app.get("/v1/onboardings").await;
    assert_eq!(list.body["items"], json!([]), "nothing was created");
    app.stop().await;
}

async fn malformed_json_wrong_content_types_and_huge_bodies_are_refused(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    let post = |content_type: Option<&'static str>, body: Vec<u8>| {
        let mut request = app.request(Method::POST, "/v1/onboardings").body(body);
        if let Some(ct) = content_type {
            request = request.header("Content-Type", ct);
        }
        app.send(request)
    };
    let valid_text = serde_json::to_vec(&valid()).unwrap();

    post(Some("application/json"), b"{\"customer\": {".to_vec())
        .await
        .assert_error(400, "validation_failed");
    post(Some("application/json"), Vec::new())
        .await
        .assert_error(400, "validation_failed");
    post(None, valid_text.clone())
        .await
        .assert_error(415, "unsupported_media_type");
    post(Some("text/plain"), valid_text.clone())
        .await
        .assert_error(415, "unsupported_media_type");
    post(
        Some("application/x-www-form-urlencoded"),
        b"customer=ada".to_vec(),
    )
    .await
    .assert_error(415, "unsupported_media_type");

    // Over 1 MiB: a valid body padded with a huge attribute.
    let mut huge = valid();
    huge["customer"]["attributes"] = json!({"blob": "x".repeat(1024 * 1024)});
    post(Some("application/json"), serde_json::to_vec(&huge).unwrap())
        .await
        .assert_error(413, "payload_too_large");

    // Just under the limit is fine as far as size goes.
    let mut big = valid();
    big["customer"]["attributes"] = json!({"blob": "x".repeat(1000 * 1024)});
    post(Some("application/json"), serde_json::to_vec(&big).unwrap())
        .await
        .assert_status(201);
    app.stop().await;
}

async fn missing_invalid_and_revoked_tokens_get_401(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    let r = app.get_as(None, "/v1/onboardings").await;
    r.assert_error(401, "unauthenticated");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    app.get_as(Some("onr_not-a-real-token-at-all"), "/v1/onboardings")
        .await
        .assert_error(401, "unauthenticated");
    let basic = app
        .send(
            app.request_as(None, Method::GET, "/v1/stages")
                .basic_auth("admin", Some("pw")),
        )
        .await;
    basic.assert_error(401, "unauthenticated");
    app.post_json_as(None, "/v1/onboardings", &valid())
        .await
        .assert_error(401, "unauthenticated");

    let viewer = app.token(Role::Viewer).await;
    app.get_as(Some(&viewer), "/v1/onboardings")
        .await
        .assert_status(200);
    let name = app
        .engine
        .store
        .list_tokens()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.role == Role::Viewer)
        .unwrap()
        .name;
    app.engine
        .store
        .revoke_token(&name, app.now(), "test")
        .await
        .unwrap();
    app.get_as(Some(&viewer), "/v1/onboardings")
        .await
        .assert_error(401, "unauthenticated");
    app.stop().await;
}

async fn roles_without_the_permission_get_403(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    let viewer = app.token(Role::Viewer).await;
    let service = app.token(Role::Service).await;
    let csr = app.token(Role::Csr).await;
    let operator = app.token(Role::Operator).await;
    let id = id_of(&app.create_onboarding(valid()).await);
    let template = json!({"tasks": ["check_identity"]});

    for (who, token) in [("viewer", &viewer), ("csr", &csr)] {
        let r = app
            .post_json_as(Some(token), "/v1/onboardings", &valid())
            .await;
        assert_eq!(r.status, 403, "{who} may not create: {r}");
        r.assert_error(403, "forbidden");
    }
    for (who, token) in [("viewer", &viewer), ("service", &service), ("csr", &csr)] {
        let cancel = app
            .post_json_as(
                Some(token),
                &format!("/v1/onboardings/{id}/cancel"),
                &json!({}),
            )
            .await;
        assert_eq!(cancel.status, 403, "{who} may not cancel: {cancel}");
        let pause = app
            .post_json_as(Some(token), "/v1/stages/checks/pause", &json!({}))
            .await;
        assert_eq!(pause.status, 403, "{who} may not pause: {pause}");
    }
    for (who, token) in [("service", &service), ("csr", &csr)] {
        let r = app.get_as(Some(token), "/v1/dead-letters").await;
        assert_eq!(r.status, 403, "{who} may not read dead letters: {r}");
    }
    for (who, token) in [
        ("operator", &operator),
        ("viewer", &viewer),
        ("service", &service),
    ] {
        let r = app
            .send(
                app.request_as(Some(token), Method::PUT, "/v1/templates/standard")
                    .json(&template),
            )
            .await;
        assert_eq!(r.status, 403, "{who} may not change templates: {r}");
        r.assert_error(403, "forbidden");
    }
    // What each role may do, it can.
    app.post_json_as(Some(&service), "/v1/onboardings", &valid())
        .await
        .assert_status(201);
    for token in [&viewer, &service, &csr, &operator] {
        app.get_as(Some(token), &format!("/v1/onboardings/{id}"))
            .await
            .assert_status(200);
    }
    app.get_as(Some(&viewer), "/v1/stages")
        .await
        .assert_status(200);
    app.post_json_as(Some(&operator), "/v1/stages/checks/pause", &json!({}))
        .await
        .assert_status(200);
    app.stop().await;
}

async fn unknown_ids_names_and_routes_get_404(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    let missing_onboarding = "onb_00000000000000000000000000000000";
    let missing_letter = "dlq_00000000000000000000000000000000";
    for path in [
        format!("/v1/onboardings/{missing_onboarding}"),
        format!("/v1/onboardings/{missing_onboarding}/status"),
        format!("/v1/onboardings/{missing_onboarding}/audit"),
        "/v1/onboardings/not-an-id".to_owned(),
        "/v1/onboardings/stp_00000000000000000000000000000000".to_owned(),
        "/v1/templates/nope".to_owned(),
        "/v1/templates/standard?version=99".to_owned(),
        "/v1/no-such-thing".to_owned(),
        "/nothing-here".to_owned(),
    ] {
        let r = app.get(&path).await;
        assert_eq!(r.status, 404, "{path}: {r}");
        r.assert_error(404, "not_found");
    }
    for path in [
        format!("/v1/onboardings/{missing_onboarding}/retry"),
        format!("/v1/onboardings/{missing_onboarding}/cancel"),
        format!("/v1/dead-letters/{missing_letter}/replay"),
        format!("/v1/dead-letters/{missing_letter}/discard"),
        "/v1/dead-letters/nope/replay".to_owned(),
        "/v1/dead-letters/replay?stage=nope".to_owned(),
        "/v1/stages/nope/pause".to_owned(),
        "/v1/stages/nope/resume".to_owned(),
    ] {
        let r = app.post(&path).await;
        assert_eq!(r.status, 404, "{path}: {r}");
        r.assert_error(404, "not_found");
    }
    app.stop().await;
}

async fn transitions_the_state_machine_refuses_get_409(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    let id = id_of(&app.create_onboarding(valid()).await);
    app.wait_for_status(&id, "completed").await;

    let retry = app.post(&format!("/v1/onboardings/{id}/retry")).await;
    retry.assert_error(409, "invalid_transition");
    let cancel = app
        .post_json(
            &format!("/v1/onboardings/{id}/cancel"),
            &json!({"reason": "too late"}),
        )
        .await;
    cancel.assert_error(409, "invalid_transition");

    // Held in a paused stage, so it cannot complete before it is cancelled.
    app.post("/v1/stages/provisioning/pause")
        .await
        .assert_status(200);
    let other = id_of(
        &app.create_onboarding(factory::with_tasks(&["provision"]))
            .await,
    );
    app.post_json(
        &format!("/v1/onboardings/{other}/cancel"),
        &json!({"reason": "changed mind"}),
    )
    .await
    .assert_status(202);
    app.post_json(
        &format!("/v1/onboardings/{other}/cancel"),
        &json!({"reason": "again"}),
    )
    .await
    .assert_error(409, "invalid_transition");
    app.post(&format!("/v1/onboardings/{other}/retry"))
        .await
        .assert_error(409, "invalid_transition");

    let after = app.onboarding(&id).await;
    assert_eq!(
        after["status"], "completed",
        "refused requests change nothing"
    );
    app.stop().await;
}

async fn bad_query_parameters_and_methods_are_refused(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    for path in [
        "/v1/onboardings?limit=0",
        "/v1/onboardings?limit=501",
        "/v1/onboardings?limit=ten",
        "/v1/onboardings?cursor=garbage!",
        "/v1/onboardings?status=sleeping",
        "/v1/onboardings?stage=Not%20A%20Stage",
        "/v1/dead-letters?limit=-1",
        "/v1/templates/standard?version=first",
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status, 400, "{path}: {r}");
        r.assert_error(400, "validation_failed");
    }
    app.get("/v1/onboardings?limit=500")
        .await
        .assert_status(200);
    app.post("/v1/dead-letters/replay")
        .await
        .assert_error(400, "validation_failed");

    let wrong_method = app
        .send(app.request(Method::DELETE, "/v1/onboardings"))
        .await;
    wrong_method.assert_error(405, "method_not_allowed");
    let cancel_reason_too_long = app
        .post_json(
            "/v1/onboardings/onb_00000000000000000000000000000000/cancel",
            &json!({"reason": "x".repeat(1001)}),
        )
        .await;
    assert_eq!(
        cancel_reason_too_long.status / 100,
        4,
        "{cancel_reason_too_long}"
    );
    let cancel_unknown_field = app
        .post_json(
            "/v1/onboardings/onb_00000000000000000000000000000000/cancel",
            &json!({"why": "x"}),
        )
        .await;
    cancel_unknown_field.assert_error(400, "validation_failed");
    app.stop().await;
}

async fn values_at_the_limits_are_accepted(backend: Backend) {
    let app = TestApp::builder(&sim_config())
        .backend(backend)
        .without_runtime()
        .spawn()
        .await;
    let mut body = valid();
    body["customer"] = json!({
        "name": "é".repeat(200),
        "email": "ada+onboarding@sub.example.co.uk",
        "company": "c".repeat(200),
        "external_ref": "r".repeat(200),
        "attributes": {"plan": "pro", "seats": 12},
    });
    body["priority"] = json!(9);
    let r = app
        .send(
            app.request(Method::POST, "/v1/onboardings")
                .header("Content-Type", "application/json; charset=utf-8")
                .body(serde_json::to_vec(&body).unwrap()),
        )
        .await;
    r.assert_status(201);
    assert_eq!(r.body["customer"], body["customer"]);
    let mut zero = valid();
    zero["priority"] = json!(0);
    app.create_onboarding(zero).await;
    app.stop().await;
}

async fn undecodable_paths_and_queries_get_the_error_json(backend: Backend) {
    let app = TestApp::builder(&sim_config())
        .backend(backend)
        .without_runtime()
        .spawn()
        .await;
    for path in [
        "/v1/onboardings/%FF",
        "/v1/onboardings/%FF/status",
        "/v1/templates/%FF",
        "/v1/onboardings?limit=%FF",
        "/v1/dead-letters?stage=%FF",
    ] {
        let r = app.get(path).await;
        assert!(r.status == 400 || r.status == 404, "{path}: {r}");
        assert!(r.error_code().is_some(), "{path}: not the error JSON: {r}");
    }
    for path in ["/v1/stages/%FF/pause", "/v1/dead-letters/replay?stage=%FF"] {
        let r = app.post(path).await;
        assert!(r.status == 400 || r.status == 404, "{path}: {r}");
        assert!(r.error_code().is_some(), "{path}: not the error JSON: {r}");
    }
    app.stop().await;
}
