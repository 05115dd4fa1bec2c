//! `onramp token create|list|revoke`.

use super::DbArgs;
use crate::app;
use onramp_core::CsrId;
use onramp_core::auth::Role;
use onramp_engine::commands::CLI_ACTOR;
use std::process::ExitCode;

/// Token subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a token and print it (alone, on stdout). It is not shown again.
    Create {
        /// admin, operator, csr, viewer or service.
        #[arg(long)]
        role: Role,
        /// A unique name (shown in audit entries).
        #[arg(long)]
        name: String,
        /// The CSR this token acts for (role csr).
        #[arg(long)]
        csr: Option<CsrId>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a token by name.
    Revoke {
        /// The token's name.
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// Runs a token subcommand.
pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Create {
            role,
            name,
            csr,
            db,
        } => {
            let engine = engine(&db).await?;
            let (secret, _) = engine.create_token(&name, role, csr, CLI_ACTOR).await?;
            println!("{secret}");
        }
        Command::List { db } => {
            let engine = existing_engine(&db).await?;
            for t in engine.store.list_tokens().await? {
                let state = match t.revoked_at {
                    Some(at) => format!("revoked {}", at.to_rfc3339()),
                    None => "active".into(),
                };
                let csr = t.csr.map(|c| format!(" csr={c}")).unwrap_or_default();
                println!("{}\t{}\t{}{}", t.name, t.role, state, csr);
            }
        }
        Command::Revoke { name, db } => {
            let engine = existing_engine(&db).await?;
            engine.revoke_token(&name, CLI_ACTOR).await?;
            eprintln!("token `{name}` revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// For commands that read or change existing tokens: a missing database is an error, not a
/// new empty one.
async fn existing_engine(db: &DbArgs) -> anyhow::Result<std::sync::Arc<onramp_engine::Engine>> {
    let config = app::load_config(db.config.as_deref(), db.database.as_deref(), None)?;
    app::require_existing_database(&config.store.url)?;
    app::engine(config).await
}

async fn engine(db: &DbArgs) -> anyhow::Result<std::sync::Arc<onramp_engine::Engine>> {
    let config = app::load_config(db.config.as_deref(), db.database.as_deref(), None)?;
    app::engine(config).await
}
