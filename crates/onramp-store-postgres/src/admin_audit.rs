//! The audit chain of administrative actions: appended in the transaction of the change it
//! records, read in order.

use crate::db_error;
use crate::rows::*;
use onramp_core::audit::{self, AuditEntry, AuditHead, AuditRecord};
use onramp_store::{StoreError, StoreResult};
use sqlx::PgConnection;

/// The first key of the advisory lock that serialises appends (any fixed number distinct from
/// the other lock classes).
const ADMIN_AUDIT_LOCK: i64 = 0x6164_6d69_6e61;

/// Appends `record` to the chain. The transaction-scoped lock makes concurrent appends take
/// turns, so two never read the same head.
pub async fn append(conn: &mut PgConnection, record: AuditRecord) -> StoreResult<()> {
    lock(conn).await?;
    let head = sqlx::query("SELECT seq, hash FROM admin_audit ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?;
    let mut head = match head {
        None => AuditHead::genesis(),
        Some(row) => AuditHead {
            seq: u64::try_from(column::<i64>(&row, "seq")?)
                .map_err(|_| StoreError::Corrupt("admin audit seq".into()))?,
            hash: column(&row, "hash")?,
        },
    };
    let e = audit::chain(&mut head, record);
    sqlx::query(
        "INSERT INTO admin_audit (seq, at, actor, action, from_state, to_state, detail,
                                  prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7::json, $8, $9)",
    )
    .bind(e.seq as i64)
    .bind(e.at.0)
    .bind(&e.actor)
    .bind(&e.action)
    .bind(&e.from)
    .bind(&e.to)
    .bind(e.detail.to_string())
    .bind(&e.prev_hash)
    .bind(&e.hash)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Makes this transaction's administrative changes wait for other transactions' (until
/// commit; taking it again in the same transaction is free).
pub async fn lock(conn: &mut PgConnection) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ADMIN_AUDIT_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Up to `limit` entries after `after`, in order.
pub async fn entries(
    conn: &mut PgConnection,
    after: u64,
    max: usize,
) -> StoreResult<Vec<AuditEntry>> {
    sqlx::query(
        "SELECT seq, at, actor, action, from_state, to_state, detail, prev_hash, hash
         FROM admin_audit WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(i64::try_from(after).unwrap_or(i64::MAX))
    .bind(limit(max))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?
    .iter()
    .map(audit_entry)
    .collect()
}
