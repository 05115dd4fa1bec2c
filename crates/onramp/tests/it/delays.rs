//! A `delay` step survives a SIGKILL: its end is stored with the step, and the restarted
//! process ends it on time (within a scheduler tick).

use crate::common::{Scratch, open_db};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"

[worker]
poll_interval = "100ms"
scheduler_interval = "200ms"

[stages.waits]
concurrency = 4

[tasks.cool_off]
kind = "delay"
stage = "waits"
duration = "4s"

[tasks.done]
kind = "sim"
stage = "waits"

[templates.delayed]
tasks = ["cool_off", "done"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_step_survives_kill_9_and_fires_on_time_after_restart() {
    let scratch = Scratch::new();
    let config = scratch.write("onramp.toml", CONFIG);
    let first = scratch.serve(Some(&config));
    let created = first
        .api
        .create_from("delayed", 1, "delay-1")
        .await
        .unwrap_or_else(|e| panic!("create: {e:?}"));
    let id = created["id"].as_str().unwrap().to_owned();
    let conn = open_db(&scratch);
    let deadline = Instant::now() + Duration::from_secs(10);
    let wake_at: i64 = loop {
        let found: Option<i64> = conn
            .query_row(
                "SELECT available_at FROM steps WHERE onboarding_id = ?1 AND seq = 1 AND status = 'waiting'",
                [&id],
                |r| r.get(0),
            )
            .ok();
        if let Some(at) = found {
            break at;
        }
        assert!(
            Instant::now() < deadline,
            "the delay never started:\n{}",
            first.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.kill();

    let second = scratch.serve(Some(&config));
    let deadline = Instant::now() + Duration::from_secs(15);
    let finished_at: i64 = loop {
        let o = second.api.onboarding(&id).await;
        if o["status"] == "completed" {
            let at = o["steps"][0]["finished_at"].as_str().unwrap();
            break at.parse::<jiff::Timestamp>().unwrap().as_millisecond();
        }
        assert!(
            Instant::now() < deadline,
            "not completed after restart: {o}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        finished_at >= wake_at,
        "ended early: {finished_at} < {wake_at}"
    );
    assert!(
        finished_at - wake_at <= 1_500,
        "ended {} ms late (scheduler tick 200 ms, plus start-up)",
        finished_at - wake_at
    );
}
