//! Sagas: cancelling undoes what ran. Each compensation is a queued step with retries and
//! dead-lettering; they run latest first, each exactly once; `on_failure = "compensate"`
//! does the same when a step dead-letters.

use crate::id_of;
use onramp_testkit::{Backend, FakeService, RecordedRequest, Reply, TestApp, factory, step};
use serde_json::{Value, json};
use std::time::Duration;

on_both_backends!(
    cancel_after_three_of_five_steps_undoes_the_three_in_reverse_order_once,
    a_failing_compensation_dead_letters_and_its_replay_finishes_the_cancel,
    a_compensation_answered_404_counts_as_nothing_to_undo,
    on_failure_compensate_undoes_the_steps_before_a_dead_letter,
);

fn config(url: &str) -> String {
    format!(
        r#"
[stages.saga]
concurrency = 4
max_attempts = 3
backoff = {{ initial = "10ms", max = "40ms", multiplier = 2.0 }}
visibility_timeout = "30s"

[services.crm]
base_url = "{url}"
timeout = "5s"
breaker = {{ failure_threshold = 1000, open_for = "1s" }}

[tasks.account]
kind = "http"
stage = "saga"
service = "crm"
request = {{ method = "POST", path = "/accounts", body = {{ email = "{{{{ customer.email }}}}" }} }}
compensate = {{ method = "DELETE", path = "/accounts/{{{{ steps.account.output.id }}}}" }}

[tasks.subscription]
kind = "http"
stage = "saga"
service = "crm"
request = {{ method = "POST", path = "/subscriptions", body = {{ account = "{{{{ steps.account.output.id }}}}" }} }}
compensate = {{ method = "DELETE", path = "/subscriptions/{{{{ steps.subscription.output.id }}}}" }}

[tasks.workspace]
kind = "http"
stage = "saga"
service = "crm"
request = {{ method = "POST", path = "/workspaces" }}
compensate = {{ method = "DELETE", path = "/workspaces/{{{{ steps.workspace.output.id }}}}" }}

# Nothing to undo: it only announces.
[tasks.kickoff]
kind = "http"
stage = "saga"
service = "crm"
request = {{ method = "POST", path = "/kickoff" }}

[tasks.welcome]
kind = "http"
stage = "saga"
service = "crm"
request = {{ method = "POST", path = "/welcome" }}
compensate = {{ method = "DELETE", path = "/welcome" }}

[templates.full]
tasks = ["account", "subscription", "workspace", "kickoff", "welcome"]

[templates.all_or_nothing]
tasks = ["account", "subscription", "kickoff"]
on_failure = "compensate"
"#
    )
}

/// The CRM with accounts, subscriptions and workspaces that can be created and deleted, and
/// a kickoff that takes a while.
async fn crm() -> FakeService {
    let crm = FakeService::start().await;
    crm.script("/accounts", [Reply::json(201, json!({"id": "acc_1"}))]);
    crm.script("/subscriptions", [Reply::json(201, json!({"id": "sub_1"}))]);
    crm.script("/workspaces", [Reply::json(201, json!({"id": "ws_1"}))]);
    crm.script(
        "/kickoff",
        [Reply::json(200, json!({})).delayed(Duration::from_millis(1500))],
    );
    crm.script("/welcome", [Reply::json(200, json!({}))]);
    for undo in [
        "/accounts/acc_1",
        "/subscriptions/sub_1",
        "/workspaces/ws_1",
    ] {
        crm.script(undo, [Reply::status(204)]);
    }
    crm
}

fn deletes(crm: &FakeService) -> Vec<RecordedRequest> {
    crm.requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect()
}

fn statuses(onboarding: &Value) -> Vec<String> {
    onboarding["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap().to_owned())
        .collect()
}

async fn start_template(app: &TestApp, template: &str) -> String {
    let mut body = factory::from_template(template);
    body["customer"]["email"] = json!("ada@example.com");
    id_of(&app.create_onboarding(body).await)
}

async fn cancel(app: &TestApp, id: &str) {
    app.post_json(
        &format!("/v1/onboardings/{id}/cancel"),
        &json!({"reason": "customer withdrew"}),
    )
    .await
    .assert_status(202);
}

async fn cancel_after_three_of_five_steps_undoes_the_three_in_reverse_order_once(backend: Backend) {
    let crm = crm().await;
    let app = TestApp::spawn_on(backend, &config(crm.url())).await;
    let id = start_template(&app, "full").await;
    app.wait_for_step_status(&id, 4, "running").await;

    cancel(&app, &id).await;
    let done = app.wait_for_status(&id, "cancelled").await;
    assert_eq!(
        statuses(&done),
        [
            "compensated",
            "compensated",
            "compensated",
            "cancelled",
            "skipped"
        ]
    );
    let undone: Vec<(String, Option<String>)> = deletes(&crm)
        .iter()
        .map(|r| (r.path.clone(), r.idempotency_key().map(str::to_owned)))
        .collect();
    assert_eq!(
        undone,
        vec![
            (
                "/workspaces/ws_1".into(),
                Some(format!("{id}:3:compensate"))
            ),
            (
                "/subscriptions/sub_1".into(),
                Some(format!("{id}:2:compensate"))
            ),
            ("/accounts/acc_1".into(), Some(format!("{id}:1:compensate"))),
        ],
        "latest first, each once, with a key of its own"
    );
    assert!(crm.requests_to("/welcome").is_empty(), "step 5 never ran");
    assert_eq!(done["error"], Value::Null);
    assert_eq!(done["stage"], Value::Null);

    let audit = app.audit(&id).await;
    let actions: Vec<&str> = audit
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .filter(|a| a.starts_with("onboarding.") || a.starts_with("step.compensat"))
        .collect();
    let from_cancel = actions
        .iter()
        .position(|a| *a == "onboarding.cancelling")
        .expect("cancelling");
    let undo_one = ["step.compensating", "step.compensating", "step.compensated"];
    let expected: Vec<&str> = std::iter::once("onboarding.cancelling")
        .chain(undo_one.repeat(3))
        .chain(std::iter::once("onboarding.cancelled"))
        .collect();
    assert_eq!(
        actions[from_cancel..],
        expected[..],
        "queued and claimed, then done, three times; the cancel ends after the last"
    );
    app.assert_audit_chain_valid(&id).await;
    app.stop().await;
}

async fn a_failing_compensation_dead_letters_and_its_replay_finishes_the_cancel(backend: Backend) {
    let crm = crm().await;
    crm.script(
        "/subscriptions/sub_1",
        [Reply::json(500, json!({"error": "locked"}))],
    );
    let app = TestApp::spawn_on(backend, &config(crm.url())).await;
    let id = start_template(&app, "all_or_nothing").await;
    app.wait_for_step_status(&id, 3, "running").await;

    cancel(&app, &id).await;
    let stuck = app
        .wait_for_onboarding("a dead compensation", &id, |o| {
            step(o, 2)["status"] == "dead"
        })
        .await;
    assert_eq!(stuck["status"], "cancelling");
    assert_eq!(stuck["retry_available"], true);
    assert!(
        stuck["error"]
            .as_str()
            .unwrap()
            .contains("compensation failed: HTTP 500"),
        "{stuck}"
    );
    assert_eq!(
        crm.requests_to("/subscriptions/sub_1").len(),
        3,
        "max_attempts"
    );
    assert!(
        crm.requests_to("/accounts/acc_1").is_empty(),
        "the earlier compensation waits for the failed one"
    );
    let letters = app.get("/v1/dead-letters?stage=saga").await;
    let items = letters.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{letters}");
    assert_eq!(items[0]["step_seq"], 2);

    crm.script("/subscriptions/sub_1", [Reply::status(204)]);
    let letter = items[0]["id"].as_str().unwrap();
    app.post(&format!("/v1/dead-letters/{letter}/replay"))
        .await
        .assert_status(202);
    let done = app.wait_for_status(&id, "cancelled").await;
    assert_eq!(statuses(&done), ["compensated", "compensated", "cancelled"]);
    assert_eq!(crm.requests_to("/subscriptions/sub_1").len(), 4);
    assert_eq!(crm.requests_to("/accounts/acc_1").len(), 1);
    assert_eq!(done["retry_available"], false);
    app.assert_audit_chain_valid(&id).await;
    app.stop().await;
}

async fn a_compensation_answered_404_counts_as_nothing_to_undo(backend: Backend) {
    let crm = crm().await;
    crm.script(
        "/accounts/acc_1",
        [Reply::json(404, json!({"error": "no such account"}))],
    );
    let app = TestApp::spawn_on(backend, &config(crm.url())).await;
    let id = start_template(&app, "all_or_nothing").await;
    app.wait_for_step_status(&id, 3, "running").await;

    cancel(&app, &id).await;
    let done = app.wait_for_status(&id, "cancelled").await;
    assert_eq!(statuses(&done), ["compensated", "compensated", "cancelled"]);
    assert_eq!(crm.requests_to("/accounts/acc_1").len(), 1, "not retried");
    let audit = app.audit(&id).await;
    assert!(
        !audit.iter().any(|e| e["action"] == "step.dead"),
        "{audit:#?}"
    );
    app.stop().await;
}

async fn on_failure_compensate_undoes_the_steps_before_a_dead_letter(backend: Backend) {
    let crm = crm().await;
    crm.script(
        "/kickoff",
        [Reply::json(400, json!({"error": "plan not allowed"}))],
    );
    let app = TestApp::spawn_on(backend, &config(crm.url())).await;
    let id = start_template(&app, "all_or_nothing").await;

    let done = app.wait_for_status(&id, "cancelled").await;
    assert_eq!(statuses(&done), ["compensated", "compensated", "dead"]);
    let undone: Vec<String> = deletes(&crm).into_iter().map(|r| r.path).collect();
    assert_eq!(undone, ["/subscriptions/sub_1", "/accounts/acc_1"]);
    let letters = app.get("/v1/dead-letters").await;
    assert_eq!(
        letters.body["items"],
        json!([]),
        "nothing left for an operator"
    );
    let audit = app.audit(&id).await;
    let actions: Vec<&str> = audit
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    let failed = actions
        .iter()
        .position(|a| *a == "onboarding.failed")
        .unwrap();
    assert_eq!(actions[failed + 1], "onboarding.cancelling", "{actions:?}");
    app.assert_audit_chain_valid(&id).await;
    app.stop().await;
}
