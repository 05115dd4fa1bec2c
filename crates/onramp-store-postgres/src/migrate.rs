//! Versioned, append-only migrations, safe when several processes start at once.
//!
//! Every process runs this at start. The whole upgrade is one transaction holding a
//! transaction-scoped advisory lock: the first process migrates, the others wait for the lock
//! and then find nothing left to do. PostgreSQL's DDL is transactional, so a migration that
//! fails leaves the schema as it was.

use crate::db_error;
use onramp_store::StoreError;
use sqlx::{AssertSqlSafe, PgConnection};

/// The migrations in order; the index + 1 is the schema version they produce.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_sagas.sql"),
    include_str!("../migrations/0003_events.sql"),
    include_str!("../migrations/0004_human_tasks.sql"),
    include_str!("../migrations/0005_open_work_indexes.sql"),
    include_str!("../migrations/0006_admin_audit.sql"),
];

/// The advisory lock key that serialises migrations (any fixed number; this one spells
/// "onramp" in ASCII).
const MIGRATION_LOCK: i64 = 0x6f6e_7261_6d70;

/// Applies every migration the database has not seen. Returns the number applied. A database
/// from a newer onramp is refused.
pub async fn migrate(conn: &mut PgConnection) -> Result<usize, StoreError> {
    use sqlx::Connection;
    let mut tx = conn.begin().await.map_err(db_error)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    // "already exists, skipping" and similar notices are not worth a log line at each start.
    sqlx::query("SET LOCAL client_min_messages = warning")
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS onramp_schema_migrations (
            version    INTEGER PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    let current: i32 =
        sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM onramp_schema_migrations")
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
    let current = usize::try_from(current)
        .map_err(|_| StoreError::Corrupt(format!("schema version {current} is negative")))?;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Unavailable(format!(
            "the database has schema version {current}, newer than this onramp knows ({}); upgrade onramp",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = index + 1;
        sqlx::raw_sql(AssertSqlSafe(*sql))
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::Internal(format!("migration {version} failed: {e}")))?;
        sqlx::query("INSERT INTO onramp_schema_migrations (version) VALUES ($1)")
            .bind(i32::try_from(version).unwrap_or(i32::MAX))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
    }
    tx.commit().await.map_err(db_error)?;
    Ok(MIGRATIONS.len() - current)
}
