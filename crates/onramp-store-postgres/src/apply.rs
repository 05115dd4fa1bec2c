//! Writes a [`Changes`] computed by `onramp_core::plan`, inside the caller's transaction:
//! one onboarding's changes go through the same statements as a batch's (see
//! [`crate::batch`]), so there is one write path to get right.
//!
//! The caller holds the onboarding's row lock and read `head` after taking it. Every status
//! update is still a compare-and-set on the status the plan started from (and, for a step
//! leaving `running`, on its lease): a missed one refuses the whole write with
//! [`StoreError::Conflict`](onramp_store::StoreError::Conflict), and the caller's
//! transaction (or savepoint) is undone.

use crate::rows::int;
use crate::store::Notices;
use crate::{batch, db_error};
use onramp_core::DeadLetterId;
use onramp_core::audit::AuditHead;
use onramp_core::plan::{Changes, DeadLetterChange, ErrorUpdate, OnboardingState};
use onramp_core::time::Millis;
use onramp_store::{LeaseId, StoreResult};
use sqlx::PgConnection;

/// A lease to set on a step entering `running`, or to require of a step leaving it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Leases {
    /// Granted to a step entering `running`: (lease, expiry).
    pub grant: Option<(LeaseId, Millis)>,
    /// Required of a step leaving `running`.
    pub require: Option<LeaseId>,
}

/// Applies `changes` to onboarding `ob` whose audit chain ends at `head`: a batch of one.
pub async fn apply(
    conn: &mut PgConnection,
    ob: &OnboardingState,
    head: AuditHead,
    changes: Changes,
    now: Millis,
    leases: Leases,
) -> StoreResult<Notices> {
    batch::apply_all(
        conn,
        vec![batch::Planned {
            state: ob.clone(),
            head,
            changes,
            now,
            leases,
        }],
    )
    .await
}

/// The mode and value of an error column update, as the SQL `CASE` expects them.
pub(crate) fn error_update(error: &ErrorUpdate) -> (&'static str, Option<String>) {
    match error {
        ErrorUpdate::Keep => ("keep", None),
        ErrorUpdate::Set(e) => ("set", Some(storable_text(e))),
        ErrorUpdate::Clear => ("clear", None),
    }
}

/// `value` as JSON that PostgreSQL's `jsonb` accepts: it refuses `\u0000` in strings.
pub(crate) fn storable_json(value: &serde_json::Value) -> String {
    fn clean(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) if s.contains('\0') => *s = storable_text(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(clean),
            serde_json::Value::Object(map) => map.values_mut().for_each(clean),
            _ => {}
        }
    }
    let json = value.to_string();
    if !json.contains("\\u0000") {
        return json;
    }
    let mut cleaned = value.clone();
    clean(&mut cleaned);
    cleaned.to_string()
}

/// `text` as PostgreSQL can store it: it refuses NUL in text columns, and an error message
/// may quote whatever a remote service answered.
pub(crate) fn storable_text(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

pub(crate) async fn write_dead_letter(
    conn: &mut PgConnection,
    ob: &OnboardingState,
    change: &DeadLetterChange,
    now: Millis,
) -> StoreResult<()> {
    match change {
        DeadLetterChange::Add { seq, error } => {
            sqlx::query(
                "INSERT INTO dead_letters (id, onboarding_id, step_seq, task, stage, attempts, error, dead_at)
                 SELECT $1, onboarding_id, seq, task, stage, attempts, $2, $3
                 FROM steps WHERE onboarding_id = $4 AND seq = $5",
            )
            .bind(DeadLetterId::new().as_str())
            .bind(storable_text(error))
            .bind(now.0)
            .bind(ob.id.as_str())
            .bind(int(seq.0)?)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        }
        DeadLetterChange::Resolve { resolution } => {
            sqlx::query(
                "UPDATE dead_letters SET resolved_at = $1, resolution = $2
                 WHERE onboarding_id = $3 AND resolved_at IS NULL",
            )
            .bind(now.0)
            .bind(*resolution)
            .bind(ob.id.as_str())
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        }
    }
    Ok(())
}
