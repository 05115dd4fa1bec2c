//! `onramp bench`: the standard workloads of `shared/bench/WORKLOAD.md`.
//!
//! Onboardings are submitted through [`Engine::create_onboarding`] with an idempotency key,
//! the same path `POST /v1/onboardings` takes (validation, idempotency, one transaction), and
//! run by the real runtime (stage workers and scheduler) on a durable database. Completion is
//! observed the way an in-process client would: from the store's change notifications, with
//! a poll as the fallback if the notification channel lags.
//!
//! Prints a human table on stderr and one `name value` line per figure on stdout.

use crate::app;
use anyhow::{Context, bail};
use onramp_config::Config;
use onramp_core::OnboardingId;
use onramp_core::customer::Customer;
use onramp_core::onboarding::OnboardingStatus;
use onramp_engine::Engine;
use onramp_engine::commands::{CreateOnboarding, Idempotency};
use onramp_engine::runtime::{Runtime, RuntimeOptions};
use onramp_store::Created;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;

/// Flags of `bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which workload: w1 (throughput), w2 (idle latency), w3 (scale-out, PostgreSQL only)
    /// or all. Default: w1 and w2.
    #[arg(long, value_enum)]
    workload: Option<Workload>,
    /// Onboardings in W1.
    #[arg(long, default_value_t = 2000)]
    onboardings: usize,
    /// Onboardings in W2.
    #[arg(long, default_value_t = 200)]
    w2_onboardings: usize,
    /// Steps per onboarding in W1, each in its own stage.
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Workers per stage.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Database URL (default: a fresh SQLite file in a temporary directory per workload).
    #[arg(long)]
    database: Option<String>,
}

/// A standard workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Workload {
    W1,
    W2,
    W3,
    All,
}

/// Runs the chosen workloads and prints their figures.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.steps == 0 || args.concurrency == 0 || args.onboardings == 0 {
        bail!("--steps, --concurrency and --onboardings must be at least 1");
    }
    let (w1, w2, w3) = match args.workload {
        None => (true, true, false),
        Some(Workload::W1) => (true, false, false),
        Some(Workload::W2) => (false, true, false),
        Some(Workload::W3) => (false, false, true),
        Some(Workload::All) => (true, true, true),
    };
    let scratch = tempfile::tempdir().context("creating a temporary directory")?;
    let database = |name: &str| {
        args.database
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", scratch.path().join(name).display()))
    };
    let mut figures: Vec<(&str, f64)> = Vec::new();
    if w1 {
        let engine = bench_engine(&database("w1.db"), args.steps, args.concurrency).await?;
        let result = throughput(&engine, args.onboardings, args.steps).await?;
        eprintln!(
            "W1  {} onboardings x {} steps: {:.2}s wall, {:.0} onboardings/s, {:.0} steps/s, \
             p50 {:.1}ms, p99 {:.1}ms",
            args.onboardings,
            args.steps,
            result.wall.as_secs_f64(),
            result.onboardings_per_s,
            result.steps_per_s,
            result.p50_ms,
            result.p99_ms
        );
        figures.extend([
            ("w1_wall_s", result.wall.as_secs_f64()),
            ("w1_onboardings_per_s", result.onboardings_per_s),
            ("w1_steps_per_s", result.steps_per_s),
            ("w1_p50_ms", result.p50_ms),
            ("w1_p99_ms", result.p99_ms),
            ("w1_peak_rss_mb", peak_rss_mb().unwrap_or(f64::NAN)),
        ]);
    }
    if w2 {
        let engine = bench_engine(&database("w2.db"), 1, args.concurrency).await?;
        let latencies = idle_latency(&engine, args.w2_onboardings).await?;
        let (p50, p99) = (percentile(&latencies, 50.0), percentile(&latencies, 99.0));
        eprintln!(
            "W2  {} sequential 1-step onboardings: p50 {p50:.2}ms, p99 {p99:.2}ms",
            args.w2_onboardings
        );
        figures.extend([("w2_p50_ms", p50), ("w2_p99_ms", p99)]);
    }
    if w3 {
        match args
            .database
            .as_deref()
            .filter(|url| onramp_store_postgres::is_postgres_url(url))
        {
            Some(url) => {
                for processes in W3_PROCESSES {
                    let config = bench_config(url, args.steps, args.concurrency)?;
                    let result = scale_out(
                        config,
                        scratch.path(),
                        processes,
                        args.onboardings,
                        args.steps,
                        args.concurrency,
                    )
                    .await?;
                    eprintln!(
                        "W3  {processes} worker process(es): {:.0} steps/s, p50 {:.1}ms, p99 {:.1}ms",
                        result.steps_per_s, result.p50_ms, result.p99_ms
                    );
                    figures.push((w3_figure(processes), result.steps_per_s));
                }
            }
            None => eprintln!(
                "W3  skipped: it measures scale-out of worker processes on one PostgreSQL \
                 database; pass --database postgres://..."
            ),
        }
    }
    for (name, value) in figures {
        println!("{name} {value:.2}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Worker processes W3 measures with.
const W3_PROCESSES: [usize; 3] = [1, 2, 4];

fn w3_figure(processes: usize) -> &'static str {
    match processes {
        1 => "w3_1_steps_per_s",
        2 => "w3_2_steps_per_s",
        _ => "w3_4_steps_per_s",
    }
}

/// W3: W1 with its steps run by `processes` separate `onramp worker` processes; this process
/// only submits and watches (completions reach it as the database's notifications).
async fn scale_out(
    config: Config,
    scratch: &std::path::Path,
    processes: usize,
    onboardings: usize,
    steps: usize,
    concurrency: usize,
) -> anyhow::Result<Throughput> {
    let config_path = scratch.join("w3.toml");
    let text = format!(
        "[store]\nurl = \"{}\"\n\n{}",
        config.store.url,
        stage_tables(steps, concurrency)
    );
    std::fs::write(&config_path, text).context("writing the W3 config")?;
    let engine = BenchEngine {
        engine: app::engine(config).await?,
        runtime: None,
    };
    let mut workers = Vec::with_capacity(processes);
    for _ in 0..processes {
        workers.push(WorkerProcess::start(&config_path)?);
    }
    for worker in &mut workers {
        worker.ready().await?;
    }
    let result = throughput(&engine, onboardings, steps).await;
    for worker in workers {
        worker.stop().await;
    }
    result
}

/// An `onramp worker` child process of W3.
struct WorkerProcess {
    child: tokio::process::Child,
    /// Its log, until it is ready; then a background task drains it.
    log: Option<tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>>,
}

impl WorkerProcess {
    fn start(config: &std::path::Path) -> anyhow::Result<WorkerProcess> {
        let exe = std::env::current_exe().context("finding the onramp executable")?;
        let mut child = tokio::process::Command::new(exe)
            .arg("worker")
            .arg("--config")
            .arg(config)
            .env("ONRAMP_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a worker process")?;
        let stderr = child.stderr.take().context("the worker's stderr")?;
        use tokio::io::AsyncBufReadExt;
        Ok(WorkerProcess {
            child,
            log: Some(tokio::io::BufReader::new(stderr).lines()),
        })
    }

    /// Waits until the worker says it runs, then keeps draining its log in the background.
    async fn ready(&mut self) -> anyhow::Result<()> {
        let mut log = self.log.take().context("the worker was already started")?;
        let wait = async {
            while let Some(line) = log.next_line().await? {
                if line.contains("worker running") {
                    return anyhow::Ok(());
                }
            }
            bail!("the worker process exited before it was ready")
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .context("the worker process was not ready within 30s")??;
        tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
        Ok(())
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SIGTERM: the worker releases what it holds and exits.
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// An engine with its runtime running the benchmark's stages.
struct BenchEngine {
    engine: Arc<Engine>,
    runtime: Option<Runtime>,
}

impl std::ops::Deref for BenchEngine {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.engine
    }
}

impl Drop for BenchEngine {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            tokio::spawn(runtime.stop(Duration::from_secs(1)));
        }
    }
}

/// The config: one `sim` task of 0 ms per stage, `steps` stages.
fn bench_config(database: &str, steps: usize, concurrency: usize) -> anyhow::Result<Config> {
    let text = stage_tables(steps, concurrency);
    let mut config = Config::parse(&text, "bench.toml", &|_| None)
        .map_err(|e| anyhow::anyhow!("benchmark config is invalid:\n{e}"))?;
    config.store.url = database.to_owned();
    Ok(config)
}

/// One stage and one `sim` task of 0 ms per step, as config tables.
fn stage_tables(steps: usize, concurrency: usize) -> String {
    let mut text = String::new();
    for i in 1..=steps {
        text.push_str(&format!(
            "[stages.stage{i}]\nconcurrency = {concurrency}\n\n\
             [tasks.step{i}]\nkind = \"sim\"\nstage = \"stage{i}\"\nlatency = \"0ms\"\nfail_rate = 0.0\n\n"
        ));
    }
    text
}

async fn bench_engine(
    database: &str,
    steps: usize,
    concurrency: usize,
) -> anyhow::Result<BenchEngine> {
    let engine = app::engine(bench_config(database, steps, concurrency)?).await?;
    let runtime = Runtime::start(
        engine.clone(),
        RuntimeOptions {
            stages: None,
            scheduler: true,
            events: false,
        },
    );
    Ok(BenchEngine {
        engine,
        runtime: Some(runtime),
    })
}

fn request(n: usize, steps: usize) -> CreateOnboarding {
    CreateOnboarding {
        customer: Customer {
            name: format!("Bench Customer {n}"),
            email: format!("bench-{n}@example.com"),
            company: Some("Bench Ltd".to_owned()),
            external_ref: Some(format!("bench-{n}")),
            attributes: None,
        },
        template: None,
        tasks: Some((1..=steps).map(|i| format!("step{i}")).collect()),
        priority: None,
    }
}

/// The idempotency scope of this bench run: runs (and workloads) sharing one `--database`
/// must not replay each other's keys.
static RUN_SCOPE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("bench-{:016x}", rand::random::<u64>()));

/// Creates onboarding `n` the way the API does, with an idempotency key.
async fn submit(engine: &Engine, n: usize, steps: usize) -> anyhow::Result<OnboardingId> {
    let request = request(n, steps);
    let body = serde_json::json!({
        "customer": request.customer,
        "tasks": request.tasks,
    });
    let idempotency = Idempotency {
        key: format!("bench-{steps}-{n}"),
        scope: RUN_SCOPE.clone(),
        body,
    };
    match engine
        .create_onboarding(request, Some(idempotency), "bench")
        .await?
    {
        Created::New(o) | Created::Replayed(o) => Ok(o.id),
    }
}

struct Throughput {
    wall: Duration,
    onboardings_per_s: f64,
    steps_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// W1: submit everything as fast as possible, measure until the last completes.
async fn throughput(
    engine: &BenchEngine,
    onboardings: usize,
    steps: usize,
) -> anyhow::Result<Throughput> {
    /// Submissions in flight at once: enough to keep the writer's group commits full.
    const SUBMITTERS: usize = 64;
    let mut changes = engine.store.signals().subscribe();
    let started = Instant::now();
    let (submitted_tx, mut submitted_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut submitters = tokio::task::JoinSet::new();
    for worker in 0..SUBMITTERS {
        let engine = engine.engine.clone();
        let submitted = submitted_tx.clone();
        submitters.spawn(async move {
            for n in (worker..onboardings).step_by(SUBMITTERS) {
                let at = Instant::now();
                let id = submit(&engine, n, steps).await?;
                let _ = submitted.send((id, at));
            }
            anyhow::Ok(())
        });
    }
    drop(submitted_tx);

    let mut submitted_at: HashMap<OnboardingId, Instant> = HashMap::with_capacity(onboardings);
    let mut completed_at: HashMap<OnboardingId, Instant> = HashMap::with_capacity(onboardings);
    let mut submissions_open = true;
    let deadline = started + Duration::from_secs(600);
    while completed_at.len() < onboardings || submissions_open {
        if Instant::now() > deadline {
            bail!(
                "W1 did not finish within 10 minutes ({} of {onboardings} completed)",
                completed_at.len()
            );
        }
        tokio::select! {
            next = submitted_rx.recv(), if submissions_open => match next {
                Some((id, at)) => { submitted_at.insert(id, at); }
                None => submissions_open = false,
            },
            change = changes.recv() => match change {
                Ok(c) if c.status == OnboardingStatus::Completed => {
                    completed_at.entry(c.id).or_insert_with(Instant::now);
                }
                Ok(c) if c.status.is_terminal() => bail!("onboarding {} ended {:?}", c.id, c.status),
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    changes = changes.resubscribe();
                    poll_completions(engine, &submitted_at, &mut completed_at).await?;
                }
                Err(RecvError::Closed) => bail!("the store's change channel closed"),
            },
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                poll_completions(engine, &submitted_at, &mut completed_at).await?;
            }
        }
    }
    while let Some(result) = submitters.join_next().await {
        result??;
    }
    let wall = started.elapsed();
    let mut latencies: Vec<f64> = submitted_at
        .iter()
        .filter_map(|(id, at)| {
            completed_at
                .get(id)
                .map(|done| ms(done.duration_since(*at)))
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let secs = wall.as_secs_f64();
    Ok(Throughput {
        wall,
        onboardings_per_s: onboardings as f64 / secs,
        steps_per_s: (onboardings * steps) as f64 / secs,
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
    })
}

/// Looks up submitted onboardings not yet seen completing (after missed notifications).
async fn poll_completions(
    engine: &Engine,
    submitted: &HashMap<OnboardingId, Instant>,
    completed: &mut HashMap<OnboardingId, Instant>,
) -> anyhow::Result<()> {
    let pending: Vec<OnboardingId> = submitted
        .keys()
        .filter(|id| !completed.contains_key(*id))
        .cloned()
        .collect();
    for id in pending {
        let o = engine.store.get_onboarding(&id).await?;
        match o.status {
            OnboardingStatus::Completed => {
                completed.insert(id, Instant::now());
            }
            s if s.is_terminal() => bail!("onboarding {id} ended {s:?}"),
            _ => {}
        }
    }
    Ok(())
}

/// W2: one onboarding at a time, each waited for before the next.
async fn idle_latency(engine: &BenchEngine, onboardings: usize) -> anyhow::Result<Vec<f64>> {
    let mut latencies = Vec::with_capacity(onboardings);
    let mut changes = engine.store.signals().subscribe();
    for n in 0..onboardings {
        let started = Instant::now();
        let id = submit(engine, n, 1).await?;
        let deadline = started + Duration::from_secs(10);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                bail!("W2 onboarding {id} did not complete within 10s");
            }
            match tokio::time::timeout(remaining.min(Duration::from_millis(100)), changes.recv())
                .await
            {
                Ok(Ok(c)) if c.id == id && c.status == OnboardingStatus::Completed => break,
                Ok(Ok(_)) => {}
                Ok(Err(RecvError::Lagged(_))) | Err(_) => {
                    if engine.store.get_onboarding(&id).await?.status == OnboardingStatus::Completed
                    {
                        break;
                    }
                }
                Ok(Err(RecvError::Closed)) => bail!("the store's change channel closed"),
            }
        }
        latencies.push(ms(started.elapsed()));
    }
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `p`th percentile of sorted values (nearest rank).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The process's peak resident set size (`VmHWM`), in MiB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 99.0), 99.0);
        assert_eq!(percentile(&values[..1], 99.0), 1.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
