//! `GET /openapi.json`: an OpenAPI 3.1 document, served without a token, that lists every
//! route the server answers (SPEC §7) with its bearer security, and nothing it does not.
//!
//! The router and the document are built from one list (`routes!` in `routes/mod.rs`);
//! these tests check the result from the outside: against SPEC's route table, and by asking
//! the live server for every documented operation.

use crate::sim_config;
use onramp_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeSet;

on_both_backends!(
    the_document_is_openapi_3_1_with_unique_operation_ids_served_without_a_token,
    every_route_of_the_spec_is_documented_and_nothing_else,
    every_documented_operation_is_served,
    everything_under_v1_needs_the_bearer_token_and_nothing_else_does,
    every_reference_and_link_resolves_and_every_error_response_is_the_error_json,
    an_optional_body_may_be_absent_empty_or_null_as_documented,
);

/// SPEC §7's table, plus the routes onramp adds beside it (a task by id, the event stream,
/// the audit chain of administrative actions, one webhook endpoint and its deliveries).
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/onboardings"),
    ("GET", "/v1/onboardings"),
    ("GET", "/v1/onboardings/{id}"),
    ("GET", "/v1/onboardings/{id}/status"),
    ("GET", "/v1/onboardings/{id}/events"),
    ("GET", "/v1/onboardings/{id}/audit"),
    ("POST", "/v1/onboardings/{id}/retry"),
    ("POST", "/v1/onboardings/{id}/cancel"),
    ("POST", "/v1/onboardings/{id}/signals/{name}"),
    ("GET", "/v1/tasks"),
    ("GET", "/v1/tasks/{id}"),
    ("POST", "/v1/tasks/{id}/complete"),
    ("POST", "/v1/tasks/{id}/assign"),
    ("POST", "/v1/csrs"),
    ("GET", "/v1/csrs"),
    ("GET", "/v1/csrs/{id}"),
    ("PATCH", "/v1/csrs/{id}"),
    ("DELETE", "/v1/csrs/{id}"),
    ("GET", "/v1/csrs/{id}/schedule"),
    ("GET", "/v1/dead-letters"),
    ("POST", "/v1/dead-letters/{id}/replay"),
    ("POST", "/v1/dead-letters/{id}/discard"),
    ("POST", "/v1/dead-letters/replay"),
    ("GET", "/v1/stages"),
    ("POST", "/v1/stages/{name}/pause"),
    ("POST", "/v1/stages/{name}/resume"),
    ("GET", "/v1/services"),
    ("GET", "/v1/templates"),
    ("GET", "/v1/templates/{name}"),
    ("PUT", "/v1/templates/{name}"),
    ("GET", "/v1/events"),
    ("GET", "/v1/audit"),
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/webhooks"),
    ("GET", "/v1/webhooks/{id}"),
    ("DELETE", "/v1/webhooks/{id}"),
    ("GET", "/v1/webhooks/{id}/deliveries"),
    ("POST", "/v1/webhooks/{id}/deliveries/replay"),
    ("POST", "/v1/webhooks/{id}/deliveries/{delivery}/replay"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
];

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn document(app: &TestApp) -> Value {
    let r = app.get_as(None, "/openapi.json").await;
    r.assert_status(200);
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json"),
    );
    assert!(r.body.is_object(), "not a JSON document: {}", r.text);
    r.body
}

/// Every `(METHOD, path, operation)` of the document.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let paths = doc["paths"].as_object().expect("paths");
    let mut out = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((method.to_uppercase(), path.clone(), op));
            }
        }
    }
    out
}

async fn the_document_is_openapi_3_1_with_unique_operation_ids_served_without_a_token(
    backend: Backend,
) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    let doc = document(&app).await;
    let version = doc["openapi"].as_str().expect("an `openapi` version");
    assert!(version.starts_with("3.1."), "version {version}");
    assert_eq!(doc["info"]["title"], "onramp");
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(bearer["type"], "http", "{bearer}");
    assert_eq!(bearer["scheme"], "bearer", "{bearer}");
    let mut seen = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(seen.insert(id), "operationId {id} is used twice");
    }
}

async fn every_route_of_the_spec_is_documented_and_nothing_else(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    let doc = document(&app).await;
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    let missing: Vec<_> = expected.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "undocumented routes: {missing:?}; documented but not in SPEC's table: {extra:?}"
    );
}

/// A request for every documented operation, with `x` for each path parameter, reaches a
/// handler: the router's own answers (404 "no such route", 405) mean it has no such route.
async fn every_documented_operation_is_served(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    let doc = document(&app).await;
    let client = reqwest::Client::new();
    let token = app.token(onramp_core::auth::Role::Admin).await;
    for (method, path, _) in operations(&doc) {
        let concrete = path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "x"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let method = Method::from_bytes(method.as_bytes()).expect("a method");
        // Headers only: the event stream does not end, and the status says enough.
        let response = client
            .request(method.clone(), app.url(&concrete))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {concrete}: {e}"));
        let status = response.status().as_u16();
        assert_ne!(status, 405, "{method} {path} is documented but not routed");
        if status == 404 {
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_ne!(
                body["error"]["message"], "no such route",
                "{method} {path} is documented but not routed"
            );
        }
    }
}

async fn everything_under_v1_needs_the_bearer_token_and_nothing_else_does(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    let doc = document(&app).await;
    assert_eq!(
        doc["security"],
        serde_json::json!([{"bearer": []}]),
        "bearer is the default requirement"
    );
    for (method, path, op) in operations(&doc) {
        if path.starts_with("/v1/") {
            // No requirement of its own: the top-level bearer one applies.
            assert!(
                op.get("security").is_none(),
                "{method} {path} overrides security"
            );
            let responses = &op["responses"];
            assert!(
                responses.get("401").is_some() && responses.get("403").is_some(),
                "{method} {path} does not document 401 and 403"
            );
        } else {
            assert_eq!(
                op["security"],
                serde_json::json!([{}]),
                "{method} {path} must be documented as needing no token"
            );
        }
    }
}

/// Cancel's body is optional and nullable in the document: no body, `{}` and `null` all
/// mean "no reason".
async fn an_optional_body_may_be_absent_empty_or_null_as_documented(backend: Backend) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    let doc = document(&app).await;
    let body = &doc["paths"]["/v1/onboardings/{id}/cancel"]["post"]["requestBody"];
    assert_ne!(body["required"], true, "{body}");
    app.post("/v1/stages/checks/pause").await.assert_status(200);
    for (what, request) in [
        ("no body", None),
        ("an empty object", Some("{}")),
        ("null", Some("null")),
    ] {
        let onboarding = app
            .create_onboarding(onramp_testkit::factory::with_tasks(&["check_identity"]))
            .await;
        let path = format!("/v1/onboardings/{}/cancel", crate::id_of(&onboarding));
        let mut cancel = app.request(Method::POST, &path);
        if let Some(json) = request {
            cancel = cancel.header("content-type", "application/json").body(json);
        }
        let r = app.send(cancel).await;
        assert_eq!(r.status, 202, "cancel with {what}: {}", r.text);
    }
}

/// Collects every `$ref` in `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

async fn every_reference_and_link_resolves_and_every_error_response_is_the_error_json(
    backend: Backend,
) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    let doc = document(&app).await;
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    let dangling: BTreeSet<&str> = all
        .into_iter()
        .filter(|r| {
            r.strip_prefix('#')
                .is_none_or(|pointer| doc.pointer(pointer).is_none())
        })
        .collect();
    assert!(
        dangling.is_empty(),
        "references that do not resolve: {dangling:?}"
    );
    let operation_ids: BTreeSet<&str> = operations(&doc)
        .into_iter()
        .filter_map(|(_, _, op)| op["operationId"].as_str())
        .collect();
    let mut links = 0;
    for (method, path, op) in operations(&doc) {
        for (status, response) in op["responses"].as_object().expect("responses") {
            for (name, link) in response["links"].as_object().into_iter().flatten() {
                links += 1;
                let target = link["operationId"].as_str().unwrap_or_else(|| {
                    panic!("link {name} of {method} {path} {status} has no operationId: {link}")
                });
                assert!(
                    operation_ids.contains(target),
                    "link {name} of {method} {path} {status} names no operation"
                );
            }
        }
    }
    assert!(
        links > 0,
        "creations link to what can be done with what they created"
    );
    for (method, path, op) in operations(&doc) {
        let responses = op["responses"].as_object().expect("responses");
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                let target = response["$ref"].as_str().unwrap_or_else(|| {
                    panic!("{method} {path} {status} is not a shared error response")
                });
                let shared = doc
                    .pointer(target.trim_start_matches('#'))
                    .expect("resolves");
                assert_eq!(
                    shared["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
        }
    }
    let detail = &doc["components"]["schemas"]["ErrorDetail"];
    let required: BTreeSet<&str> = detail["required"]
        .as_array()
        .expect("required fields")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(required, BTreeSet::from(["code", "message", "details"]));
}
