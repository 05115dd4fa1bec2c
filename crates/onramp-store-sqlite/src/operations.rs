//! Operator actions: retry, cancel, and the dead-letter queue.

use crate::apply::{Leases, apply};
use crate::db_error;
use crate::onboardings::{get, load_state, load_step, load_steps};
use crate::rows::*;
use crate::store::Notices;
use onramp_core::plan;
use onramp_core::time::Millis;
use onramp_core::{DeadLetterId, OnboardingId, StageName, StepSeq};
use onramp_store::*;
use rusqlite::{Connection, OptionalExtension, params};

/// failed → running, re-queueing the dead step.
pub fn retry(
    conn: &Connection,
    id: &OnboardingId,
    now: Millis,
    actor: &str,
) -> StoreResult<(OnboardingRecord, Notices)> {
    let notices = replay(conn, id, now, actor, "retry")?;
    Ok((get(conn, id)?, notices))
}

fn replay(
    conn: &Connection,
    id: &OnboardingId,
    now: Millis,
    actor: &str,
    how: &str,
) -> StoreResult<Notices> {
    let (state, head) = load_state(conn, id)?;
    ensure_replayable(&state)?;
    let (dead, _) = load_step(conn, id, state.current_seq)?
        .ok_or_else(|| StoreError::NotFound(format!("step {} of {id}", state.current_seq)))?;
    let changes = plan::retried(&state, &dead, now, actor, how)?;
    apply(conn, &state, head, changes, now, Leases::default())
}

/// Cancels an onboarding.
pub fn cancel(
    conn: &Connection,
    id: &OnboardingId,
    reason: &str,
    now: Millis,
    actor: &str,
) -> StoreResult<(OnboardingRecord, Notices)> {
    let (state, head) = load_state(conn, id)?;
    let steps = load_steps(conn, id)?;
    let changes = plan::cancelled(&state, &steps, reason, now, actor)?;
    let notices = apply(conn, &state, head, changes, now, Leases::default())?;
    Ok((get(conn, id)?, notices))
}

fn dead_letter_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeadLetterRecord> {
    Ok(DeadLetterRecord {
        id: get_parsed(r, "id")?,
        onboarding_id: get_parsed(r, "onboarding_id")?,
        step_seq: StepSeq(r.get("step_seq")?),
        task: get_parsed(r, "task")?,
        stage: get_parsed(r, "stage")?,
        attempts: r.get("attempts")?,
        error: r.get("error")?,
        dead_at: get_ms(r, "dead_at")?,
    })
}

const DEAD_LETTER_COLUMNS: &str =
    "id, onboarding_id, step_seq, task, stage, attempts, error, dead_at";

/// Open dead letters, oldest first.
pub fn list_dead_letters(
    conn: &Connection,
    stage: Option<&StageName>,
    page: &PageRequest<DeadLetterId>,
) -> StoreResult<Page<DeadLetterRecord, DeadLetterId>> {
    let items: Vec<DeadLetterRecord> = conn
        .prepare_cached(&format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters
             WHERE resolved_at IS NULL AND (?1 IS NULL OR stage = ?1) AND (?2 IS NULL OR id > ?2)
             ORDER BY id LIMIT ?3"
        ))
        .map_err(db_error)?
        .query_map(
            params![
                stage.map(|s| s.as_str()),
                page.cursor.as_ref().map(|c| c.as_str()),
                page.limit as i64 + 1
            ],
            dead_letter_from_row,
        )
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    Ok(Page::from_overfetch(items, page.limit, |d| d.id.clone()))
}

fn open_dead_letter(conn: &Connection, id: &DeadLetterId) -> StoreResult<DeadLetterRecord> {
    conn.prepare_cached(&format!(
        "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = ?1 AND resolved_at IS NULL"
    ))
    .map_err(db_error)?
    .query_row([id.as_str()], dead_letter_from_row)
    .optional()
    .map_err(db_error)?
    .ok_or_else(|| StoreError::NotFound(format!("open dead letter {id}")))
}

/// Replays one dead letter.
pub fn replay_dead_letter(
    conn: &Connection,
    id: &DeadLetterId,
    now: Millis,
    actor: &str,
) -> StoreResult<(DeadLetterRecord, Notices)> {
    let dead = open_dead_letter(conn, id)?;
    let notices = replay(conn, &dead.onboarding_id, now, actor, "dead_letter_replay")?;
    Ok((dead, notices))
}

/// Discards one dead letter.
pub fn discard_dead_letter(
    conn: &Connection,
    id: &DeadLetterId,
    now: Millis,
    actor: &str,
) -> StoreResult<(DeadLetterRecord, Notices)> {
    let dead = open_dead_letter(conn, id)?;
    let (state, head) = load_state(conn, &dead.onboarding_id)?;
    let steps = load_steps(conn, &dead.onboarding_id)?;
    let step = steps
        .iter()
        .find(|s| s.seq == dead.step_seq)
        .ok_or_else(|| StoreError::NotFound(format!("step {}", dead.step_seq)))?;
    let changes = plan::discarded(&state, step, &steps, now, actor)?;
    let notices = apply(conn, &state, head, changes, now, Leases::default())?;
    Ok((dead, notices))
}

/// Replays every open dead letter of a stage.
pub fn replay_stage(
    conn: &Connection,
    stage: &StageName,
    now: Millis,
    actor: &str,
) -> StoreResult<(u64, Notices)> {
    let onboardings: Vec<OnboardingId> = conn
        .prepare_cached(
            "SELECT onboarding_id FROM dead_letters WHERE stage = ?1 AND resolved_at IS NULL ORDER BY id",
        )
        .map_err(db_error)?
        .query_map([stage.as_str()], |r| get_parsed(r, "onboarding_id"))
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    let mut notices = Notices::default();
    let mut replayed = 0;
    for id in onboardings {
        notices.merge(replay(conn, &id, now, actor, "dead_letter_replay")?);
        replayed += 1;
    }
    Ok((replayed, notices))
}
