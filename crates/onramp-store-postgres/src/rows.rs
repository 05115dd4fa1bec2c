//! Conversions between PostgreSQL values and domain types: a column that does not hold what
//! the domain allows (a negative count, an unknown status) is [`StoreError::Corrupt`], never
//! a panic.

use onramp_core::time::Millis;
use onramp_store::{StoreError, StoreResult};
use serde::de::DeserializeOwned;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Postgres, Row};
use std::str::FromStr;

/// Reads a column as its Rust type.
pub fn column<'r, T>(row: &'r PgRow, name: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(name).map_err(|e| match e {
        sqlx::Error::ColumnNotFound(_) => StoreError::Internal(e.to_string()),
        other => StoreError::Corrupt(other.to_string()),
    })
}

/// Reads a text column through `FromStr` (statuses, ids, names).
pub fn parsed<T: FromStr>(row: &PgRow, name: &str) -> StoreResult<T>
where
    T::Err: std::fmt::Display,
{
    let text: &str = column(row, name)?;
    text.parse()
        .map_err(|e: T::Err| StoreError::Corrupt(format!("{name} `{text}`: {e}")))
}

/// Reads a nullable text column through `FromStr`.
pub fn opt_parsed<T: FromStr>(row: &PgRow, name: &str) -> StoreResult<Option<T>>
where
    T::Err: std::fmt::Display,
{
    let text: Option<&str> = column(row, name)?;
    text.map(|t| {
        t.parse()
            .map_err(|e: T::Err| StoreError::Corrupt(format!("{name} `{t}`: {e}")))
    })
    .transpose()
}

/// Reads a JSON or JSONB column.
pub fn json<T: DeserializeOwned>(row: &PgRow, name: &str) -> StoreResult<T> {
    Ok(column::<Json<T>>(row, name)?.0)
}

/// Reads a nullable JSON or JSONB column.
pub fn opt_json<T: DeserializeOwned>(row: &PgRow, name: &str) -> StoreResult<Option<T>> {
    Ok(column::<Option<Json<T>>>(row, name)?.map(|j| j.0))
}

/// Reads a time column.
pub fn millis(row: &PgRow, name: &str) -> StoreResult<Millis> {
    Ok(Millis(column(row, name)?))
}

/// Reads a nullable time column.
pub fn opt_millis(row: &PgRow, name: &str) -> StoreResult<Option<Millis>> {
    Ok(column::<Option<i64>>(row, name)?.map(Millis))
}

/// Reads an `INTEGER` column that holds a count or position (never negative).
pub fn count(row: &PgRow, name: &str) -> StoreResult<u32> {
    let value: i32 = column(row, name)?;
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{name} is {value}")))
}

/// Reads a `BIGINT` count (`count(*)`).
pub fn big_count(row: &PgRow, name: &str) -> StoreResult<u64> {
    let value: i64 = column(row, name)?;
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{name} is {value}")))
}

/// A count or position as an `INTEGER` parameter.
pub fn int(value: u32) -> StoreResult<i32> {
    i32::try_from(value).map_err(|_| StoreError::Internal(format!("{value} does not fit a column")))
}

/// A length or limit as a `BIGINT` parameter.
pub fn limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// An audit entry from a row of `audit` or `admin_audit` (the same columns).
pub fn audit_entry(r: &PgRow) -> StoreResult<onramp_core::audit::AuditEntry> {
    let seq: i64 = column(r, "seq")?;
    Ok(onramp_core::audit::AuditEntry {
        seq: u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("audit seq {seq}")))?,
        at: millis(r, "at")?,
        actor: column(r, "actor")?,
        action: column(r, "action")?,
        from: column(r, "from_state")?,
        to: column(r, "to_state")?,
        detail: json(r, "detail")?,
        prev_hash: column(r, "prev_hash")?,
        hash: column(r, "hash")?,
    })
}
