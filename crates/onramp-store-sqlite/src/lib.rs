//! SQLite implementation of the onramp [`Store`](onramp_store::Store).
//!
//! - **Durability**: WAL journal with `synchronous=FULL`; a reply to a write means it is on
//!   disk.
//! - **Writes** go through one thread ([`writer`]) that commits many jobs per transaction
//!   (group commit) — SQLite has one writer anyway, so this replaces lock contention with
//!   batching. Each job runs in its own savepoint.
//! - **Reads** use a small pool of read-only connections on the blocking thread pool; WAL lets
//!   them run beside the writer.
//! - **Claims** need no `SKIP LOCKED`: the single writer serialises them, so two claimers can
//!   never take the same row.
//! - **Wake-ups** are in-process ([`onramp_store::Signals`]), fired after commit.
#![forbid(unsafe_code)]

mod admin_audit;
mod apply;
mod events;
mod human;
mod levels;
mod migrate;
mod onboardings;
mod operations;
mod queue;
mod registry;
mod rows;
mod store;
mod writer;

pub use store::{SqliteStore, path_from_url};

use onramp_store::StoreError;

/// Maps a SQLite error to a store error: busy and locked mean "try later", a damaged file is
/// corrupt data, everything else is internal.
pub(crate) fn db_error(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                StoreError::Unavailable(format!("the database is locked by another process ({e})"))
            }
            ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => StoreError::Corrupt(format!(
                "the database file is damaged or not a SQLite database ({e})"
            )),
            ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly => {
                StoreError::Unavailable(format!("cannot open the database ({e})"))
            }
            ErrorCode::ConstraintViolation => StoreError::Conflict(e.to_string()),
            _ => StoreError::Internal(e.to_string()),
        },
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::Internal(e.to_string()),
    }
}
