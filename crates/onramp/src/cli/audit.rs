//! `onramp audit verify`: exits non-zero when any chain is broken.

use super::DbArgs;
use crate::app;
use onramp_core::OnboardingId;
use std::process::ExitCode;

/// Audit subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check the hash chains (all, or one onboarding's).
    Verify {
        /// Only this onboarding.
        #[arg(long)]
        onboarding: Option<OnboardingId>,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// Runs an audit subcommand.
pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    let Command::Verify { onboarding, db } = command;
    let config = app::load_config(db.config.as_deref(), db.database.as_deref(), None)?;
    app::require_existing_database(&config.store.url)?;
    let engine = app::engine(config).await?;
    let report = engine.verify_audit(onboarding.as_ref()).await?;
    for (id, broken) in &report.broken {
        println!("BROKEN {id}: {broken}");
    }
    println!(
        "checked {} onboarding chain(s){}, {} entries: {}",
        report.chains,
        if report.admin_chain {
            " and the admin chain"
        } else {
            ""
        },
        report.entries,
        if report.broken.is_empty() {
            "all intact".to_owned()
        } else {
            format!("{} broken", report.broken.len())
        }
    );
    Ok(if report.broken.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
