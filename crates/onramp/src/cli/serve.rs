//! `onramp serve`.

use super::DbArgs;
use crate::app::{self, Server};
use onramp_engine::runtime::RuntimeOptions;
use std::process::ExitCode;

/// Flags of `serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    db: DbArgs,
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<String>,
    /// Run no stage workers in this process: the API and the scheduler only. For PostgreSQL
    /// deployments whose steps are run by separate `onramp worker` processes.
    #[arg(long)]
    no_workers: bool,
}

/// Serves until Ctrl-C or SIGTERM, then shuts down gracefully.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stop_requested = app::ShutdownSignal::install()?;
    let config = app::load_config(
        args.db.config.as_deref(),
        args.db.database.as_deref(),
        args.listen.as_deref(),
    )?;
    let engine = app::engine(config).await?;
    if let Some(token) = app::bootstrap_admin(&engine).await? {
        println!("admin token (shown once): {token}");
    }
    let server = Server::start(
        engine,
        RuntimeOptions {
            stages: args.no_workers.then(Vec::new),
            scheduler: true,
            events: true,
        },
    )
    .await?;
    tracing::info!(url = %format!("http://{}", server.addr), "onramp is serving");
    println!("listening on http://{}", server.addr);
    stop_requested.received().await;
    tracing::info!("shutting down");
    server.stop().await;
    Ok(ExitCode::SUCCESS)
}
