//! PostgreSQL implementation of the onramp [`Store`](onramp_store::Store), for running any
//! number of `serve` and `worker` processes on one database (SPEC §12).
//!
//! - **Transitions** are one transaction each, at `READ COMMITTED`. Whatever changes an
//!   onboarding first locks its row (`SELECT … FOR UPDATE`) and only then reads the audit
//!   chain's head and the steps, so two transactions on one onboarding run one after the
//!   other and the audit chain cannot fork. The decisions themselves come from
//!   [`onramp_core::plan`], exactly as in the SQLite store; this crate only writes them.
//! - **Claims** lock the candidate steps and their onboardings with `FOR UPDATE SKIP LOCKED`:
//!   concurrent claimers in any process pass over each other's rows instead of waiting, and a
//!   claim never waits for a lock, which also keeps it out of deadlocks.
//! - **Leases and fencing** are the same columns and compare-and-set updates as in SQLite.
//! - **Wake-ups** cross processes: after each commit its stages and changed onboardings are
//!   announced with `pg_notify` (off the commit path, see `announcer`), and a listener task
//!   in every process turns them into [`Signals`](onramp_store::Signals). Each process also signals its own commits
//!   directly, so a missed notification only costs a poll interval.
//! - **Connections** come from a pool that replaces dead ones; while the database is
//!   unreachable, calls fail with
//!   [`StoreError::Unavailable`](onramp_store::StoreError::Unavailable), which the engine
//!   retries.
#![forbid(unsafe_code)]

mod admin_audit;
mod announcer;
mod apply;
mod batch;
mod errors;
mod events;
mod human;
mod levels;
mod listener;
mod migrate;
mod onboardings;
mod operations;
mod queue;
mod registry;
mod rows;
mod store;

#[cfg(feature = "testing")]
pub mod testing;

pub use store::{DEFAULT_MAX_CONNECTIONS, PostgresStore};

pub(crate) use errors::db_error;

/// Whether `url` is a PostgreSQL URL this crate opens.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `url` with its password masked, for messages and logs: `postgres://app:***@db/onramp`.
pub fn redacted_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let authority_end = url[scheme_end..]
        .find(['/', '?'])
        .map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &authority[..colon],
            &url[scheme_end + at..]
        ),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn passwords_are_masked_and_the_rest_kept() {
        assert_eq!(
            redacted_url("postgres://app:s3cret@db:5432/onramp?sslmode=require"),
            "postgres://app:***@db:5432/onramp?sslmode=require"
        );
        assert_eq!(
            redacted_url("postgres://postgres@127.0.0.1:5432/test"),
            "postgres://postgres@127.0.0.1:5432/test"
        );
        assert_eq!(redacted_url("postgres://db:5432/x"), "postgres://db:5432/x");
        assert_eq!(redacted_url("mysql://u:p@h/db"), "mysql://u:***@h/db");
    }
}
