//! Live status over server-sent events (SPEC §7 `GET /v1/onboardings/{id}/events`) and the
//! global event stream `GET /v1/events`, read over real HTTP.

use crate::id_of;
use onramp_testkit::{Backend, SseClient, SseEvent, SseItem, TestApp, factory};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

on_both_backends!(
    status_stream_sends_every_transition_in_order_and_resumes_without_gaps,
    status_stream_keeps_idle_connections_alive_and_refuses_bad_requests,
    event_stream_shows_published_events_filtered_and_resumes,
);

/// Three slow steps in one stage, so a stream can be read (and dropped) mid-way; idle
/// streams send a keep-alive comment every 200 ms.
const LIVE: &str = r#"
[events]
keep_alive = "200ms"

[stages.live]
concurrency = 4

[tasks.slow_a]
kind = "sim"
stage = "live"
latency = "150ms"

[tasks.slow_b]
kind = "sim"
stage = "live"
latency = "150ms"

[tasks.slow_c]
kind = "sim"
stage = "live"
latency = "150ms"
"#;

const WAIT: Duration = Duration::from_secs(10);

fn onboarding() -> Value {
    factory::with_tasks(&["slow_a", "slow_b", "slow_c"])
}

fn stream(app: &TestApp, id: &str, last_event_id: Option<&str>) -> reqwest::RequestBuilder {
    let request = app.request(Method::GET, &format!("/v1/onboardings/{id}/events"));
    match last_event_id {
        Some(last) => request.header("Last-Event-ID", last),
        None => request,
    }
}

/// Events without the keep-alive comments that came with them.
fn essence(events: &[SseEvent]) -> Vec<(String, Option<String>, String)> {
    events
        .iter()
        .map(|e| (e.event.clone(), e.id.clone(), e.data.clone()))
        .collect()
}

/// Reads events until the stream ends.
async fn read_to_end(client: &mut SseClient) -> Vec<SseEvent> {
    let mut events = Vec::new();
    while let Some(event) = client.next_event(WAIT).await {
        events.push(event);
    }
    events
}

fn summary(events: &[SseEvent]) -> Vec<(String, Value, Value)> {
    events
        .iter()
        .map(|e| {
            let data = e.json();
            (
                e.event.clone(),
                data["status"].clone(),
                data["progress"].clone(),
            )
        })
        .collect()
}

async fn status_stream_sends_every_transition_in_order_and_resumes_without_gaps(backend: Backend) {
    let app = TestApp::spawn_on(backend, LIVE).await;
    app.post("/v1/stages/live/pause").await.assert_status(200);
    let created = app.create_onboarding(onboarding()).await;
    let id = id_of(&created);

    // The current status at once, in the shape of GET /status.
    let mut live = SseClient::open(stream(&app, &id, None)).await;
    let first = live.next_event(WAIT).await.expect("the current status");
    assert_eq!(first.event, "status");
    let status = app.get(&format!("/v1/onboardings/{id}/status")).await;
    assert_eq!(first.json(), status.body);
    assert_eq!(first.json()["status"], "pending");

    // Run it; read one more change, then hang up mid-way.
    app.post("/v1/stages/live/resume").await.assert_status(200);
    let second = live.next_event(WAIT).await.expect("a second event");
    drop(live);

    // Resume where we left off: everything after, nothing twice, and the end after the
    // terminal status.
    let second_id = second.id.clone().expect("events have ids");
    let mut resumed = SseClient::open(stream(&app, &id, Some(&second_id))).await;
    let rest = read_to_end(&mut resumed).await;
    let mut seen = vec![first.clone(), second];
    seen.extend(rest);

    // The whole history, from the beginning.
    let mut replay = SseClient::open(stream(&app, &id, Some("0"))).await;
    let history = read_to_end(&mut replay).await;
    assert_eq!(
        summary(&history),
        vec![
            ("status".into(), json!("pending"), json!(0)),
            ("status".into(), json!("running"), json!(0)),
            ("status".into(), json!("running"), json!(33)),
            ("status".into(), json!("running"), json!(67)),
            ("status".into(), json!("completed"), json!(100)),
        ]
    );
    assert_eq!(
        essence(&seen),
        essence(&history),
        "resuming lost or repeated nothing"
    );
    let ids: Vec<i64> = history
        .iter()
        .map(|e| {
            e.id.as_deref()
                .and_then(|i| i.parse().ok())
                .expect("numeric ids")
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    assert_eq!(
        history.last().map(|e| e.json()),
        Some(app.get(&format!("/v1/onboardings/{id}/status")).await.body)
    );

    // A stream resumed after the terminal status ends at once; one opened fresh sends the
    // terminal status and ends.
    let last_id = history.last().and_then(|e| e.id.clone()).expect("an id");
    let mut after_end = SseClient::open(stream(&app, &id, Some(&last_id))).await;
    assert!(after_end.next_event(WAIT).await.is_none());
    let mut fresh = SseClient::open(stream(&app, &id, None)).await;
    assert_eq!(
        summary(&read_to_end(&mut fresh).await),
        summary(&history[4..])
    );
    app.stop().await;
}

async fn status_stream_keeps_idle_connections_alive_and_refuses_bad_requests(backend: Backend) {
    let app = TestApp::spawn_on(backend, LIVE).await;
    app.post("/v1/stages/live/pause").await.assert_status(200);
    let id = id_of(&app.create_onboarding(onboarding()).await);
    let mut live = SseClient::open(stream(&app, &id, None)).await;
    live.next_event(WAIT).await.expect("the current status");
    // Nothing changes: keep-alive comments flow, no events.
    for _ in 0..2 {
        assert_eq!(
            live.next_item(Duration::from_secs(2)).await,
            SseItem::Comment("keep-alive".into())
        );
    }
    drop(live);

    let unknown = app
        .get("/v1/onboardings/onb_0123456789abcdef0123456789abcdef/events")
        .await;
    unknown.assert_error(404, "not_found");
    let bad = app.send(stream(&app, &id, Some("yesterday"))).await;
    bad.assert_error(400, "validation_failed");
    let anonymous = app
        .get_as(None, &format!("/v1/onboardings/{id}/events"))
        .await;
    anonymous.assert_error(401, "unauthenticated");
    app.stop().await;
}

async fn event_stream_shows_published_events_filtered_and_resumes(backend: Backend) {
    let app = TestApp::spawn_on(backend, LIVE).await;
    let mut completions =
        SseClient::open(app.request(Method::GET, "/v1/events?type=onboarding.completed")).await;
    let mut everything = SseClient::open(app.request(Method::GET, "/v1/events")).await;
    let ids: Vec<String> = create_onboardings(&app, 2).await;
    for id in &ids {
        app.wait_for_status(id, "completed").await;
    }

    let mut completed = Vec::new();
    for _ in 0..2 {
        let event = completions.next_event(WAIT).await.expect("a completion");
        assert_eq!(event.event, "onboarding.completed");
        assert_eq!(event.json()["type"], "onboarding.completed");
        completed.push(
            event.json()["onboarding_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    completed.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(completed, expected);

    // Every event: created, three step successes, completed — per onboarding, in order.
    let mut all = Vec::new();
    while all.len() < 10 {
        all.push(everything.next_event(WAIT).await.expect("an event"));
    }
    for id in &ids {
        let kinds: Vec<String> = all
            .iter()
            .filter(|e| e.json()["onboarding_id"] == id.as_str())
            .map(|e| e.event.clone())
            .collect();
        assert_eq!(
            kinds,
            [
                "onboarding.created",
                "step.succeeded",
                "step.succeeded",
                "step.succeeded",
                "onboarding.completed"
            ]
        );
    }
    let seqs: Vec<i64> = all
        .iter()
        .map(|e| {
            e.id.as_deref()
                .and_then(|i| i.parse().ok())
                .expect("numeric ids")
        })
        .collect();
    assert_eq!(
        seqs,
        (seqs[0]..seqs[0] + 10).collect::<Vec<_>>(),
        "gapless places"
    );

    // Resume after the fifth: the other five, in order.
    let mut resumed = SseClient::open(
        app.request(Method::GET, "/v1/events")
            .header("Last-Event-ID", seqs[4].to_string()),
    )
    .await;
    for expected in &all[5..] {
        let event = resumed.next_event(WAIT).await.expect("an event");
        assert_eq!(essence(&[event]), essence(std::slice::from_ref(expected)));
    }

    let bad = app.get("/v1/events?type=onboarding.exploded").await;
    bad.assert_error(400, "validation_failed");
    let csr = app.token(onramp_core::auth::Role::Csr).await;
    app.get_as(Some(&csr), "/v1/events")
        .await
        .assert_error(403, "forbidden");
    app.stop().await;
}

/// Creates `n` onboardings; returns their ids.
async fn create_onboardings(app: &TestApp, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(id_of(&app.create_onboarding(onboarding()).await));
    }
    ids
}
