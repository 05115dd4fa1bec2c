//! `onramp token create|list|revoke` against the file a server is using.

use crate::common::{ADMIN_TOKEN, Scratch};
use reqwest::Method;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_token_works_until_revoked() {
    let scratch = Scratch::new();
    let db = scratch.db_url();

    let created = scratch.run(&[
        "token",
        "create",
        "--name",
        "x",
        "--role",
        "operator",
        "--database",
        &db,
    ]);
    created.success();
    let stdout = created.stdout();
    let secret = stdout.trim_end_matches('\n');
    assert_eq!(
        stdout.lines().count(),
        1,
        "only the token on stdout: {stdout:?}"
    );
    assert!(
        secret.len() == 68
            && secret.starts_with("onr_")
            && secret[4..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "not an onr_ token: {secret:?}"
    );

    let listed = scratch.run(&["token", "list", "--database", &db]);
    listed.success();
    assert!(
        listed.stdout().contains("x\toperator\tactive"),
        "{}",
        listed.stdout()
    );
    assert!(
        !listed.stdout().contains(secret),
        "token list leaks the secret"
    );
    assert!(
        !listed.stdout().contains(&secret[4..]),
        "token list leaks the secret"
    );

    let duplicate = scratch.run(&[
        "token",
        "create",
        "--name",
        "x",
        "--role",
        "viewer",
        "--database",
        &db,
    ]);
    let stderr = duplicate.failure();
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(duplicate.stdout().is_empty(), "no token printed on failure");

    let served = scratch.serve(None);
    let get = |token: &str| {
        served
            .api
            .request(Method::GET, "/v1/onboardings", token)
            .send()
    };
    assert_eq!(get(secret).await.expect("GET").status(), 200);

    scratch
        .run(&["token", "revoke", "x", "--database", &db])
        .success();
    let refused = get(secret).await.expect("GET");
    assert_eq!(refused.status(), 401);
    let body: serde_json::Value = refused.json().await.expect("JSON error");
    assert_eq!(body["error"]["code"], "unauthenticated", "{body}");
    assert_eq!(get(ADMIN_TOKEN).await.expect("GET").status(), 200);

    let listed = scratch.run(&["token", "list", "--database", &db]);
    assert!(
        listed.stdout().contains("x\toperator\trevoked"),
        "{}",
        listed.stdout()
    );
    let again = scratch.run(&["token", "revoke", "x", "--database", &db]);
    let stderr = again.failure();
    assert!(stderr.contains("not found"), "{stderr}");
}

#[test]
fn listing_or_revoking_tokens_of_a_missing_database_fails_without_creating_it() {
    let scratch = Scratch::new();
    let db = scratch.db_url();
    for args in [
        vec!["token", "list", "--database", &db],
        vec!["token", "revoke", "x", "--database", &db],
    ] {
        let stderr = scratch.run(&args).failure();
        assert!(stderr.contains("does not exist"), "{stderr}");
    }
    assert!(
        !scratch.db_path().exists(),
        "a token command created a database"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_serve_without_tokens_prints_an_admin_token_once() {
    let scratch = Scratch::new();
    let db = scratch.db_url();
    let args = ["serve", "--database", &db, "--listen", "127.0.0.1:0"];

    let mut first = scratch.start(&args, None);
    let token = first.wait_for_line("admin token (shown once): ");
    first.api.base = first.wait_for_line("listening on ");
    let response = first
        .api
        .request(Method::GET, "/v1/stages", &token)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200);
    assert!(first.terminate(Duration::from_secs(10)).success());

    let mut second = scratch.start(&args, None);
    second.api.base = second.wait_for_line("listening on ");
    assert!(
        second.seen.iter().all(|l| !l.contains("admin token")),
        "a second start prints no new token: {:?}",
        second.seen
    );
    let response = second
        .api
        .request(Method::GET, "/v1/stages", &token)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200, "the first token still works");
}
