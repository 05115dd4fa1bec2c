//! What an operator sees of a request: its `X-Request-Id` (the caller's own, or a new one)
//! on the response and on every log line about it, the onboarding it is about, and never a
//! token in the logs.

use crate::common::{ADMIN_TOKEN, Scratch};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_carry_a_request_id_and_logs_never_show_a_token() {
    let scratch = Scratch::new();
    let db = scratch.db_url();
    let mut served = scratch.start_logging(
        &["serve", "--database", &db, "--listen", "127.0.0.1:0"],
        Some(ADMIN_TOKEN),
        "debug",
    );
    served.api.base = served.wait_for_line("listening on ");

    let echoed = served
        .api
        .request(reqwest::Method::POST, "/v1/onboardings", ADMIN_TOKEN)
        .header("x-request-id", "req-from-the-caller-42")
        .json(
            &json!({"customer": {"name": "Ada", "email": "ada@example.com"},
                      "tasks": ["no_such_task"]}),
        )
        .send()
        .await
        .expect("POST");
    assert_eq!(echoed.status(), 400);
    assert_eq!(echoed.headers()["x-request-id"], "req-from-the-caller-42");

    let fresh = served
        .api
        .request(reqwest::Method::GET, "/v1/onboardings", ADMIN_TOKEN)
        .send()
        .await
        .expect("GET");
    let id = fresh.headers()["x-request-id"]
        .to_str()
        .expect("text")
        .to_owned();
    assert_eq!(id.len(), 36, "a UUID when the caller sends none: {id}");

    // A request about an onboarding names it on the request's log lines.
    let onboarding = onramp_core::OnboardingId::new().to_string();
    let about = served
        .api
        .request(
            reqwest::Method::GET,
            &format!("/v1/onboardings/{onboarding}"),
            ADMIN_TOKEN,
        )
        .send()
        .await
        .expect("GET");
    assert_eq!(about.status(), 404);

    // A wrong token and a login form with the real one: neither may reach the log.
    let wrong = "onr_this-is-not-a-valid-token-but-still-a-secret";
    let denied = served
        .api
        .request(reqwest::Method::GET, "/v1/onboardings", wrong)
        .send()
        .await
        .expect("GET");
    assert_eq!(denied.status(), 401);
    reqwest::Client::new()
        .post(format!("{}/login", served.api.base))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .expect("POST /login");

    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = served.stderr();
    assert!(log.contains("req-from-the-caller-42"), "{log}");
    assert!(log.contains(&id), "{log}");
    assert!(
        without_colours(&log)
            .lines()
            .any(|l| l.contains(&format!("onboarding={onboarding}")) && l.contains("status=404")),
        "the onboarding is named on its request's log line:\n{log}"
    );
    assert!(
        !log.contains(ADMIN_TOKEN),
        "the admin token is in the log:\n{log}"
    );
    assert!(
        !log.contains(wrong),
        "a presented token is in the log:\n{log}"
    );
    let status = served.terminate(Duration::from_secs(10));
    assert!(status.success());
}

/// The log without its ANSI colour codes (`ESC [ ... m`).
fn without_colours(log: &str) -> String {
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            plain.push(c);
        }
    }
    plain
}
