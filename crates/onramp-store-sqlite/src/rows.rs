//! Conversions between SQLite values and domain types.

use onramp_core::time::Millis;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use std::str::FromStr;

/// A column parsed with `FromStr` (statuses, ids, names).
pub struct Parsed<T>(pub T);

impl<T: FromStr> FromSql for Parsed<T>
where
    T::Err: std::fmt::Display,
{
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let s = value.as_str()?;
        T::from_str(s)
            .map(Parsed)
            .map_err(|e| FromSqlError::Other(e.to_string().into()))
    }
}

/// A JSON column.
pub struct Json<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromSql for Json<T> {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let s = value.as_str()?;
        serde_json::from_str(s)
            .map(Json)
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// Writes a time as integer milliseconds.
pub fn ms(m: Millis) -> i64 {
    m.0
}

/// Writes an optional time.
pub fn opt_ms(m: Option<Millis>) -> Option<i64> {
    m.map(|m| m.0)
}

/// Reads an optional time column.
pub fn get_opt_ms(row: &rusqlite::Row<'_>, idx: &str) -> rusqlite::Result<Option<Millis>> {
    Ok(row.get::<_, Option<i64>>(idx)?.map(Millis))
}

/// Reads a time column.
pub fn get_ms(row: &rusqlite::Row<'_>, idx: &str) -> rusqlite::Result<Millis> {
    Ok(Millis(row.get::<_, i64>(idx)?))
}

/// Reads a column through `FromStr`.
pub fn get_parsed<T: FromStr>(row: &rusqlite::Row<'_>, idx: &str) -> rusqlite::Result<T>
where
    T::Err: std::fmt::Display,
{
    Ok(row.get::<_, Parsed<T>>(idx)?.0)
}

/// Reads an optional column through `FromStr`.
pub fn get_opt_parsed<T: FromStr>(row: &rusqlite::Row<'_>, idx: &str) -> rusqlite::Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    Ok(row.get::<_, Option<Parsed<T>>>(idx)?.map(|p| p.0))
}

/// A value written as its `Display` text.
pub struct Text<T>(pub T);

impl<T: std::fmt::Display> ToSql for Text<T> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.to_string()))
    }
}

/// An audit entry from a row of `audit` or `admin_audit` (the same columns).
pub fn audit_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<onramp_core::audit::AuditEntry> {
    Ok(onramp_core::audit::AuditEntry {
        seq: r.get::<_, i64>("seq")? as u64,
        at: get_ms(r, "at")?,
        actor: r.get("actor")?,
        action: r.get("action")?,
        from: r.get("from_state")?,
        to: r.get("to_state")?,
        detail: r.get::<_, Json<_>>("detail")?.0,
        prev_hash: r.get("prev_hash")?,
        hash: r.get("hash")?,
    })
}
