//! Operator actions: retry, cancel, and the dead-letter queue.
//!
//! A dead letter is always re-read after its onboarding is locked, so two operators acting on
//! one dead letter at once get the same answers as one after the other (the second finds it
//! already handled).

use crate::apply::{Leases, apply};
use crate::db_error;
use crate::onboardings::{get as get_onboarding, load_step, load_steps, lock_state};
use crate::rows::*;
use crate::store::Notices;
use onramp_core::plan;
use onramp_core::time::Millis;
use onramp_core::{DeadLetterId, OnboardingId, StageName, StepSeq};
use onramp_store::*;
use sqlx::PgConnection;
use sqlx::postgres::PgRow;

/// failed → running, re-queueing the dead step.
pub async fn retry(
    conn: &mut PgConnection,
    id: &OnboardingId,
    now: Millis,
    actor: &str,
) -> StoreResult<(OnboardingRecord, Notices)> {
    let notices = replay(conn, id, now, actor, "retry").await?;
    Ok((get_onboarding(conn, id).await?, notices))
}

async fn replay(
    conn: &mut PgConnection,
    id: &OnboardingId,
    now: Millis,
    actor: &str,
    how: &str,
) -> StoreResult<Notices> {
    let (state, head) = lock_state(conn, id).await?;
    ensure_replayable(&state)?;
    let (dead, _) = load_step(conn, id, state.current_seq)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("step {} of {id}", state.current_seq)))?;
    let changes = plan::retried(&state, &dead, now, actor, how)?;
    apply(conn, &state, head, changes, now, Leases::default()).await
}

/// Cancels an onboarding.
pub async fn cancel(
    conn: &mut PgConnection,
    id: &OnboardingId,
    reason: &str,
    now: Millis,
    actor: &str,
) -> StoreResult<(OnboardingRecord, Notices)> {
    let (state, head) = lock_state(conn, id).await?;
    let steps = load_steps(conn, id).await?;
    let changes = plan::cancelled(&state, &steps, reason, now, actor)?;
    let notices = apply(conn, &state, head, changes, now, Leases::default()).await?;
    Ok((get_onboarding(conn, id).await?, notices))
}

fn dead_letter_from_row(r: &PgRow) -> StoreResult<DeadLetterRecord> {
    Ok(DeadLetterRecord {
        id: parsed(r, "id")?,
        onboarding_id: parsed(r, "onboarding_id")?,
        step_seq: StepSeq(count(r, "step_seq")?),
        task: parsed(r, "task")?,
        stage: parsed(r, "stage")?,
        attempts: count(r, "attempts")?,
        error: column(r, "error")?,
        dead_at: millis(r, "dead_at")?,
    })
}

/// Open dead letters, oldest first.
pub async fn list_dead_letters(
    conn: &mut PgConnection,
    stage: Option<&StageName>,
    page: &PageRequest<DeadLetterId>,
) -> StoreResult<Page<DeadLetterRecord, DeadLetterId>> {
    let items: Vec<DeadLetterRecord> = sqlx::query(
        "SELECT id, onboarding_id, step_seq, task, stage, attempts, error, dead_at
         FROM dead_letters
         WHERE resolved_at IS NULL AND ($1::text IS NULL OR stage = $1)
           AND ($2::text IS NULL OR id > $2)
         ORDER BY id LIMIT $3",
    )
    .bind(stage.map(|s| s.as_str()))
    .bind(page.cursor.as_ref().map(|c| c.as_str()))
    .bind(limit(page.limit).saturating_add(1))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?
    .iter()
    .map(dead_letter_from_row)
    .collect::<StoreResult<_>>()?;
    Ok(Page::from_overfetch(items, page.limit, |d| d.id.clone()))
}

/// Locks the onboarding of dead letter `id`, then returns the dead letter if it is still
/// open.
async fn lock_open_dead_letter(
    conn: &mut PgConnection,
    id: &DeadLetterId,
) -> StoreResult<DeadLetterRecord> {
    let not_found = || StoreError::NotFound(format!("open dead letter {id}"));
    let onboarding: OnboardingId =
        sqlx::query("SELECT onboarding_id FROM dead_letters WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(|r| parsed(r, "onboarding_id"))
            .transpose()?
            .ok_or_else(not_found)?;
    lock_state(conn, &onboarding).await?;
    sqlx::query(
        "SELECT id, onboarding_id, step_seq, task, stage, attempts, error, dead_at
         FROM dead_letters WHERE id = $1 AND resolved_at IS NULL",
    )
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?
    .as_ref()
    .map(dead_letter_from_row)
    .transpose()?
    .ok_or_else(not_found)
}

/// Replays one dead letter.
pub async fn replay_dead_letter(
    conn: &mut PgConnection,
    id: &DeadLetterId,
    now: Millis,
    actor: &str,
) -> StoreResult<(DeadLetterRecord, Notices)> {
    let dead = lock_open_dead_letter(conn, id).await?;
    let notices = replay(conn, &dead.onboarding_id, now, actor, "dead_letter_replay").await?;
    Ok((dead, notices))
}

/// Discards one dead letter.
pub async fn discard_dead_letter(
    conn: &mut PgConnection,
    id: &DeadLetterId,
    now: Millis,
    actor: &str,
) -> StoreResult<(DeadLetterRecord, Notices)> {
    let dead = lock_open_dead_letter(conn, id).await?;
    let (state, head) = lock_state(conn, &dead.onboarding_id).await?;
    let steps = load_steps(conn, &dead.onboarding_id).await?;
    let step = steps
        .iter()
        .find(|s| s.seq == dead.step_seq)
        .ok_or_else(|| StoreError::NotFound(format!("step {}", dead.step_seq)))?;
    let changes = plan::discarded(&state, step, &steps, now, actor)?;
    let notices = apply(conn, &state, head, changes, now, Leases::default()).await?;
    Ok((dead, notices))
}

/// Replays every open dead letter of a stage.
///
/// Onboardings are locked in id order (the order every multi-onboarding transaction here
/// uses, so two of them cannot deadlock), and one whose dead letter was handled meanwhile is
/// passed over.
pub async fn replay_stage(
    conn: &mut PgConnection,
    stage: &StageName,
    now: Millis,
    actor: &str,
) -> StoreResult<(u64, Notices)> {
    let onboardings: Vec<OnboardingId> = sqlx::query(
        "SELECT DISTINCT onboarding_id FROM dead_letters
         WHERE stage = $1 AND resolved_at IS NULL ORDER BY onboarding_id",
    )
    .bind(stage.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?
    .iter()
    .map(|r| parsed(r, "onboarding_id"))
    .collect::<StoreResult<_>>()?;
    let mut notices = Notices::default();
    let mut replayed = 0;
    for id in onboardings {
        lock_state(conn, &id).await?;
        let still_open: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM dead_letters
                            WHERE onboarding_id = $1 AND stage = $2 AND resolved_at IS NULL)",
        )
        .bind(id.as_str())
        .bind(stage.as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error)?;
        if !still_open {
            continue;
        }
        notices.merge(replay(conn, &id, now, actor, "dead_letter_replay").await?);
        replayed += 1;
    }
    Ok((replayed, notices))
}
