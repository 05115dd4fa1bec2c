//! The command line (SPEC §6): one module per command, each thin.

mod audit;
mod bench;
mod config;
mod demo;
mod demo_services;
mod migrate;
mod serve;
mod token;
mod worker;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// onramp — a durable customer-onboarding pipeline.
///
/// Persists onboardings (a customer plus an ordered list of tasks) and drives them to the end
/// through per-stage queues, with retries, dead letters, an audit log and a status API.
#[derive(Debug, Parser)]
#[command(name = "onramp", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API, the admin endpoints, the scheduler and every stage's workers.
    Serve(serve::Args),
    /// Run only workers and the scheduler (no HTTP).
    Worker(worker::Args),
    /// Run a self-contained demo: examples/onramp.toml against fake CRM, billing,
    /// provisioning and email services on loopback, a stream of sample onboardings, and the
    /// API; prints the URL and an admin token.
    Demo(demo::Args),
    /// Create or upgrade the database schema.
    Migrate(migrate::Args),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(token::Command),
    /// Check the hash-chained audit log.
    #[command(subcommand)]
    Audit(audit::Command),
    /// Validate configuration.
    #[command(subcommand)]
    Config(config::Command),
    /// Run the standard benchmark workloads (W1 throughput, W2 idle latency).
    Bench(bench::Args),
}

/// Options every database-using command shares.
#[derive(Debug, clap::Args)]
pub struct DbArgs {
    /// Configuration file (default: $ONRAMP_CONFIG, else built-in defaults).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Database URL, e.g. sqlite://onramp.db (overrides config and $ONRAMP_DATABASE_URL).
    #[arg(long)]
    pub database: Option<String>,
}

/// Runs the chosen command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(a) => serve::run(a).await,
        Command::Worker(a) => worker::run(a).await,
        Command::Demo(a) => demo::run(a).await,
        Command::Migrate(a) => migrate::run(a).await,
        Command::Token(c) => token::run(c).await,
        Command::Audit(c) => audit::run(c).await,
        Command::Config(c) => config::run(c),
        Command::Bench(a) => bench::run(a).await,
    }
}
