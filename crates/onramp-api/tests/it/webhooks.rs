//! Webhooks (SPEC §10): endpoint management, signed deliveries verified by an independent
//! Standard Webhooks implementation, order per onboarding, retries while the receiver is
//! down or failing, dead deliveries and their replay.

use crate::id_of;
use onramp_core::auth::Role;
use onramp_testkit::{Backend, ReceivedWebhook, TestApp, WebhookReceiver, factory};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

on_both_backends!(
    webhooks_are_managed_by_admins_and_their_input_is_checked,
    every_event_reaches_a_verifying_receiver_in_order_per_onboarding,
    a_receiver_that_was_down_gets_everything_once_it_is_back,
    a_failing_receiver_is_retried_with_backoff_then_dead_then_replayed,
);

/// Quick sim steps; webhook retries within a few seconds.
const HOOKED: &str = r#"
[events.webhooks]
timeout = "2s"
retry_for = "3s"
backoff = { initial = "100ms", max = "500ms", multiplier = 2.0 }

[stages.quick]
concurrency = 8

[tasks.quick_a]
kind = "sim"
stage = "quick"

[tasks.quick_b]
kind = "sim"
stage = "quick"
"#;

const ALL_EVENTS: [&str; 9] = [
    "onboarding.created",
    "onboarding.completed",
    "onboarding.failed",
    "onboarding.cancelled",
    "step.succeeded",
    "step.dead_lettered",
    "task.assigned",
    "task.completed",
    "task.overdue",
];

/// Registers `receiver` for `events`; returns the webhook JSON (with its secret).
async fn register(app: &TestApp, receiver: &WebhookReceiver, events: &[&str]) -> Value {
    let created = app
        .post_json(
            "/v1/webhooks",
            &json!({"url": receiver.url(), "events": events}),
        )
        .await;
    created.assert_status(201);
    let secret = created.body["secret"]
        .as_str()
        .expect("a secret")
        .to_owned();
    receiver.set_secret(&secret);
    created.body
}

async fn create(app: &TestApp) -> String {
    id_of(
        &app.create_onboarding(factory::with_tasks(&["quick_a", "quick_b"]))
            .await,
    )
}

/// The distinct events that arrived, per onboarding, in order of first arrival.
fn first_arrivals(received: &[ReceivedWebhook]) -> HashMap<String, Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let mut by_onboarding: HashMap<String, Vec<String>> = HashMap::new();
    for r in received {
        if seen.insert(r.id.clone()) {
            by_onboarding
                .entry(
                    r.body["onboarding_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
                .or_default()
                .push(r.body["type"].as_str().unwrap_or_default().to_owned());
        }
    }
    by_onboarding
}

const TWO_STEPS: [&str; 4] = [
    "onboarding.created",
    "step.succeeded",
    "step.succeeded",
    "onboarding.completed",
];

async fn webhooks_are_managed_by_admins_and_their_input_is_checked(backend: Backend) {
    let app = TestApp::spawn_on(backend, HOOKED).await;
    let created = app
        .post_json(
            "/v1/webhooks",
            &json!({"url": "https://crm.example.com/hooks", "events": ["onboarding.completed"]}),
        )
        .await;
    created.assert_status(201);
    let hook = created.body.clone();
    let id = hook["id"].as_str().expect("an id").to_owned();
    assert!(id.starts_with("whk_"), "{hook}");
    assert_eq!(hook["events"], json!(["onboarding.completed"]));
    assert_eq!(hook["url"], "https://crm.example.com/hooks");
    let secret = hook["secret"].as_str().expect("the secret, this once");
    let key = secret.strip_prefix("whsec_").expect("whsec_ prefix");
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(key)
        .expect("base64");
    assert!(key.len() >= 24, "{} bytes of key", key.len());

    let listed = app.get("/v1/webhooks").await;
    listed.assert_status(200);
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1));
    assert!(
        listed.body["items"][0].get("secret").is_none(),
        "the secret is shown once only"
    );
    let one = app.get(&format!("/v1/webhooks/{id}")).await;
    one.assert_status(200);
    assert!(one.body.get("secret").is_none());

    let supplied = app
        .post_json(
            "/v1/webhooks",
            &json!({"url": "http://127.0.0.1:9/x", "events": ["step.succeeded"],
                    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
        )
        .await;
    supplied.assert_status(201);
    assert_eq!(
        supplied.body["secret"],
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    );

    for bad in [
        json!({"url": "ftp://example.com/x", "events": ["onboarding.completed"]}),
        json!({"url": "not a url", "events": ["onboarding.completed"]}),
        json!({"url": "/relative", "events": ["onboarding.completed"]}),
        json!({"url": "https://example.com/x", "events": []}),
        json!({"url": "https://example.com/x", "events": ["onboarding.exploded"]}),
        json!({"url": "https://example.com/x", "events": ["onboarding.completed"], "secret": "hunter2"}),
        json!({"url": "https://example.com/x", "events": ["onboarding.completed"], "secret": "whsec_***"}),
        json!({"url": "https://example.com/x", "events": ["onboarding.completed"], "colour": "red"}),
        json!({"events": ["onboarding.completed"]}),
        json!({"url": 7, "events": "onboarding.completed"}),
    ] {
        let response = app.post_json("/v1/webhooks", &bad).await;
        assert_eq!(response.status, 400, "{bad} -> {response}");
        assert!(response.body["error"]["code"].is_string(), "{response}");
    }
    let operator = app.token(Role::Operator).await;
    app.get_as(Some(&operator), "/v1/webhooks")
        .await
        .assert_error(403, "forbidden");
    app.post_json_as(
        Some(&operator),
        "/v1/webhooks",
        &json!({"url": "https://example.com/x", "events": ["onboarding.completed"]}),
    )
    .await
    .assert_error(403, "forbidden");

    let deleted = app
        .send(app.request(Method::DELETE, &format!("/v1/webhooks/{id}")))
        .await;
    deleted.assert_status(204);
    app.get(&format!("/v1/webhooks/{id}"))
        .await
        .assert_error(404, "not_found");
    app.send(app.request(Method::DELETE, &format!("/v1/webhooks/{id}")))
        .await
        .assert_error(404, "not_found");
    app.get("/v1/webhooks/whk_nope")
        .await
        .assert_error(404, "not_found");
    app.get(&format!("/v1/webhooks/{id}/deliveries?status=lost"))
        .await
        .assert_status(400);
    app.stop().await;
}

async fn every_event_reaches_a_verifying_receiver_in_order_per_onboarding(backend: Backend) {
    const ONBOARDINGS: usize = 100;
    let app = TestApp::spawn_on(backend, HOOKED).await;
    let receiver = WebhookReceiver::start().await;
    register(&app, &receiver, &ALL_EVENTS).await;

    let mut ids = Vec::with_capacity(ONBOARDINGS);
    for _ in 0..ONBOARDINGS {
        ids.push(create(&app).await);
    }
    let received = receiver
        .wait_for(
            "every event of every onboarding",
            Duration::from_secs(30),
            |r| {
                let arrived = first_arrivals(r);
                ids.iter()
                    .all(|id| arrived.get(id).is_some_and(|kinds| kinds.len() == 4))
            },
        )
        .await;
    assert!(
        received.iter().all(|r| r.verified),
        "every signature verifies"
    );
    let arrived = first_arrivals(&received);
    for id in &ids {
        assert_eq!(arrived[id], TWO_STEPS, "events of {id} in commit order");
    }
    for r in &received {
        assert_eq!(r.body["id"], r.id.as_str(), "webhook-id is the event id");
        assert!(
            r.timestamp.parse::<i64>().is_ok(),
            "unix seconds: {}",
            r.timestamp
        );
    }
    app.stop().await;
}

async fn a_receiver_that_was_down_gets_everything_once_it_is_back(backend: Backend) {
    const ONBOARDINGS: usize = 10;
    let app = TestApp::spawn_on(
        backend,
        &HOOKED.replace("retry_for = \"3s\"", "retry_for = \"1m\""),
    )
    .await;
    let receiver = WebhookReceiver::start().await;
    register(&app, &receiver, &ALL_EVENTS).await;
    receiver.go_down();

    let mut ids = Vec::with_capacity(ONBOARDINGS);
    for _ in 0..ONBOARDINGS {
        ids.push(create(&app).await);
    }
    for id in &ids {
        app.wait_for_status(id, "completed").await;
    }
    receiver.stay_down(Duration::from_secs(10)).await;
    assert!(receiver.received().is_empty());

    let received = receiver
        .wait_for(
            "everything after the receiver came back",
            Duration::from_secs(15),
            |r| {
                let arrived = first_arrivals(r);
                ids.iter()
                    .all(|id| arrived.get(id).is_some_and(|kinds| kinds.len() == 4))
            },
        )
        .await;
    assert!(received.iter().all(|r| r.verified));
    let arrived = first_arrivals(&received);
    for id in &ids {
        assert_eq!(arrived[id], TWO_STEPS, "events of {id} in commit order");
    }
    app.stop().await;
}

async fn a_failing_receiver_is_retried_with_backoff_then_dead_then_replayed(backend: Backend) {
    let app = TestApp::spawn_on(backend, HOOKED).await;
    let failing = WebhookReceiver::start().await;
    failing.answer(500);
    let healthy = WebhookReceiver::start().await;
    let hook = register(&app, &failing, &["onboarding.created"]).await;
    register(&app, &healthy, &["onboarding.created"]).await;
    let hook_id = hook["id"].as_str().expect("an id").to_owned();

    let id = create(&app).await;
    // The failing endpoint does not hold up the healthy one.
    let to_healthy = healthy
        .wait_for(
            "the healthy endpoint's delivery",
            Duration::from_secs(2),
            |r| !r.is_empty(),
        )
        .await;
    assert_eq!(to_healthy[0].body["onboarding_id"], id.as_str());

    let dead_path = format!("/v1/webhooks/{hook_id}/deliveries?status=dead");
    let dead = onramp_testkit::wait_until(
        "the delivery to be dead",
        Duration::from_secs(15),
        || async {
            let page = app.get(&dead_path).await;
            match page.body["items"].as_array() {
                Some(items) if items.len() == 1 => Ok(items[0].clone()),
                _ => Err(page.to_string()),
            }
        },
    )
    .await;
    assert_eq!(dead["event_type"], "onboarding.created");
    assert_eq!(dead["last_error"], "HTTP 500");
    let attempts = failing.received();
    assert_eq!(dead["attempts"], attempts.len(), "{dead}");
    assert!(attempts.len() >= 4, "retried: {} attempts", attempts.len());
    assert!(
        attempts
            .iter()
            .all(|a| a.verified && a.id == attempts[0].id)
    );
    // Backoff: each pause at least half the growing cap (100 ms, 200 ms, 400 ms, then 500 ms),
    // except the last, which falls on the end of the retry window.
    let pauses: Vec<Duration> = attempts.windows(2).map(|w| w[1].at - w[0].at).collect();
    for (n, pause) in pauses.iter().enumerate().take(pauses.len() - 1) {
        let cap = Duration::from_millis((100u64 << n.min(3)).min(500));
        assert!(
            *pause >= cap / 2 - Duration::from_millis(20),
            "pause {n} was {pause:?}: {pauses:?}"
        );
    }
    let window = attempts[attempts.len() - 1].at - attempts[0].at;
    assert!(
        window >= Duration::from_millis(2_900) && window < Duration::from_secs(5),
        "retried for {window:?}"
    );

    // Fixed receiver, replayed delivery: it arrives, and the delivery is delivered.
    failing.answer(204);
    let replayed = app
        .post(&format!(
            "/v1/webhooks/{hook_id}/deliveries/{}/replay",
            dead["id"].as_str().unwrap_or_default()
        ))
        .await;
    replayed.assert_status(202);
    assert_eq!(replayed.body, json!({"replayed": 1}));
    failing
        .wait_for("the replayed delivery", Duration::from_secs(5), |r| {
            r.iter().any(|a| a.answered == 204)
        })
        .await;
    onramp_testkit::wait_until(
        "the delivery to be delivered",
        Duration::from_secs(5),
        || async {
            let page = app.get(&format!("/v1/webhooks/{hook_id}/deliveries")).await;
            if page.body["items"][0]["status"] == "delivered" {
                Ok(())
            } else {
                Err(page.to_string())
            }
        },
    )
    .await;
    let again = app
        .post(&format!(
            "/v1/webhooks/{hook_id}/deliveries/{}/replay",
            dead["id"].as_str().unwrap_or_default()
        ))
        .await;
    again.assert_error(409, "invalid_transition");
    let none = app
        .post(&format!("/v1/webhooks/{hook_id}/deliveries/replay"))
        .await;
    none.assert_status(202);
    assert_eq!(none.body, json!({"replayed": 0}));
    app.stop().await;
}
