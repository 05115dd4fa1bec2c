//! Starts and stops the workers, the completer, the scheduler and the event dispatcher of one
//! process.

use crate::completer::Completer;
use crate::{Engine, outbox, scheduler, worker};
use onramp_core::StageName;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What this process runs.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Only these stages (all configured stages when `None`).
    pub stages: Option<Vec<StageName>>,
    /// Whether to run the scheduler's duties.
    pub scheduler: bool,
    /// Whether to deliver events (the outbox dispatcher).
    pub events: bool,
}

/// The running background work of a process.
#[derive(Debug)]
pub struct Runtime {
    shutdown: CancellationToken,
    abort: CancellationToken,
    workers: JoinSet<()>,
    completer: Option<Completer>,
    completer_task: tokio::task::JoinHandle<()>,
}

impl Runtime {
    /// Starts a worker per stage, the completer and (optionally) the scheduler.
    pub fn start(engine: Arc<Engine>, options: RuntimeOptions) -> Runtime {
        let shutdown = CancellationToken::new();
        let abort = CancellationToken::new();
        let (completer, completer_task) = Completer::start(engine.clone());
        let mut workers = JoinSet::new();
        let stages: Vec<StageName> = engine
            .catalog
            .stages()
            .map(|(name, _)| name.clone())
            .filter(|name| {
                options
                    .stages
                    .as_ref()
                    .is_none_or(|only| only.contains(name))
            })
            .collect();
        for stage in stages {
            workers.spawn(worker::run_stage(
                engine.clone(),
                stage,
                completer.clone(),
                shutdown.clone(),
                abort.clone(),
            ));
        }
        if options.scheduler {
            workers.spawn(scheduler::run(engine.clone(), shutdown.clone()));
        }
        if options.events {
            workers.spawn(outbox::run(engine.clone(), shutdown.clone()));
        }
        Runtime {
            shutdown,
            abort,
            workers,
            completer: Some(completer),
            completer_task,
        }
    }

    /// A token that is cancelled when shutdown begins.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops claiming, lets in-flight steps finish for up to `grace`, releases the rest
    /// (without charging their attempt), and waits until every decision is committed.
    pub async fn stop(mut self, grace: Duration) {
        self.shutdown.cancel();
        let drained = tokio::time::timeout(grace, async {
            while self.workers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::info!("grace period over; releasing steps still in flight");
            self.abort.cancel();
            while self.workers.join_next().await.is_some() {}
        }
        drop(self.completer.take());
        let _ = self.completer_task.await;
    }
}
