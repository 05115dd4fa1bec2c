//! The audit chain of administrative actions: appended in the transaction of the change it
//! records, read in order.

use crate::db_error;
use crate::rows::*;
use onramp_core::audit::{self, AuditEntry, AuditHead, AuditRecord};
use rusqlite::{Connection, OptionalExtension, params};

/// Appends `record` to the chain (the single writer makes reading the head safe).
pub fn append(conn: &Connection, record: AuditRecord) -> onramp_store::StoreResult<()> {
    let mut head = conn
        .prepare_cached("SELECT seq, hash FROM admin_audit ORDER BY seq DESC LIMIT 1")
        .map_err(db_error)?
        .query_row([], |r| {
            Ok(AuditHead {
                seq: r.get::<_, i64>(0)? as u64,
                hash: r.get(1)?,
            })
        })
        .optional()
        .map_err(db_error)?
        .unwrap_or_else(AuditHead::genesis);
    let e = audit::chain(&mut head, record);
    conn.prepare_cached(
        "INSERT INTO admin_audit (seq, at, actor, action, from_state, to_state, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .map_err(db_error)?
    .execute(params![
        e.seq as i64,
        ms(e.at),
        e.actor,
        e.action,
        e.from,
        e.to,
        e.detail.to_string(),
        e.prev_hash,
        e.hash,
    ])
    .map_err(db_error)?;
    Ok(())
}

/// Up to `limit` entries after `after`, in order.
pub fn entries(
    conn: &Connection,
    after: u64,
    limit: usize,
) -> onramp_store::StoreResult<Vec<AuditEntry>> {
    conn.prepare_cached(
        "SELECT seq, at, actor, action, from_state, to_state, detail, prev_hash, hash
         FROM admin_audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )
    .map_err(db_error)?
    .query_map(params![after as i64, limit as i64], audit_entry)
    .map_err(db_error)?
    .collect::<Result<_, _>>()
    .map_err(db_error)
}
