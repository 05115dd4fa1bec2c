//! Events on RabbitMQ (SPEC §10): a topic exchange, persistent messages, routing key = event
//! type, publisher confirms, nothing lost when the broker drops the publisher or is
//! unreachable for a while. Needs `ONRAMP_TEST_AMQP_URL`; without it each test prints a skip
//! line and passes.

use crate::id_of;
use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use onramp_testkit::{Backend, TcpProxy, TestApp, factory, wait_until};
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

on_both_backends!(
    a_consumer_gets_every_completion_even_when_the_broker_drops_the_publisher,
    events_wait_in_the_outbox_while_the_broker_is_unreachable,
);

const URL_VAR: &str = "ONRAMP_TEST_AMQP_URL";

fn broker_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("skipped: {URL_VAR} is not set");
            None
        }
    }
}

/// A name no other test uses.
fn unique(prefix: &str) -> String {
    format!("{prefix}.{}", onramp_core::EventId::new().as_str())
}

fn config(url: &str, exchange: &str, latency: &str) -> String {
    format!(
        r#"
[events.amqp]
url = "{url}"
exchange = "{exchange}"

[stages.paced]
concurrency = 2

[tasks.paced]
kind = "sim"
stage = "paced"
latency = "{latency}"
"#
    )
}

/// A message as the consumer got it.
#[derive(Debug, Clone)]
struct Message {
    routing_key: String,
    persistent: bool,
    body: Value,
}

/// A consumer of the exchange with its own exclusive queue bound with `binding`.
struct Consumer {
    received: Arc<Mutex<Vec<Message>>>,
    connection: Connection,
    exchange: String,
}

impl Consumer {
    async fn start(url: &str, exchange: &str, binding: &str) -> Consumer {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .expect("the test consumer connects");
        let channel = connection.create_channel().await.expect("a channel");
        channel
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare the exchange");
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare a queue");
        channel
            .queue_bind(
                queue.name().as_str().into(),
                exchange.into(),
                binding.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind the queue");
        let mut deliveries = channel
            .basic_consume(
                queue.name().as_str().into(),
                "onramp-test".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = deliveries.next().await {
                sink.lock().push(Message {
                    routing_key: delivery.routing_key.as_str().to_owned(),
                    persistent: delivery.properties.delivery_mode() == &Some(2),
                    body: serde_json::from_slice(&delivery.data).unwrap_or(Value::Null),
                });
            }
        });
        Consumer {
            received,
            connection,
            exchange: exchange.to_owned(),
        }
    }

    fn messages(&self) -> Vec<Message> {
        self.received.lock().clone()
    }

    /// Distinct events per onboarding, in order of first arrival.
    fn first_arrivals(&self) -> HashMap<String, Vec<String>> {
        let mut seen = HashSet::new();
        let mut by_onboarding: HashMap<String, Vec<String>> = HashMap::new();
        for m in self.messages() {
            if seen.insert(m.body["id"].to_string()) {
                by_onboarding
                    .entry(
                        m.body["onboarding_id"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    )
                    .or_default()
                    .push(m.routing_key.clone());
            }
        }
        by_onboarding
    }

    async fn finish(self) {
        if let Ok(channel) = self.connection.create_channel().await {
            let _ = channel
                .exchange_delete(
                    self.exchange.as_str().into(),
                    ExchangeDeleteOptions::default(),
                )
                .await;
        }
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// Closes the publisher's connection from the broker's side (`rabbitmqctl close_connection`),
/// found by the connection name onramp gives it. Returns how many it closed.
async fn close_publisher_connection(exchange: &str) -> usize {
    let name = format!("onramp events -> {exchange}");
    tokio::task::spawn_blocking(move || {
        // The table output names each connection by a pid that close_connection accepts
        // (the JSON one does not), followed by its client properties.
        let listed = std::process::Command::new("rabbitmqctl")
            .args([
                "list_connections",
                "pid",
                "client_properties",
                "-q",
                "--no-table-headers",
            ])
            .output()
            .expect("run rabbitmqctl list_connections");
        let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
        let mut closed = 0;
        for line in listed.lines().filter(|line| line.contains(&name)) {
            let pid = line.split_whitespace().next().expect("a pid").to_owned();
            let status = std::process::Command::new("rabbitmqctl")
                .args(["close_connection", &pid, "test"])
                .status()
                .expect("run rabbitmqctl close_connection");
            assert!(status.success(), "close_connection {pid}: {listed}");
            closed += 1;
        }
        closed
    })
    .await
    .expect("rabbitmqctl")
}

async fn readiness(app: &TestApp) -> Value {
    let ready = app.get_as(None, "/readyz").await;
    ready.assert_status(200);
    ready.body
}

async fn a_consumer_gets_every_completion_even_when_the_broker_drops_the_publisher(
    backend: Backend,
) {
    const ONBOARDINGS: usize = 40;
    let Some(url) = broker_url() else { return };
    let exchange = unique("onramp.test");
    let consumer = Consumer::start(&url, &exchange, "onboarding.*").await;
    let app = TestApp::spawn_on(backend, &config(&url, &exchange, "60ms")).await;

    let mut ids = Vec::with_capacity(ONBOARDINGS);
    for _ in 0..ONBOARDINGS {
        ids.push(id_of(
            &app.create_onboarding(factory::with_tasks(&["paced"])).await,
        ));
    }
    // Mid-run: some completions are out, most are not.
    wait_until("the first completions", Duration::from_secs(15), || async {
        let n = consumer
            .messages()
            .iter()
            .filter(|m| m.routing_key == "onboarding.completed")
            .count();
        if n >= 3 {
            Ok(())
        } else {
            Err(format!("{n} completions"))
        }
    })
    .await;
    let closed = close_publisher_connection(&exchange).await;
    assert_eq!(
        closed, 1,
        "exactly onramp's publisher connection was closed"
    );

    wait_until("every completion", Duration::from_secs(30), || async {
        let arrived = consumer.first_arrivals();
        let missing = ids
            .iter()
            .filter(|id| {
                !arrived
                    .get(id.as_str())
                    .is_some_and(|kinds| kinds.iter().any(|k| k == "onboarding.completed"))
            })
            .count();
        if missing == 0 {
            Ok(())
        } else {
            Err(format!("{missing} completions missing"))
        }
    })
    .await;
    let arrived = consumer.first_arrivals();
    for id in &ids {
        assert_eq!(
            arrived[id.as_str()],
            ["onboarding.created", "onboarding.completed"],
            "events of {id} in commit order (step events are not bound)"
        );
    }
    for m in consumer.messages() {
        assert!(m.persistent, "persistent messages: {m:?}");
        assert_eq!(
            m.body["type"],
            m.routing_key.as_str(),
            "routing key = event type"
        );
    }
    wait_until(
        "events to be healthy again",
        Duration::from_secs(10),
        || async {
            let body = readiness(&app).await;
            if body["events"]["status"] == "ok" {
                Ok(())
            } else {
                Err(body.to_string())
            }
        },
    )
    .await;
    app.stop().await;
    consumer.finish().await;
}

async fn events_wait_in_the_outbox_while_the_broker_is_unreachable(backend: Backend) {
    const ONBOARDINGS: usize = 10;
    let Some(url) = broker_url() else { return };
    // onramp reaches the broker through a proxy the test can cut.
    let authority = url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("127.0.0.1:5672")
        .to_owned();
    let proxy = TcpProxy::start(&authority).await;
    let proxied = url.replace(&authority, &proxy.addr().to_string());
    let exchange = unique("onramp.test");
    let consumer = Consumer::start(&url, &exchange, "#").await;
    let app = TestApp::spawn_on(backend, &config(&proxied, &exchange, "0ms")).await;
    wait_until(
        "the publisher to connect",
        Duration::from_secs(10),
        || async {
            let body = readiness(&app).await;
            if body["events"]["status"] == "ok" {
                Ok(())
            } else {
                Err(body.to_string())
            }
        },
    )
    .await;

    proxy.go_down();
    wait_until(
        "readyz to report degraded events",
        Duration::from_secs(10),
        || async {
            let body = readiness(&app).await;
            if body["status"] == "degraded" && body["events"]["status"] == "degraded" {
                Ok(())
            } else {
                Err(body.to_string())
            }
        },
    )
    .await;
    let mut ids = Vec::with_capacity(ONBOARDINGS);
    for _ in 0..ONBOARDINGS {
        ids.push(id_of(
            &app.create_onboarding(factory::with_tasks(&["paced"])).await,
        ));
    }
    for id in &ids {
        app.wait_for_status(id, "completed").await;
    }
    assert!(
        consumer.messages().is_empty(),
        "nothing got through while the broker was away"
    );

    proxy.come_up();
    wait_until(
        "every event once the broker is back",
        Duration::from_secs(20),
        || async {
            let arrived = consumer.first_arrivals();
            let done = ids
                .iter()
                .filter(|id| {
                    arrived
                        .get(id.as_str())
                        .is_some_and(|kinds| kinds.len() == 3)
                })
                .count();
            if done == ONBOARDINGS {
                Ok(())
            } else {
                Err(format!("{done} complete"))
            }
        },
    )
    .await;
    let arrived = consumer.first_arrivals();
    for id in &ids {
        assert_eq!(
            arrived[id.as_str()],
            [
                "onboarding.created",
                "step.succeeded",
                "onboarding.completed"
            ],
            "events of {id} in commit order"
        );
    }
    wait_until(
        "events to be healthy again",
        Duration::from_secs(10),
        || async {
            let body = readiness(&app).await;
            if body["status"] == "ready" {
                Ok(())
            } else {
                Err(body.to_string())
            }
        },
    )
    .await;
    app.stop().await;
    consumer.finish().await;
}
