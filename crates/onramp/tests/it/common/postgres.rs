//! Several `onramp` processes on one PostgreSQL database (SPEC §12): a fresh database per
//! test, `serve` and `worker` processes on it, plain SQL to look at what they wrote, and
//! submissions that ride out an unavailable database.
//!
//! These tests take turns (see [`Cluster::start`]): each runs several processes, and on a
//! 2-core machine two such tests at once would measure the overload of the machine rather
//! than onramp — leases running out under live workers, wake-ups waiting for a CPU.

use super::{Api, Refusal, Scratch, Served};
use onramp_store_postgres::testing::FreshDatabase;
use sqlx::{Connection, PgConnection};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, MutexGuard, Semaphore};
use tokio::task::JoinHandle;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Every onboarding that has completed.
pub const COMPLETED: &str = "SELECT count(*) FROM onboardings WHERE status = 'completed'";

/// A fresh database and a scratch directory with a config, for starting processes on;
/// the database is dropped when this goes (after the processes, which tests start later and
/// so drop first).
pub struct Cluster {
    scratch: Scratch,
    config: PathBuf,
    db: FreshDatabase,
    _turn: MutexGuard<'static, ()>,
}

impl Cluster {
    /// Waits for its turn, then creates a fresh database and writes `config`. `None` (after
    /// a skip line) when `ONRAMP_TEST_POSTGRES_URL` is not set.
    pub async fn start(config: &str) -> Option<Cluster> {
        let turn = ONE_AT_A_TIME.lock().await;
        let db = FreshDatabase::from_env().await?;
        let scratch = Scratch::new();
        let config = scratch.write("onramp.toml", config);
        Some(Cluster {
            scratch,
            config,
            db,
            _turn: turn,
        })
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        self.db.url()
    }

    /// `onramp serve`: the API, the scheduler and every stage's workers.
    pub fn serve(&self) -> Served {
        self.scratch.serve_on(self.url(), Some(&self.config), &[])
    }

    /// `onramp serve --no-workers`: the API and the scheduler only.
    pub fn serve_without_workers(&self) -> Served {
        self.scratch
            .serve_on(self.url(), Some(&self.config), &["--no-workers"])
    }

    /// `onramp worker` for every stage, or for `--stages` as given.
    pub fn worker(&self, stages: Option<&str>) -> Served {
        self.scratch.worker_on(self.url(), &self.config, stages)
    }

    /// [`worker`](Self::worker) with a config of its own, `config`.
    pub fn worker_configured(&self, config: &str, stages: Option<&str>) -> Served {
        let config = self.scratch.write("worker.toml", config);
        self.scratch.worker_on(self.url(), &config, stages)
    }

    /// A connection of the test's own.
    pub async fn sql(&self) -> Sql {
        let conn = PgConnection::connect(self.url())
            .await
            .expect("connect to the test database");
        Sql {
            conn,
            database: self.db.name().to_owned(),
        }
    }

    /// Runs `onramp audit verify` on the database: `chains` chains, all intact.
    pub fn assert_audit_intact(&self, chains: usize) {
        let verify = self
            .scratch
            .run(&["audit", "verify", "--database", self.url()]);
        verify.success();
        let out = verify.stdout();
        assert!(
            out.contains(&format!(
                "checked {chains} onboarding chain(s) and the admin chain"
            )) && out.contains("all intact"),
            "{out}"
        );
    }
}

/// The test's own connection to the database.
pub struct Sql {
    conn: PgConnection,
    database: String,
}

impl Sql {
    /// The single number `query` returns.
    pub async fn count(&mut self, query: &'static str) -> i64 {
        sqlx::query_scalar::<_, i64>(query)
            .fetch_one(&mut self.conn)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"))
    }

    /// Waits (bounded) until `query` counts at least `n`; returns the count.
    pub async fn wait_for_count(&mut self, query: &'static str, n: i64, limit: Duration) -> i64 {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.count(query).await;
            if got >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{query} counted {got}, not {n}, within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Terminates every other connection to the database, as an administrator (or a
    /// failover) would; returns how many there were.
    pub async fn terminate_other_connections(&mut self) -> usize {
        sqlx::query_scalar::<_, bool>(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&self.database)
        .fetch_all(&mut self.conn)
        .await
        .expect("terminate the other connections")
        .len()
    }

    /// Waits (bounded) until `n` connections to the database listen for notifications
    /// (their last statement was a `LISTEN`): one per process.
    pub async fn wait_for_listeners(&mut self, n: i64, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let listening = sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = $1 AND query LIKE 'LISTEN %'",
            )
            .bind(&self.database)
            .fetch_one(&mut self.conn)
            .await
            .expect("count the listening connections");
            if listening >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{listening} connection(s) listening, not {n}, after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// How long one onboarding may go on being refused as unavailable.
const UNAVAILABLE_FOR_AT_MOST: Duration = Duration::from_secs(30);

/// Submits `count` onboardings from `template` over `api`, 16 at a time, each with its own
/// idempotency key (`{prefix}-{n}`), sending a request again with the same key while the
/// answer is "unavailable"; resolves to their ids in order of `n`. Any other refusal panics.
pub fn submit(
    api: &Api,
    template: &'static str,
    count: usize,
    prefix: &str,
) -> JoinHandle<Vec<String>> {
    let slots = Arc::new(Semaphore::new(16));
    let mut submissions = tokio::task::JoinSet::new();
    for n in 0..count {
        let (api, slots, key) = (api.clone(), slots.clone(), format!("{prefix}-{n}"));
        submissions.spawn(async move {
            let _slot = slots.acquire_owned().await.expect("semaphore");
            let deadline = Instant::now() + UNAVAILABLE_FOR_AT_MOST;
            loop {
                match api.create_from(template, n, &key).await {
                    Ok(created) => {
                        let id = created["id"].as_str().expect("an id").to_owned();
                        return (n, id);
                    }
                    Err(Refusal::Unavailable(why)) if Instant::now() < deadline => {
                        eprintln!("{key}: unavailable ({why}); sending it again");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(Refusal::Unavailable(why)) => panic!(
                        "creating {key}: still unavailable after {UNAVAILABLE_FOR_AT_MOST:?}: {why}"
                    ),
                    Err(Refusal::Other(why)) => panic!("creating {key}: {why}"),
                }
            }
        });
    }
    tokio::spawn(async move {
        let mut ids = vec![String::new(); count];
        while let Some(joined) = submissions.join_next().await {
            let (n, id) = joined.expect("a submission");
            ids[n] = id;
        }
        ids
    })
}

/// Asserts what SPEC §4 promises whatever failed along the way: exactly `onboardings`
/// onboardings, all completed, each of their `steps` steps succeeded exactly once (one
/// `step.succeeded` audit entry and one outbox event each), one `onboarding.completed` event
/// per onboarding.
pub async fn assert_each_step_succeeded_once(sql: &mut Sql, onboardings: i64, steps: i64) {
    assert_eq!(
        sql.count("SELECT count(*) FROM onboardings").await,
        onboardings,
        "no onboarding lost or duplicated"
    );
    assert_eq!(sql.count(COMPLETED).await, onboardings);
    assert_eq!(
        sql.count("SELECT count(*) FROM steps WHERE status = 'succeeded'")
            .await,
        onboardings * steps
    );
    assert_eq!(
        sql.count("SELECT count(*) FROM audit WHERE action = 'step.succeeded'")
            .await,
        onboardings * steps,
        "one step.succeeded audit entry per step"
    );
    assert_eq!(
        sql.count(
            "SELECT count(*) FROM (
                SELECT 1 FROM audit WHERE action = 'step.succeeded'
                GROUP BY onboarding_id, detail->>'step_seq' HAVING count(*) = 1) once"
        )
        .await,
        onboardings * steps,
        "every step succeeded exactly once"
    );
    assert_eq!(
        sql.count("SELECT count(*) FROM outbox WHERE type = 'step.succeeded'")
            .await,
        onboardings * steps
    );
    assert_eq!(
        sql.count("SELECT count(*) FROM outbox WHERE type = 'onboarding.completed'")
            .await,
        onboardings
    );
}

/// Stops processes with SIGTERM, each after the one before has exited, and asserts that
/// each exits cleanly (having finished, or released, what it was running).
pub fn stop_gracefully(processes: impl IntoIterator<Item = Served>) {
    for process in processes {
        let status = process.terminate(Duration::from_secs(15));
        assert!(status.success(), "onramp exited with {status}");
    }
}

/// Requeues by the scheduler of steps whose worker's lease ran out.
pub const LEASE_REQUEUES: &str = "SELECT count(*) FROM audit
    WHERE action = 'step.retrying' AND actor = 'scheduler'
      AND detail->>'error' LIKE 'lease expired%'";
