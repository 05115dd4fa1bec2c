//! `onramp config check`.

use onramp_config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

/// Config subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate a configuration file and report every error with its location.
    Check {
        /// The file (default: $ONRAMP_CONFIG, else ./onramp.toml).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// Runs a config subcommand.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let Command::Check { config } = command;
    let path = config
        .or_else(|| std::env::var("ONRAMP_CONFIG").ok().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("onramp.toml"));
    match Config::load(&path, &|name| std::env::var(name).ok()) {
        Ok(c) => {
            println!(
                "{}: ok ({} services, {} stages, {} task types, {} templates)",
                path.display(),
                c.services.len(),
                c.stage_names().len(),
                c.tasks.len(),
                c.templates.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            eprintln!("{} error(s)", errors.0.len());
            Ok(ExitCode::FAILURE)
        }
    }
}
