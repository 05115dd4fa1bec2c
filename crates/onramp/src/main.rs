//! `onramp`: a durable customer-onboarding pipeline in one binary.
//!
//! This crate is only the command line: each subcommand in [`cli`] parses its flags and calls
//! into the library crates. `anyhow` is used here and nowhere else.
#![forbid(unsafe_code)]

mod app;
mod cli;
mod logging;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
