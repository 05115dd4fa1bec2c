//! `onramp migrate`.

use super::DbArgs;
use crate::app;
use std::process::ExitCode;

/// Flags of `migrate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    db: DbArgs,
}

/// Opening a store applies pending migrations.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = app::load_config(args.db.config.as_deref(), args.db.database.as_deref(), None)?;
    app::open_store(&config.store).await?;
    eprintln!(
        "database {} is up to date",
        onramp_store_postgres::redacted_url(&config.store.url)
    );
    Ok(ExitCode::SUCCESS)
}
