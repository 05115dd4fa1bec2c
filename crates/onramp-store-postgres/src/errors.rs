//! Maps sqlx errors to [`StoreError`] kinds, so that the engine can tell "try again" (the
//! database restarted, a connection was killed, a deadlock was broken) from "this will never
//! work" without knowing which database is underneath.

use onramp_store::StoreError;

/// SQLSTATE classes and codes that mean "the database is not reachable right now".
fn is_transient(code: &str) -> bool {
    // 08: connection exception; 53: insufficient resources (too many connections);
    // 57P01-57P03: admin shutdown, crash shutdown, cannot connect now;
    // 40001/40P01: serialization failure, deadlock detected (the transaction was undone).
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "57P01" | "57P02" | "57P03" | "40001" | "40P01")
}

/// Maps a sqlx error to a store error.
pub fn db_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            if is_transient(&code) {
                StoreError::Unavailable(e.to_string())
            } else if code.starts_with("23") || code == "P0001" {
                // Integrity constraints, and our own triggers refusing a change (the
                // append-only audit log), as SQLite reports both as constraint violations.
                StoreError::Conflict(e.to_string())
            } else if code.starts_with("XX") {
                StoreError::Corrupt(e.to_string())
            } else {
                StoreError::Internal(e.to_string())
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed
        | sqlx::Error::Configuration(_) => StoreError::Unavailable(e.to_string()),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::Internal(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_connections_and_broken_deadlocks_are_transient() {
        for code in [
            "08006", "08001", "53300", "57P01", "57P03", "40P01", "40001",
        ] {
            assert!(is_transient(code), "{code}");
        }
        for code in ["23505", "42P01", "P0001", "XX001"] {
            assert!(!is_transient(code), "{code}");
        }
    }

    #[test]
    fn pool_and_io_failures_are_unavailable() {
        assert!(matches!(
            db_error(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(matches!(
            db_error(sqlx::Error::Io(io)),
            StoreError::Unavailable(_)
        ));
    }
}
