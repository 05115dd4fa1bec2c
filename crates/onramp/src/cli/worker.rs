//! `onramp worker`: stage workers and the scheduler, no HTTP.

use super::DbArgs;
use crate::app;
use anyhow::Context;
use onramp_core::StageName;
use onramp_engine::runtime::{Runtime, RuntimeOptions};
use std::process::ExitCode;

/// Flags of `worker`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    db: DbArgs,
    /// Only these stages, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    stages: Option<Vec<String>>,
}

/// Works until Ctrl-C or SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stop_requested = app::ShutdownSignal::install()?;
    let config = app::load_config(args.db.config.as_deref(), args.db.database.as_deref(), None)?;
    let engine = app::engine(config).await?;
    let stages = args
        .stages
        .map(|names| {
            names
                .iter()
                .map(|n| {
                    engine
                        .known_stage(n)
                        .with_context(|| format!("--stages: `{n}` is not a configured stage"))
                })
                .collect::<anyhow::Result<Vec<StageName>>>()
        })
        .transpose()?;
    let runtime = Runtime::start(
        engine,
        RuntimeOptions {
            stages,
            scheduler: true,
            events: true,
        },
    );
    tracing::info!("worker running");
    stop_requested.received().await;
    runtime.stop(app::SHUTDOWN_GRACE).await;
    Ok(ExitCode::SUCCESS)
}
