//! Process tests: the compiled `onramp` binary against real files, real sockets on
//! 127.0.0.1 and real signals (SPEC §4 crash guarantee, §6 CLI), and several processes on
//! one PostgreSQL database (§12; the `postgres_*` modules, skipped without
//! `ONRAMP_TEST_POSTGRES_URL`).

mod audit;
mod common;
mod config;
mod crash;
mod delays;
mod demo;
mod migrate_and_help;
mod observability;
mod postgres_crash;
mod postgres_live_events;
mod postgres_timers;
mod postgres_wakeups;
mod shutdown;
mod startup_errors;
mod timeouts;
mod tokens;
mod ui;
