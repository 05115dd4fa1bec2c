//! Versioned, append-only migrations tracked in `PRAGMA user_version`.

use rusqlite::Connection;

/// The migrations in order; the index + 1 is the schema version they produce.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_sagas.sql"),
    include_str!("../migrations/0003_events.sql"),
    include_str!("../migrations/0004_human_tasks.sql"),
    include_str!("../migrations/0005_open_work_indexes.sql"),
    include_str!("../migrations/0006_admin_audit.sql"),
];

/// Applies every migration the database has not seen, each in its own transaction.
/// Returns the number applied. A database from a newer onramp is refused.
pub fn migrate(conn: &mut Connection) -> Result<usize, String> {
    let current: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(|e| e.to_string())? as usize;
    if current > MIGRATIONS.len() {
        return Err(format!(
            "the database has schema version {current}, newer than this onramp knows ({}); upgrade onramp",
            MIGRATIONS.len()
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        tx.execute_batch(sql)
            .map_err(|e| format!("migration {} failed: {e}", i + 1))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
    }
    Ok(MIGRATIONS.len() - current)
}
