//! The single writer: one thread owns the only writing connection and commits many jobs per
//! transaction (group commit).
//!
//! SQLite allows one writer at a time; instead of letting tasks fight over the write lock, every
//! write is sent here as a job. The thread runs the jobs that are waiting or arrive meanwhile
//! (up to [`MAX_BATCH`]), each inside its own savepoint within one `BEGIN IMMEDIATE`
//! transaction, and commits once: with `synchronous=FULL` the cost of the fsync is shared by
//! the whole batch. A job that fails rolls back to its savepoint without touching the others.
//! Each job's caller is answered only after the commit, so a reply always means "durable".

use onramp_store::{StoreError, StoreResult};
use rusqlite::Connection;
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Most jobs committed together.
pub const MAX_BATCH: usize = 512;

/// Work that runs after the commit succeeded (wake-ups, change notifications).
pub type AfterCommit = Box<dyn FnOnce() + Send>;

type Finisher = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A job gets the connection, or the error that kept the batch from starting.
type Job = Box<dyn FnOnce(Result<&Connection, StoreError>) -> (bool, Finisher) + Send>;

/// A handle to the writer thread.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub fn start(conn: Connection) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("onramp-sqlite-writer".into())
            .spawn(move || run(conn, rx))?;
        Ok(Writer { jobs: tx })
    }

    /// Runs `f` in the next batch's transaction and answers after the commit. `f` returns its
    /// value and what to do once the commit is durable.
    pub async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<(T, Option<AfterCommit>)> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<StoreResult<T>>();
        let job: Job = Box::new(move |conn| match conn.and_then(f) {
            Ok((value, after)) => {
                let finish: Finisher = Box::new(move |committed| match committed {
                    Ok(()) => {
                        if let Some(after) = after {
                            after();
                        }
                        let _ = reply.send(Ok(value));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                });
                (true, finish)
            }
            Err(e) => {
                let finish: Finisher = Box::new(move |_| {
                    let _ = reply.send(Err(e));
                });
                (false, finish)
            }
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Unavailable("the SQLite writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the SQLite writer has stopped".into()))?
    }
}

fn run(conn: Connection, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        commit_batch(&conn, first, &jobs);
    }
}

/// Runs `first` and every job that arrives while the transaction is open (up to
/// [`MAX_BATCH`]), then commits once. A job arriving while others run joins this commit
/// instead of waiting for the next one, so batches grow with load at no cost in latency.
fn commit_batch(conn: &Connection, first: Job, jobs: &mpsc::Receiver<Job>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let err = crate::db_error(e);
        tracing::error!(error = %err, "could not begin a write transaction");
        let waiting = std::iter::once(first).chain(jobs.try_iter().take(MAX_BATCH - 1));
        for job in waiting {
            let (_, finish) = job(Err(err.clone()));
            finish(Err(err.clone()));
        }
        return;
    }
    let mut finishers = Vec::with_capacity(MAX_BATCH);
    let mut next = Some(first);
    while let Some(job) = next.take() {
        finishers.push(run_job(conn, job));
        if finishers.len() < MAX_BATCH {
            next = jobs.try_recv().ok();
        }
    }
    let committed = conn.execute_batch("COMMIT").map_err(crate::db_error);
    if committed.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for finish in finishers {
        finish(committed.clone());
    }
}

/// Runs one job in its own savepoint, so that its failure undoes only its own writes.
fn run_job(conn: &Connection, job: Job) -> Finisher {
    if let Err(e) = conn.execute_batch("SAVEPOINT job") {
        let (_, finish) = job(Err(crate::db_error(e)));
        return finish;
    }
    let (ok, finish) = job(Ok(conn));
    let end = if ok {
        conn.execute_batch("RELEASE job")
    } else {
        conn.execute_batch("ROLLBACK TO job; RELEASE job")
    };
    if let Err(e) = end {
        tracing::error!(error = %e, "savepoint handling failed");
    }
    finish
}
