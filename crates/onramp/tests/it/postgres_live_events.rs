//! Live status and webhooks across processes (SPEC §7, §10, §12): an onboarding created
//! through an API process that runs no workers is run by a worker process. Every status
//! change reaches the API process's event stream through PostgreSQL's notifications (polling
//! is 30 s away), and both processes' dispatchers deliver the webhooks between them, each
//! event at least once and in order per onboarding.

use crate::common::ADMIN_TOKEN;
use crate::common::postgres::Cluster;
use onramp_testkit::{SseClient, WebhookReceiver};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"

[worker]
poll_interval = "30s"

[stages.live]
concurrency = 4

[tasks.slow]
kind = "sim"
stage = "live"
latency = "100ms"

[templates.three]
tasks = ["slow", "slow", "slow"]
"#;

const ONBOARDINGS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_by_a_worker_process_reach_the_api_process_live_and_its_webhooks() {
    let Some(cluster) = Cluster::start(CONFIG).await else {
        return;
    };
    let api_process = cluster.serve_without_workers();
    let _worker_process = cluster.worker(None);
    let api = &api_process.api;
    let client = reqwest::Client::new();

    let receiver = WebhookReceiver::start().await;
    let hook = api
        .request(reqwest::Method::POST, "/v1/webhooks", ADMIN_TOKEN)
        .json(&json!({"url": receiver.url(), "events": ["onboarding.created", "step.succeeded", "onboarding.completed"]}))
        .send()
        .await
        .expect("create a webhook");
    assert_eq!(hook.status(), 201);
    let hook: Value = hook.json().await.expect("webhook JSON");
    receiver.set_secret(hook["secret"].as_str().expect("a secret"));

    let started = Instant::now();
    let first = api.create_from("three", 0, "live-0").await.expect("create");
    let id = first["id"].as_str().expect("an id").to_owned();
    let mut stream = SseClient::open(
        client
            .get(format!("{}/v1/onboardings/{id}/events", api.base))
            .bearer_auth(ADMIN_TOKEN)
            .header("Last-Event-ID", "0"),
    )
    .await;
    let mut statuses = Vec::new();
    while let Some(event) = stream.next_event(Duration::from_secs(10)).await {
        let data = event.json();
        statuses.push((data["status"].clone(), data["progress"].clone()));
    }
    let took = started.elapsed();
    assert_eq!(
        statuses,
        vec![
            (json!("pending"), json!(0)),
            (json!("running"), json!(0)),
            (json!("running"), json!(33)),
            (json!("running"), json!(67)),
            (json!("completed"), json!(100)),
        ]
    );
    assert!(
        took < Duration::from_secs(5),
        "the stream followed the worker's commits in {took:?}, not a 30 s poll"
    );

    let mut ids = vec![id];
    for n in 1..ONBOARDINGS {
        let created = api
            .create_from("three", n, &format!("live-{n}"))
            .await
            .expect("create");
        ids.push(created["id"].as_str().expect("an id").to_owned());
    }
    let received = receiver
        .wait_for("every webhook", Duration::from_secs(30), |r| {
            first_arrivals(r)
                .values()
                .filter(|kinds| kinds.len() == 5)
                .count()
                == ONBOARDINGS
        })
        .await;
    assert!(received.iter().all(|r| r.verified));
    let arrived = first_arrivals(&received);
    for id in &ids {
        assert_eq!(
            arrived[id],
            [
                "onboarding.created",
                "step.succeeded",
                "step.succeeded",
                "step.succeeded",
                "onboarding.completed"
            ],
            "events of {id} in commit order"
        );
    }
}

fn first_arrivals(received: &[onramp_testkit::ReceivedWebhook]) -> HashMap<String, Vec<String>> {
    let mut seen = HashSet::new();
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
