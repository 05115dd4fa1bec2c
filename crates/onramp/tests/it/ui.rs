//! The admin UI in a real browser: Debian's headless Chromium driven through WebDriver
//! (chromedriver) against a real `onramp serve` on 127.0.0.1. Each test saves a screenshot
//! under `target/ui-screenshots/`.
//!
//! The tests need `chromedriver` (and `chromium`): found through `ONRAMP_TEST_CHROMEDRIVER`
//! or at `/usr/bin/chromedriver`. Without it they print a skip line and pass, unless
//! `ONRAMP_TEST_REQUIRE_BROWSER` is set (as `.ci/run` does), when they fail.

use crate::common::{ADMIN_TOKEN, Scratch, Served};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use onramp_testkit::{FakeService, Reply};
use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[worker]
poll_interval = "100ms"
scheduler_interval = "200ms"

[stages.checks]
concurrency = 4

[stages.crm]
concurrency = 2
max_attempts = 1

[services.crm]
base_url = "CRM_URL"
timeout = "2s"

[tasks.check_identity]
kind = "sim"
stage = "checks"
latency = "400ms"

[tasks.check_credit]
kind = "sim"
stage = "checks"
latency = "400ms"

[tasks.register]
kind = "http"
stage = "crm"
service = "crm"
request = { method = "POST", path = "/register" }

[templates.standard]
tasks = ["check_identity", "check_credit"]

[templates.with_crm]
tasks = ["check_identity", "register"]

[stages.people]

[tasks.kickoff_call]
kind = "human"
stage = "people"
skill = "onboarding_call"
duration = "30m"
due_within = "3d"

[templates.assisted]
tasks = ["check_identity", "kickoff_call"]
"#;

/// A headless Chromium session; the driver process dies with it.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    name: &'static str,
}

impl Browser {
    /// Starts chromedriver and a browser session, or `None` (after a skip line) where the
    /// machine has no browser.
    async fn start(name: &'static str) -> Option<Browser> {
        let driver_path = std::env::var("ONRAMP_TEST_CHROMEDRIVER")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from("/usr/bin/chromedriver"));
        if !driver_path.exists() {
            assert!(
                std::env::var_os("ONRAMP_TEST_REQUIRE_BROWSER").is_none(),
                "ONRAMP_TEST_REQUIRE_BROWSER is set but {} does not exist",
                driver_path.display()
            );
            eprintln!(
                "skipping browser test {name}: no chromedriver at {} (install chromium and \
                 chromium-driver, or set ONRAMP_TEST_CHROMEDRIVER)",
                driver_path.display()
            );
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("a browser profile dir");
        let mut chrome = json!({
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        });
        if std::path::Path::new("/usr/bin/chromium").exists() {
            chrome["binary"] = json!("/usr/bin/chromium");
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), chrome);
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            // chromedriver speaks plain HTTP on loopback: no TLS stack needed.
            let attempt = ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await;
            match attempt {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("could not start a browser session: {e}"),
            }
        };
        Some(Browser {
            client,
            driver,
            _profile: profile,
            name,
        })
    }

    /// Saves a screenshot as `target/ui-screenshots/<test>-<step>.png`.
    async fn screenshot(&self, step: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots");
        std::fs::create_dir_all(&dir).expect("the screenshot dir");
        std::fs::write(dir.join(format!("{}-{step}.png", self.name)), png).expect("save it");
    }

    async fn login(&self, base: &str) {
        self.login_with(base, ADMIN_TOKEN).await;
    }

    async fn login_with(&self, base: &str, secret: &str) {
        self.client
            .goto(&format!("{base}/login"))
            .await
            .expect("login page");
        let token = self
            .client
            .find(Locator::Id("token"))
            .await
            .expect("token field");
        token.send_keys(secret).await.expect("type the token");
        self.client
            .find(Locator::Css("form button[type=submit]"))
            .await
            .expect("log in button")
            .click()
            .await
            .expect("log in");
        self.wait_for("the dashboard", |html| html.contains("<h1>Dashboard</h1>"))
            .await;
    }

    /// Waits (bounded) until the page source satisfies `ready`; returns it.
    async fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let html = self.client.source().await.unwrap_or_default();
            if ready(&html) {
                return html;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{html}"
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Opens the new-onboarding form and types the customer's name and e-mail.
    async fn start_form(&self, base: &str, name: &str, email: &str) {
        self.client
            .goto(&format!("{base}/onboardings/new"))
            .await
            .expect("the new-onboarding form");
        self.fill("name", name).await;
        self.fill("email", email).await;
    }

    async fn choose_template(&self, template: &str) {
        self.client
            .find(Locator::Id("template"))
            .await
            .expect("template select")
            .select_by_value(template)
            .await
            .expect("choose the template");
    }

    async fn submit_form(&self) {
        self.client
            .find(Locator::Css("#new-onboarding button[type=submit]"))
            .await
            .expect("submit button")
            .click()
            .await
            .expect("submit the form");
    }

    async fn fill(&self, id: &str, text: &str) {
        let field = self.client.find(Locator::Id(id)).await.expect(id);
        field.send_keys(text).await.expect("type");
    }

    async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn serve(scratch: &Scratch, crm: &str) -> Served {
    let config = scratch.write("ui.toml", &CONFIG.replace("CRM_URL", crm));
    scratch.serve(Some(&config))
}

async fn api_get(served: &Served, path: &str) -> Value {
    served
        .api
        .request(reqwest::Method::GET, path, ADMIN_TOKEN)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_onboarding_created_in_the_form_completes_on_screen_without_a_reload() {
    let Some(browser) = Browser::start("create_and_watch").await else {
        return;
    };
    let scratch = Scratch::new();
    let served = serve(&scratch, "http://127.0.0.1:9");
    let base = served.api.base.clone();
    browser.login(&base).await;
    browser.screenshot("dashboard").await;

    browser
        .client
        .goto(&format!("{base}/onboardings/new"))
        .await
        .expect("form");
    let hostile = "<script>alert(1)</script>";
    browser.fill("name", hostile).await;
    browser.fill("email", "ada@example.com").await;
    browser.choose_template("standard").await;
    browser.submit_form().await;

    let running = browser
        .wait_for("the detail page", |html| html.contains("id=\"live\""))
        .await;
    assert!(
        running.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the customer's name renders as text"
    );
    let url = browser.client.current_url().await.expect("url").to_string();
    // Mark the document: a reload would lose the mark.
    browser
        .client
        .execute("window.__same_page = true; return true;", vec![])
        .await
        .expect("mark the page");
    browser.screenshot("running").await;
    browser
        .wait_for("completed without a reload", |html| {
            html.contains("data-status=\"completed\"")
        })
        .await;
    let same_page = browser
        .client
        .execute("return window.__same_page === true;", vec![])
        .await
        .expect("read the mark");
    assert_eq!(same_page, json!(true), "the page was not reloaded");
    let streamed = browser
        .client
        .execute(
            "return performance.getEntriesByType('resource').some(e => e.name.includes('/changes'));",
            vec![],
        )
        .await
        .expect("read the page's requests");
    assert_eq!(
        streamed,
        json!(true),
        "the page followed the server-sent changes"
    );
    browser.screenshot("completed").await;

    let id = url.rsplit('/').next().expect("an id").to_owned();
    let onboarding = api_get(&served, &format!("/v1/onboardings/{id}")).await;
    assert_eq!(onboarding["status"], "completed");
    assert_eq!(onboarding["customer"]["name"], hostile);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitting_the_form_twice_creates_one_onboarding() {
    let Some(browser) = Browser::start("double_submit").await else {
        return;
    };
    let scratch = Scratch::new();
    let served = serve(&scratch, "http://127.0.0.1:9");
    let base = served.api.base.clone();
    browser.login(&base).await;
    browser
        .start_form(&base, "Grace Hopper", "grace@example.com")
        .await;
    browser.choose_template("standard").await;
    browser.screenshot("filled").await;
    // The same rendered form posted twice, as a double click or an impatient reload does.
    let statuses = browser
        .client
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               const form = document.getElementById("new-onboarding");
               const body = new URLSearchParams(new FormData(form));
               Promise.all([1, 2].map(() => fetch("/onboardings", {method: "POST", body, redirect: "follow"})))
                 .then(rs => done(rs.map(r => r.url)));"#,
            vec![],
        )
        .await
        .expect("post twice");
    let urls: Vec<String> = serde_json::from_value(statuses).expect("urls");
    assert_eq!(urls.len(), 2);
    assert_eq!(urls[0], urls[1], "both answers lead to the same onboarding");
    // And a real double click on the button.
    browser
        .client
        .execute(
            "const b = document.querySelector('#new-onboarding button[type=submit]'); \
             b.click(); b.click(); return true;",
            vec![],
        )
        .await
        .expect("double click");
    browser
        .wait_for("the detail page", |html| html.contains("id=\"live\""))
        .await;
    browser.screenshot("detail").await;
    let list = api_get(&served, "/v1/onboardings?q=grace").await;
    assert_eq!(
        list["items"].as_array().expect("items").len(),
        1,
        "one onboarding for one rendered form: {list}"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_replayed_from_the_ui() {
    let Some(browser) = Browser::start("replay_dead_letter").await else {
        return;
    };
    let crm = FakeService::start().await;
    crm.script("/register", [Reply::status(503)]);
    let scratch = Scratch::new();
    let served = serve(&scratch, crm.url());
    let base = served.api.base.clone();
    let created = served
        .api
        .request(reqwest::Method::POST, "/v1/onboardings", ADMIN_TOKEN)
        .json(
            &json!({"customer": {"name": "Alan Turing", "email": "alan@example.com"},
                      "template": "with_crm"}),
        )
        .send()
        .await
        .expect("create");
    let id = created.json::<Value>().await.expect("JSON")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    browser.login(&base).await;
    browser
        .client
        .goto(&format!("{base}/dead-letters"))
        .await
        .expect("dead letters");
    browser
        .wait_for("the dead letter", |html| html.contains("HTTP 503"))
        .await;
    browser.screenshot("dead").await;

    crm.script("/register", [Reply::json(200, json!({"ok": true}))]);
    browser
        .client
        .find(Locator::Css("form[action$='/replay'] button"))
        .await
        .expect("replay button")
        .click()
        .await
        .expect("replay");
    browser
        .wait_for("the onboarding completes", |html| {
            html.contains("data-status=\"completed\"")
        })
        .await;
    browser.screenshot("replayed").await;
    let onboarding = api_get(&served, &format!("/v1/onboardings/{id}")).await;
    assert_eq!(onboarding["status"], "completed");
    browser.close().await;
}

/// Escaping, checked on the raw HTML (no browser needed): customer data is text everywhere
/// it appears, and HTML responses carry the security headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_escapes_customer_data_and_sends_security_headers() {
    let scratch = Scratch::new();
    let served = serve(&scratch, "http://127.0.0.1:9");
    let hostile = "<script>alert(1)</script>";
    served
        .api
        .request(reqwest::Method::POST, "/v1/onboardings", ADMIN_TOKEN)
        .json(
            &json!({"customer": {"name": hostile, "email": "x@example.com",
                                   "company": "\"><img src=x onerror=alert(2)>"},
                      "template": "standard"}),
        )
        .send()
        .await
        .expect("create");
    let http = reqwest::Client::new();
    let unauthenticated = http
        .get(format!("{}/onboardings", served.api.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        unauthenticated.url().path(),
        "/login",
        "pages need a session"
    );
    let page = http
        .get(format!("{}/onboardings", served.api.base))
        .header("cookie", format!("onramp_session={ADMIN_TOKEN}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(page.status(), 200);
    let csp = page
        .headers()
        .get("content-security-policy")
        .expect("a CSP")
        .to_str()
        .expect("text")
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.expect("HTML");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains(hostile), "raw markup from customer data");

    // A form without this session's CSRF token is refused.
    let forged = http
        .post(format!("{}/logout", served.api.base))
        .header("cookie", format!("onramp_session={ADMIN_TOKEN}"))
        .form(&[("csrf", "forged")])
        .send()
        .await
        .expect("POST");
    assert_eq!(forged.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_picked_tasks_are_added_and_reordered_before_submitting() {
    let Some(browser) = Browser::start("hand_picked").await else {
        return;
    };
    let scratch = Scratch::new();
    let served = serve(&scratch, "http://127.0.0.1:9");
    let base = served.api.base.clone();
    browser.login(&base).await;
    browser
        .start_form(&base, "Barbara Liskov", "barbara@example.com")
        .await;
    let add = browser
        .client
        .find(Locator::Css("select[aria-label='Add a task']"))
        .await
        .expect("the task picker");
    add.select_by_value("check_credit").await.expect("add one");
    add.select_by_value("check_identity")
        .await
        .expect("add another");
    browser
        .client
        .find(Locator::Css("button[aria-label='Move check_identity up']"))
        .await
        .expect("move button")
        .click()
        .await
        .expect("move it up");
    let tasks = browser
        .client
        .find(Locator::Id("tasks"))
        .await
        .expect("tasks field")
        .prop("value")
        .await
        .expect("its value");
    assert_eq!(tasks.as_deref(), Some("check_identity, check_credit"));
    browser.screenshot("picked").await;
    browser.submit_form().await;
    browser
        .wait_for("the detail page", |html| html.contains("id=\"live\""))
        .await;
    let list = api_get(&served, "/v1/onboardings?q=barbara").await;
    let id = list["items"][0]["id"].as_str().expect("created").to_owned();
    let onboarding = api_get(&served, &format!("/v1/onboardings/{id}")).await;
    let order: Vec<&str> = onboarding["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["task"].as_str().expect("task"))
        .collect();
    assert_eq!(order, ["check_identity", "check_credit"]);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csr_completes_their_task_from_the_inbox() {
    let Some(browser) = Browser::start("csr_inbox").await else {
        return;
    };
    let scratch = Scratch::new();
    let served = serve(&scratch, "http://127.0.0.1:9");
    let base = served.api.base.clone();
    let day = ["09:00-17:00"];
    let csr: Value = served
        .api
        .request(reqwest::Method::POST, "/v1/csrs", ADMIN_TOKEN)
        .json(&json!({
            "name": "Katherine Johnson", "email": "kj@example.com",
            "skills": ["onboarding_call"], "timezone": "America/New_York",
            "working_hours": {"mon": day, "tue": day, "wed": day, "thu": day, "fri": day},
            "max_active_tasks": 3,
        }))
        .send()
        .await
        .expect("create a CSR")
        .json()
        .await
        .expect("JSON");
    let csr_id = csr["id"].as_str().expect("csr id").to_owned();
    let db = scratch.db_url();
    let token = scratch.run(&[
        "token",
        "create",
        "--role",
        "csr",
        "--name",
        "kj",
        "--csr",
        &csr_id,
        "--database",
        &db,
    ]);
    let csr_token = token.stdout().trim().to_owned();
    assert!(csr_token.starts_with("onr_"), "{}", token.stderr());

    let created: Value = served
        .api
        .request(reqwest::Method::POST, "/v1/onboardings", ADMIN_TOKEN)
        .json(
            &json!({"customer": {"name": "Edsger Dijkstra", "email": "ed@example.com"},
                      "template": "assisted"}),
        )
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("JSON");
    let id = created["id"].as_str().expect("id").to_owned();

    browser.login_with(&base, &csr_token).await;
    let nav = browser.client.source().await.expect("html");
    assert!(nav.contains("My tasks"), "a CSR sees their inbox");
    assert!(
        !nav.contains("href=\"/dead-letters\""),
        "and not operations pages"
    );
    browser
        .client
        .goto(&format!("{base}/tasks"))
        .await
        .expect("inbox");
    let inbox = browser
        .wait_for("the assigned task", |html| html.contains("kickoff_call"))
        .await;
    assert!(
        inbox.contains("America/New_York"),
        "times in the CSR's own zone"
    );
    browser.screenshot("inbox").await;
    browser
        .fill(
            &browser
                .client
                .find(Locator::Css("input[name=notes]"))
                .await
                .expect("notes")
                .attr("id")
                .await
                .expect("id")
                .expect("an id"),
            "Walked through the setup",
        )
        .await;
    browser
        .client
        .find(Locator::Css("form[action$='/complete'] button"))
        .await
        .expect("complete button")
        .click()
        .await
        .expect("complete");
    browser
        .wait_for("an empty inbox", |html| html.contains("Nothing to do."))
        .await;
    browser.screenshot("done").await;

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = api_get(&served, &format!("/v1/onboardings/{id}")).await;
        if o["status"] == "completed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the onboarding did not move on: {o}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser.close().await;

    // The CSR list and the CSR's week, as an admin sees them.
    let http = reqwest::Client::new();
    let admin_page = |path: String| {
        http.get(format!("{base}{path}"))
            .header("cookie", format!("onramp_session={ADMIN_TOKEN}"))
            .send()
    };
    let list = admin_page("/csrs".into()).await.expect("GET /csrs");
    assert_eq!(list.status(), 200);
    assert!(
        list.text()
            .await
            .expect("html")
            .contains("Katherine Johnson")
    );
    let week = admin_page(format!("/csrs/{csr_id}"))
        .await
        .expect("GET week");
    assert_eq!(week.status(), 200);
    let week = week.text().await.expect("html");
    assert!(
        week.contains("Week of") && week.contains("09:00-17:00"),
        "{week}"
    );
    assert!(
        week.contains("kickoff_call"),
        "the done task is on the schedule: {week}"
    );
}
