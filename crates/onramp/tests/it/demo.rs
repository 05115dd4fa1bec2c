//! `onramp demo`: prints a URL and a working admin token, and onboardings flow to the end.

use crate::common::Scratch;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_a_working_token_and_completes_onboardings() {
    let scratch = Scratch::new();
    let db = scratch.db_url();
    let args = [
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--database",
        &db,
        "--rate",
        "20",
    ];
    let mut demo = scratch.start(&args, None);
    demo.api.base = demo.wait_for_line("onramp demo is running at ");
    let token = demo.wait_for_line("admin token: ");
    assert!(token.starts_with("onr_"), "{token}");

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = demo
            .api
            .request(
                reqwest::Method::GET,
                "/v1/onboardings?status=completed&limit=1",
                &token,
            )
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 200, "the printed token works");
        let page: serde_json::Value = response.json().await.expect("JSON");
        if !page["items"].as_array().expect("items").is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no demo onboarding completed within 30 s; stderr:\n{}",
            demo.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The sample services are called: each shows up with its breaker and recent calls.
    let services: serde_json::Value = demo
        .api
        .request(reqwest::Method::GET, "/v1/services", &token)
        .send()
        .await
        .expect("GET /v1/services")
        .json()
        .await
        .expect("JSON");
    let names: Vec<&str> = services
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["billing", "crm", "email", "provisioning"]);
    let crm = &services[1];
    assert!(crm["recent_calls"].as_u64().expect("calls") > 0, "{crm}");
    assert!(crm["breaker"].is_string(), "{crm}");

    let status = demo.terminate(Duration::from_secs(15));
    assert!(status.success(), "demo exited with {status}");
}
