//! Process tests: the compiled `onramp` binary against real files, real sockets on
//! 127.0.0.1 and real signals (SPEC §4 crash guarantee, §6 CLI).

mod audit;
mod common;
mod config;
mod crash;
mod demo;
mod migrate_and_help;
mod shutdown;
mod startup_errors;
mod tokens;
