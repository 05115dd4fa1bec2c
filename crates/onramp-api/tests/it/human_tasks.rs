//! Human tasks, CSRs, signals and delays (SPEC §7, §8): assignment by skill, capacity and
//! free slots; tasks completed by their CSR move the onboarding on; signals kept until their
//! step; delays and signal timeouts.

use crate::id_of;
use onramp_core::auth::Role;
use onramp_testkit::{Backend, TestApp, factory, step, wait_until};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

on_both_backends!(
    sixty_onboardings_and_three_csrs_of_capacity_five_assign_exactly_fifteen,
    a_skill_nobody_has_stays_unassigned_until_a_csr_with_it_is_added,
    a_csr_completes_only_their_own_tasks,
    csr_input_is_validated,
    a_signal_sent_before_its_step_is_kept_and_used_when_the_step_starts,
    a_signal_sent_while_its_step_waits_moves_the_onboarding_on_once,
    a_signal_that_nobody_waits_for_is_refused_and_terminal_onboardings_take_none,
    a_signal_timeout_dead_letters_the_step_and_a_replay_waits_again,
    a_delay_step_waits_its_time_and_the_onboarding_is_waiting_meanwhile,
    cancelling_an_onboarding_cancels_its_open_task,
);

const CONFIG: &str = r#"
[worker]
poll_interval = "50ms"
scheduler_interval = "100ms"

[stages.people]
concurrency = 64

[stages.fast]
concurrency = 16

[tasks.prepare]
kind = "sim"
stage = "fast"

[tasks.onboarding_call]
kind = "human"
stage = "people"
skill = "onboarding_call"
duration = "30m"
due_within = "3d"

[tasks.legal_review]
kind = "human"
stage = "people"
skill = "legal"
duration = "1h"

[tasks.contract_signed]
kind = "signal"
stage = "people"
signal = "contract_signed"

[tasks.quick_signal]
kind = "signal"
stage = "people"
signal = "quick"
timeout = "300ms"

[tasks.cool_off]
kind = "delay"
stage = "people"
duration = "600ms"

[tasks.finish]
kind = "sim"
stage = "fast"
"#;

fn always(skill: &str, max: u32) -> Value {
    let day = ["00:00-24:00"];
    json!({
        "name": format!("Rep {skill}"),
        "email": "rep@example.com",
        "skills": [skill],
        "timezone": "UTC",
        "working_hours": {"mon": day, "tue": day, "wed": day, "thu": day, "fri": day,
                          "sat": day, "sun": day},
        "max_active_tasks": max,
    })
}

async fn add_csr(app: &TestApp, body: Value) -> String {
    let r = app.post_json("/v1/csrs", &body).await;
    r.assert_status(201);
    r.body["id"].as_str().unwrap().to_owned()
}

async fn start(app: &TestApp, tasks: &[&str]) -> String {
    id_of(&app.create_onboarding(factory::with_tasks(tasks)).await)
}

async fn tasks(app: &TestApp, query: &str) -> Vec<Value> {
    let r = app.get(&format!("/v1/tasks?limit=500{query}")).await;
    r.assert_status(200);
    r.body["items"].as_array().unwrap().clone()
}

async fn wait_for_tasks(app: &TestApp, query: &str, n: usize) -> Vec<Value> {
    wait_until(
        &format!("{n} tasks {query}"),
        Duration::from_secs(20),
        || async {
            let found = tasks(app, query).await;
            if found.len() == n {
                Ok(found)
            } else {
                Err(format!("{} tasks", found.len()))
            }
        },
    )
    .await
}

fn assert_no_double_booking(tasks: &[Value]) {
    let mut by_csr: HashMap<&str, Vec<(String, String)>> = HashMap::new();
    for t in tasks.iter().filter(|t| t["status"] == "assigned") {
        by_csr
            .entry(t["assignee"].as_str().unwrap())
            .or_default()
            .push((
                t["scheduled_for"].as_str().unwrap().to_owned(),
                t["scheduled_until"].as_str().unwrap().to_owned(),
            ));
    }
    for (csr, mut slots) in by_csr {
        slots.sort();
        for pair in slots.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "{csr} double-booked: {pair:?}");
        }
    }
}

async fn sixty_onboardings_and_three_csrs_of_capacity_five_assign_exactly_fifteen(
    backend: Backend,
) {
    let app = TestApp::spawn_on(backend, CONFIG).await;
    for _ in 0..3 {
        add_csr(&app, always("onboarding_call", 5)).await;
    }
    let ids =
        futures::future::join_all((0..60).map(|_| start(&app, &["onboarding_call", "finish"])))
            .await;
    let all = wait_for_tasks(&app, "", 60).await;
    assert_eq!(all.len(), 60);
    let assigned = wait_for_tasks(&app, "&status=assigned", 15).await;
    assert_eq!(tasks(&app, "&status=unassigned").await.len(), 45);
    assert_no_double_booking(&assigned);
    let csrs = app.get("/v1/csrs").await;
    for c in csrs.body["items"].as_array().unwrap() {
        assert_eq!(c["active_tasks"], 5, "{c}");
    }
    let first = &ids[0];
    assert_eq!(app.onboarding(first).await["status"], "waiting");

    // Completing five tasks assigns five more, at once.
    for t in &assigned[..5] {
        app.post_json(
            &format!("/v1/tasks/{}/complete", t["id"].as_str().unwrap()),
            &json!({"notes": "done"}),
        )
        .await
        .assert_status(200);
    }
    let assigned = wait_for_tasks(&app, "&status=assigned", 15).await;
    assert_eq!(tasks(&app, "&status=unassigned").await.len(), 40);
    assert_eq!(tasks(&app, "&status=done").await.len(), 5);
    assert_no_double_booking(&assigned);
    // Every CSR's schedule in the database agrees.
    for c in csrs.body["items"].as_array().unwrap() {
        let s = app
            .get(&format!("/v1/csrs/{}/schedule", c["id"].as_str().unwrap()))
            .await;
        s.assert_status(200);
        assert_no_double_booking(s.body["items"].as_array().unwrap());
    }
    app.stop().await;
}

async fn a_skill_nobody_has_stays_unassigned_until_a_csr_with_it_is_added(backend: Backend) {
    let app = TestApp::spawn_on(backend, CONFIG).await;
    add_csr(&app, always("onboarding_call", 5)).await;
    let id = start(&app, &["legal_review"]).await;
    let open = wait_for_tasks(&app, "&status=unassigned", 1).await;
    assert_eq!(open[0]["skill"], "legal");
    let lawyer = add_csr(&app, always("legal", 1)).await;
    let assigned = tasks(&app, "&status=assigned").await;
    assert_eq!(assigned.len(), 1, "assigned as soon as the CSR was added");
    assert_eq!(assigned[0]["assignee"], lawyer.as_str());
    let o = app.onboarding(&id).await;
    assert_eq!(step(&o, 1)["assignee"], lawyer.as_str());
    assert!(step(&o, 1)["scheduled_for"].is_string());
    app.stop().await;
}

async fn a_csr_completes_only_their_own_tasks(backend: Backend) {
    let app = TestApp::spawn_on(backend, CONFIG).await;
    let alice = add_csr(&app, always("onboarding_call", 1)).await;
    let bob = add_csr(&app, always("onboarding_call", 1)).await;
    let a = start(&app, &["onboarding_call", "finish"]).await;
    let _b = start(&app, &["onboarding_call", "finish"]).await;
    wait_for_tasks(&app, "&status=assigned", 2).await;
    let (alice_token, _) = app
        .engine
        .create_token("alice", Role::Csr, Some(alice.parse().unwrap()), "test")
        .await
        .unwrap();
    let (bob_token, _) = app
        .engine
        .create_token("bob", Role::Csr, Some(bob.parse().unwrap()), "test")
        .await
        .unwrap();
    let mine = app
        .get_as(Some(&alice_token), "/v1/tasks?assignee=me")
        .await;
    mine.assert_status(200);
    let mine = mine.body["items"].as_array().unwrap().clone();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["assignee"], alice.as_str());
    app.get_as(Some(&alice_token), &format!("/v1/tasks?assignee={bob}"))
        .await
        .assert_status(403);
    let task = mine[0]["id"].as_str().unwrap();
    let r = app
        .post_json_as(
            Some(&bob_token),
            &format!("/v1/tasks/{task}/complete"),
            &json!({}),
        )
        .await;
    r.assert_status(403);
    assert_eq!(r.error_code(), Some("forbidden"));
    app.post_json_as(
        Some(&alice_token),
        &format!("/v1/tasks/{task}/complete"),
        &json!({"notes": "called"}),
    )
    .await
    .assert_status(200);
    let onboarding = mine[0]["onboarding_id"].as_str().unwrap();
    app.wait_for_status(onboarding, "completed").await;
    // Completing twice is refused.
    app.post_json(&format!("/v1/tasks/{task}/complete"), &json!({}))
        .await
        .assert_status(409);
    let _ = a;
    app.assert_audit_chain_valid(onboarding).await;
    let audit = app.audit(onboarding).await;
    let actions: Vec<_> = audit
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for wanted in ["task.created", "task.assigned", "task.completed"] {
        assert!(actions.contains(&wanted), "{actions:?}");
    }
    app.stop().await;
}

async fn csr_input_is_validated(backend: Backend) {
    let app = TestApp::spawn_on(backend, CONFIG).await;
    let mut bad = always("x", 0);
    bad["timezone"] = json!("Mars/Olympus");
    bad["skills"] = json!([""]);
    bad["working_hours"] =
        json!({"mon": ["09:00-12:00", "11:00-13:00"], "funday": ["09:00-10:00"]});
    bad["time_off"] = json!([{"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}]);
    let r = app.post_json("/v1/csrs", &bad).await;
    r.assert_status(400);
    let fields: Vec<_> = r.body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap().to_owned())
        .collect();
    for f in [
        "timezone",
        "skills[0]",
        "working_hours.mon[1]",
        "working_hours.funday",
        "max_active_tasks",
        "time_off[0]",
    ] {
        assert!(fields.iter().any(|x| x == f), "{f} missing in {fields:?}");
    }
    let id = add_csr(&app, always("x", 2)).await;
    let r = app
        .send(
            app.request(reqwest::Method::PATCH, &format!("/v1/csrs/{id}"))
                .json(&json!({"active": false, "timezone": "Europe/Berlin"})),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.body["active"], false);
    assert_eq!(r.body["timezone"], "Europe/Berlin");
    app.get("/v1/csrs/csr_00000000000000000000000000000000")
        .await
        .assert_status(404);
    app.send(app.request(reqwest::Method::DELETE, &format!("/v1/csrs/{id}")))
        .await
        .assert_status(204);
    app.get(&format!("/v1/csrs/{id}")).await.assert_status(404);
    app.stop().await;
}

async fn signal(app: &TestApp, id: &str, name: &str, sender: &str) -> onramp_testkit::ApiResponse {
    app.post_json(
        &format!("/v1/onboardings/{id}/signals/{name}"),
        &json!({"id": sender, "payload": {"signed_by": "Ada"}}),
    )
    .await
}

async fn a_signal_sent_before_its_step_is_kept_and_used_when_the_step_starts(backend: Backend) {
    let app = TestApp::spawn_on(backend, CONFIG).await;
    let id = start(&app, &["cool_off", "contract_signed", "finish"]).await;
    signal(&app, &id, "contract_signed", "sig-1")
        .await
        .assert_status(202);
    let done = app.wait_for_status(&id, "completed").await;
    assert_eq!(step(&done, 2)["output"]["payload"]["signed_by"], "Ada");
    assert_eq!(step(&done, 2)["output"]["id"], "sig-1");
    app.assert_audit_chain_valid(&id).await;
    app.stop().await;
}

async fn a_signal_sent_while_its_step_waits_moves_the_onboarding_on_once(backend: Backend) {
    let app = TestApp::spawn_on(backend, CONFIG).await;
    let id = start(&app, &["contract_signed", "contract_signed", "finish"]).await;
    let o = app.wait_for_step_status(&id, 1, "waiting").await;
    assert_eq!(o["status"], "waiting");
    signal(&app, &id, "contract_signed", "sig-1")
        .await
        .assert_status(202);
    let r = signal(&app, &id, "contract_signed", "sig-1").await;
    r.assert_status(200);
    assert_eq!(r.body["duplicate"], true);
    // The repeat did not satisfy the second step.
    let o = app.wait_for_step_status(&id, 2, "waiting").await;
    assert_eq!(step(&o, 1)["status"], "succeeded");
    signal(&app, &id, "contract_signed", "sig-2")
        .await
        .assert_status(202);
    app.wait_for_status(&id, "completed").await;
    app.stop().await;
}

async fn a_signal_that_nobody_waits_for_is_refused_and_terminal_onboardings_take_none(
    backend: Backend,
) {
    let app = TestApp::spawn_on(backend, CONFIG).await;
    let id = start(&app, &["contract_signed"]).await;
    let r = signal(&app, &id, "contract_sgined", "sig-1").await;
    r.assert_status(400);
    assert_eq!(r.error_code(), Some("validation_failed"));
    let r = app
        .post_json(
            &format!("/v1/onboardings/{id}/signals/contract_signed"),
            &json!({"payload": {}}),
        )
        .await;
    r.assert_status(400);
    signal(
        &app,
        "onb_00000000000000000000000000000000",
        "contract_signed",
        "x",
    )
    .await
    .assert_status(404);
    signal(&app, &id, "contract_signed", "sig-1")
        .await
        .assert_status(202);
    app.wait_for_status(&id, "completed").await;
    let r = signal(&app, &id, "contract_signed", "sig-2").await;
    r.assert_status(409);
    assert_eq!(r.error_code(), Some("invalid_transition"));
    // A viewer may not send signals.
    let viewer = app.token(Role::Viewer).await;
    app.post_json_as(
        Some(&viewer),
        &format!("/v1/onboardings/{id}/signals/contract_signed"),
        &json!({"id": "v"}),
    )
    .await
    .assert_status(403);
    app.stop().await;
}

async fn a_signal_timeout_dead_letters_the_step_and_a_replay_waits_again(backend: Backend) {
    let app = TestApp::spawn_on(backend, CONFIG).await;
    let id = start(&app, &["quick_signal", "finish"]).await;
    let failed = app.wait_for_status(&id, "failed").await;
    assert_eq!(step(&failed, 1)["status"], "dead");
    assert!(
        step(&failed, 1)["error"]
            .as_str()
            .unwrap()
            .contains("did not arrive")
    );
    assert_eq!(failed["retry_available"], true);
    app.post(&format!("/v1/onboardings/{id}/retry"))
        .await
        .assert_status(202);
    app.wait_for_step_status(&id, 1, "waiting").await;
    signal(&app, &id, "quick", "q-1").await.assert_status(202);
    app.wait_for_status(&id, "completed").await;
    app.stop().await;
}

async fn a_delay_step_waits_its_time_and_the_onboarding_is_waiting_meanwhile(backend: Backend) {
    let app = TestApp::spawn_on(backend, CONFIG).await;
    let started = std::time::Instant::now();
    let id = start(&app, &["cool_off", "finish"]).await;
    let o = app.wait_for_step_status(&id, 1, "waiting").await;
    assert_eq!(o["status"], "waiting");
    app.wait_for_status(&id, "completed").await;
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    app.stop().await;
}

async fn cancelling_an_onboarding_cancels_its_open_task(backend: Backend) {
    let app = TestApp::spawn_on(backend, CONFIG).await;
    let id = start(&app, &["prepare", "onboarding_call", "finish"]).await;
    wait_for_tasks(&app, "&status=unassigned", 1).await;
    app.post_json(
        &format!("/v1/onboardings/{id}/cancel"),
        &json!({"reason": "left"}),
    )
    .await
    .assert_status(202);
    let o = app.wait_for_status(&id, "cancelled").await;
    assert_eq!(step(&o, 2)["status"], "skipped");
    let cancelled = tasks(&app, "&status=cancelled").await;
    assert_eq!(cancelled.len(), 1);
    let t = cancelled[0]["id"].as_str().unwrap();
    app.post_json(&format!("/v1/tasks/{t}/complete"), &json!({}))
        .await
        .assert_status(409);
    app.stop().await;
}
