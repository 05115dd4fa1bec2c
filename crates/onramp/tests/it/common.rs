//! Running the real `onramp` binary: a scratch directory per test, one-shot commands, a
//! served process with its address parsed from stdout, an HTTP client with a token, and
//! bounded waits (the only place these tests sleep). [`postgres`] adds what the tests of
//! several processes on one PostgreSQL database need.

pub mod postgres;

use serde_json::Value;
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The admin token every served process gets through `ONRAMP_ADMIN_TOKEN`.
pub const ADMIN_TOKEN: &str =
    "onr_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// How long a process may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A config with three `sim` stages chained by the template `three`, fast polling and a short
/// visibility timeout so that a killed process's leases come back quickly.
pub const THREE_STAGES: &str = r#"
[server]
listen = "127.0.0.1:0"

[worker]
poll_interval = "100ms"
scheduler_interval = "200ms"

[stages.first]
concurrency = 4
visibility_timeout = "2s"

[stages.second]
concurrency = 4
visibility_timeout = "2s"

[stages.third]
concurrency = 4
visibility_timeout = "2s"

[tasks.one]
kind = "sim"
stage = "first"
latency = "10ms"
fail_rate = 0.0

[tasks.two]
kind = "sim"
stage = "second"
latency = "10ms"
fail_rate = 0.0

[tasks.three]
kind = "sim"
stage = "third"
latency = "10ms"
fail_rate = 0.0

[templates.three]
tasks = ["one", "two", "three"]
"#;

/// A temp directory holding one test's database, config and logs.
pub struct Scratch {
    dir: TempDir,
}

impl Scratch {
    /// A fresh, empty directory.
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("create a temp dir"),
        }
    }

    /// A path inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The database file.
    pub fn db_path(&self) -> PathBuf {
        self.path("onramp.db")
    }

    /// The database URL.
    pub fn db_url(&self) -> String {
        format!("sqlite://{}", self.db_path().display())
    }

    /// Writes a file and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write a scratch file");
        path
    }

    /// `onramp ARGS` prepared to run in this directory with a clean environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_onramp"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_remove("ONRAMP_CONFIG")
            .env_remove("ONRAMP_DATABASE_URL")
            .env_remove("ONRAMP_LISTEN")
            .env_remove("ONRAMP_ADMIN_TOKEN")
            .env_remove("ONRAMP_LOG_FORMAT")
            .env("ONRAMP_LOG", "warn")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `onramp ARGS` to completion (bounded), returning its output.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut cmd = self.command(args);
        let n = unique();
        let (out_name, err_name) = (format!("run-{n}.stdout"), format!("run-{n}.stderr"));
        let stdout = self.log_file(&out_name);
        let stderr = self.log_file(&err_name);
        cmd.stdout(Stdio::from(stdout.try_clone().expect("clone")))
            .stderr(Stdio::from(stderr.try_clone().expect("clone")));
        let mut child = cmd.spawn().expect("spawn onramp");
        let status = wait_for_exit(&mut child, Duration::from_secs(30)).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`onramp {}` did not finish within 30 s; stderr:\n{}",
                args.join(" "),
                read(&self.path(&err_name))
            )
        });
        Run {
            args: args.join(" "),
            output: Output {
                status,
                stdout: std::fs::read(self.path(&out_name)).expect("read stdout"),
                stderr: std::fs::read(self.path(&err_name)).expect("read stderr"),
            },
        }
    }

    fn log_file(&self, name: &str) -> File {
        File::create(self.path(name)).expect("create a log file")
    }

    /// Starts `onramp serve` on this directory's database, `127.0.0.1:0`, with the admin
    /// token preset; returns once it prints the address it listens on.
    pub fn serve(&self, config: Option<&PathBuf>) -> Served {
        self.serve_on(&self.db_url(), config, &[])
    }

    /// [`serve`](Self::serve) on the database at `database`, with `extra` flags.
    pub fn serve_on(&self, database: &str, config: Option<&PathBuf>, extra: &[&str]) -> Served {
        let mut args = vec!["serve", "--database", database, "--listen", "127.0.0.1:0"];
        let config = config.map(|c| c.display().to_string());
        if let Some(c) = &config {
            args.extend(["--config", c]);
        }
        args.extend(extra);
        let mut served = self.start(&args, Some(ADMIN_TOKEN));
        let addr = served.wait_for_line("listening on ");
        served.api.base = addr;
        served
    }

    /// Starts `onramp worker` on the database at `database` (only `stages`, when given, as
    /// `--stages` takes them); returns once its workers run. It has no API.
    pub fn worker_on(&self, database: &str, config: &Path, stages: Option<&str>) -> Served {
        let config = config.display().to_string();
        let mut args = vec!["worker", "--database", database, "--config", &config];
        if let Some(stages) = stages {
            args.extend(["--stages", stages]);
        }
        let mut worker = self.start(&args, None);
        worker.wait_for_log("worker running");
        worker
    }

    /// Starts a long-running `onramp ARGS` (serve, demo) with stdout read line by line;
    /// `admin_token` presets `ONRAMP_ADMIN_TOKEN`.
    pub fn start(&self, args: &[&str], admin_token: Option<&str>) -> Served {
        self.start_logging(args, admin_token, "info")
    }

    /// [`start`](Self::start) with the log filter `log` (`ONRAMP_LOG`).
    pub fn start_logging(&self, args: &[&str], admin_token: Option<&str>, log: &str) -> Served {
        let stderr_path = self.path(&format!("{}-{}.stderr", args[0], unique()));
        let stderr = File::create(&stderr_path).expect("create the stderr file");
        let mut command = self.command(args);
        if let Some(token) = admin_token {
            command.env("ONRAMP_ADMIN_TOKEN", token);
        }
        let mut child = command
            .env("ONRAMP_LOG", log)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn onramp");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Served {
            child,
            lines,
            seen: Vec::new(),
            api: Api {
                base: String::new(),
                http: reqwest::Client::new(),
            },
            stderr_path,
        }
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

fn read(path: &PathBuf) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Polls a child until it exits or `limit` passes.
pub fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The result of a finished command.
pub struct Run {
    args: String,
    /// What it wrote and how it ended.
    pub output: Output,
}

impl Run {
    /// Its stdout.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// Its stderr.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Asserts exit status 0.
    pub fn success(&self) -> &Run {
        assert!(
            self.output.status.success(),
            "`onramp {}` failed with {}\nstdout:\n{}\nstderr:\n{}",
            self.args,
            self.output.status,
            self.stdout(),
            self.stderr()
        );
        self
    }

    /// Asserts a non-zero exit without a panic, and returns stderr.
    pub fn failure(&self) -> String {
        assert!(
            !self.output.status.success(),
            "`onramp {}` should have failed\nstdout:\n{}\nstderr:\n{}",
            self.args,
            self.stdout(),
            self.stderr()
        );
        assert_eq!(
            self.output.status.code(),
            Some(1),
            "`onramp {}` should exit 1, not die by a signal or abort\nstderr:\n{}",
            self.args,
            self.stderr()
        );
        let stderr = self.stderr();
        assert!(
            !stderr.contains("panicked"),
            "`onramp {}` panicked:\n{stderr}",
            self.args
        );
        stderr
    }
}

/// A running `onramp` process (`serve`, `worker`, `demo`); killed when dropped.
pub struct Served {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// The stdout lines read so far.
    pub seen: Vec<String>,
    /// Its API.
    pub api: Api,
    stderr_path: PathBuf,
}

impl Served {
    /// Waits (bounded) for a stdout line starting with `prefix`; returns the rest of it.
    pub fn wait_for_line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let rest = line.strip_prefix(prefix).map(|r| r.trim().to_owned());
                    self.seen.push(line);
                    if let Some(rest) = rest {
                        return rest;
                    }
                }
                Err(_) => panic!(
                    "onramp did not print a line starting with {prefix:?} (exit: {:?}); stderr:\n{}",
                    self.child.try_wait(),
                    self.stderr()
                ),
            }
        }
    }

    /// Waits (bounded) until the process has logged a line containing `needle`.
    pub fn wait_for_log(&mut self, needle: &str) {
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.stderr().contains(needle) {
            let exited = self.child.try_wait().expect("poll the child");
            if exited.is_some() || Instant::now() >= deadline {
                panic!(
                    "onramp did not log {needle:?} (exit: {exited:?}); stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process's logs so far.
    pub fn stderr(&self) -> String {
        read(&self.stderr_path)
    }

    /// `kill -9`.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }

    /// `kill -STOP`: the process stands still, holding its connections and leases, as in a
    /// long pause of its machine.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// `kill -CONT`: a frozen process carries on where it stood.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill {signal} failed");
    }

    /// Sends SIGTERM and waits (bounded) for the exit.
    pub fn terminate(mut self, limit: Duration) -> ExitStatus {
        self.signal("-TERM");
        match wait_for_exit(&mut self.child, limit) {
            Some(status) => status,
            None => panic!(
                "onramp did not exit within {limit:?} of SIGTERM; stderr:\n{}",
                self.stderr()
            ),
        }
    }
}

/// The HTTP API of a served process (cheap to clone into tasks).
#[derive(Clone)]
pub struct Api {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    http: reqwest::Client,
}

impl Api {
    /// A request to `path` with a bearer token.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .timeout(Duration::from_secs(10))
    }

    /// GET `path` as admin; the JSON of a 200.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self
            .request(reqwest::Method::GET, path, ADMIN_TOKEN)
            .send()
            .await
            .expect("GET");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON body");
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Creates an onboarding for customer `n` (`Customer n`, `c{n}@example.com`) from
    /// `template` as admin, with an idempotency key; returns the onboarding. A lost connection or a 503 is [`Refusal::Unavailable`]
    /// (worth sending again with the same key), any other answer but 201 is
    /// [`Refusal::Other`].
    pub async fn create_from(&self, template: &str, n: usize, key: &str) -> Result<Value, Refusal> {
        let response = self
            .request(reqwest::Method::POST, "/v1/onboardings", ADMIN_TOKEN)
            .header("Idempotency-Key", key)
            .json(&serde_json::json!({
                "customer": {"name": format!("Customer {n}"), "email": format!("c{n}@example.com")},
                "template": template,
            }))
            .send()
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        match status.as_u16() {
            201 => Ok(serde_json::from_str(&body).expect("a JSON onboarding")),
            503 => Err(Refusal::Unavailable(format!("HTTP {status}: {body}"))),
            _ => Err(Refusal::Other(format!("HTTP {status}: {body}"))),
        }
    }

    /// Creates an onboarding from template `three` as admin; returns its id.
    pub async fn create_onboarding(&self, n: usize, key: Option<&str>) -> Result<String, String> {
        let mut request = self
            .request(reqwest::Method::POST, "/v1/onboardings", ADMIN_TOKEN)
            .json(&serde_json::json!({
                "customer": {"name": format!("Customer {n}"), "email": format!("c{n}@example.com")},
                "template": "three",
            }));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if status != 201 {
            return Err(format!("HTTP {status}: {body}"));
        }
        Ok(body["id"].as_str().expect("an id").to_owned())
    }

    /// An onboarding with its steps.
    pub async fn onboarding(&self, id: &str) -> Value {
        self.get_json(&format!("/v1/onboardings/{id}")).await
    }

    /// An onboarding's audit entries, in order.
    pub async fn audit(&self, id: &str) -> Vec<Value> {
        let page = self.get_json(&format!("/v1/onboardings/{id}/audit")).await;
        page["items"].as_array().expect("audit items").clone()
    }

    /// The ids of every onboarding with `status`, following the pages.
    pub async fn ids_with_status(&self, status: &str) -> HashSet<String> {
        let mut ids = HashSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/onboardings?status={status}&limit=500");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = self.get_json(&path).await;
            for item in page["items"].as_array().expect("items") {
                ids.insert(item["id"].as_str().expect("id").to_owned());
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return ids,
            }
        }
    }

    /// Waits (bounded) until every listed onboarding is `completed`.
    pub async fn wait_all_completed(&self, ids: &[String], limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let completed = self.ids_with_status("completed").await;
            let missing: Vec<&String> = ids.iter().filter(|id| !completed.contains(*id)).collect();
            let Some(example) = missing.first() else {
                return;
            };
            if Instant::now() >= deadline {
                let status = self.get_json(&format!("/v1/onboardings/{example}")).await;
                panic!(
                    "{} onboarding(s) not completed within {limit:?}, e.g. {status:#}",
                    missing.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Why a create did not answer 201.
#[derive(Debug)]
pub enum Refusal {
    /// No answer, or 503: the same request may succeed later.
    Unavailable(String),
    /// Anything else.
    Other(String),
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A timestamp the API returned (RFC 3339), in milliseconds since the Unix epoch.
pub fn millis(time: &Value) -> i64 {
    let text = time.as_str().expect("a timestamp");
    onramp_core::time::Millis::parse_rfc3339(text)
        .expect("RFC 3339")
        .0
}

/// Opens the database file directly, as an outsider would.
pub fn open_db(scratch: &Scratch) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(scratch.db_path()).expect("open the database file");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    conn
}
