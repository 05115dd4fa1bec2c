//! The per-stage queues: claiming steps under a lease and carrying out decisions on them.
//!
//! A claim picks its steps with `FOR UPDATE OF s, o SKIP LOCKED`, locking each candidate step
//! together with its onboarding and passing over rows another transaction holds. Claimers in
//! any number of processes therefore never take the same step and never wait for each other;
//! and since a claim never waits for a lock, it cannot be part of a deadlock with the
//! finishes, retries and cancels that wait for an onboarding's lock.

use crate::apply::{Leases, apply};
use crate::batch;
use crate::db_error;
use crate::onboardings::{load_step, load_steps, lock_state};
use crate::rows::*;
use crate::store::Notices;
use onramp_core::outcome::Resolution;
use onramp_core::plan;
use onramp_core::step::StepStatus;
use onramp_core::time::Millis;
use onramp_core::{OnboardingId, StageName, StepId, StepSeq};
use onramp_store::*;
use sqlx::PgConnection;
use sqlx::postgres::PgRow;
use std::time::Duration;

/// Claims up to `limit` due steps of `stage`.
pub async fn claim(
    conn: &mut PgConnection,
    stage: &StageName,
    max: usize,
    now: Millis,
    lease_for: Duration,
) -> StoreResult<(Vec<ClaimedStep>, Notices)> {
    let candidates: Vec<(OnboardingId, StepSeq, StepId)> = sqlx::query(
        "SELECT s.onboarding_id, s.seq, s.id
         FROM steps s JOIN onboardings o ON o.id = s.onboarding_id
         WHERE s.stage = $1 AND s.status IN ('queued', 'retrying', 'compensating')
           AND s.lease_id IS NULL AND s.available_at <= $2
         ORDER BY s.priority DESC, s.available_at, s.id
         LIMIT $3
         FOR UPDATE OF s, o SKIP LOCKED",
    )
    .bind(stage.as_str())
    .bind(now.0)
    .bind(limit(max))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?
    .iter()
    .map(|r| {
        Ok((
            parsed(r, "onboarding_id")?,
            StepSeq(count(r, "seq")?),
            parsed(r, "id")?,
        ))
    })
    .collect::<StoreResult<_>>()?;

    // One step per onboarding: its steps run strictly in order, so a second candidate of the
    // same onboarding could only be stale; it is left for a later claim.
    let mut seen = std::collections::HashSet::new();
    let candidates: Vec<_> = candidates
        .into_iter()
        .filter(|(id, _, _)| seen.insert(id.clone()))
        .collect();
    let keys: Vec<(OnboardingId, StepSeq)> = candidates
        .iter()
        .map(|(id, seq, _)| (id.clone(), *seq))
        .collect();
    // Already locked by the select above; this reads states, steps and audit heads at once.
    let mut loaded = batch::load(conn, &keys).await?;

    let mut claimed = Vec::with_capacity(candidates.len());
    let mut planned = Vec::with_capacity(candidates.len());
    let expires = now.plus(lease_for);
    for (onboarding_id, seq, step_id) in candidates {
        let Some(found) = loaded.remove(&onboarding_id) else {
            continue;
        };
        let Some((step, _)) = found.step(seq).cloned() else {
            continue;
        };
        let changes = match plan::claimed(&found.state, &step, now, "worker") {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(onboarding = %onboarding_id, seq = seq.0, error = %e, "queued step cannot start");
                continue;
            }
        };
        let lease = LeaseId(rand::random::<i64>());
        planned.push(batch::Planned {
            state: found.state,
            head: found.head,
            changes,
            now,
            leases: Leases {
                grant: Some((lease, expires)),
                require: None,
            },
        });
        claimed.push(ClaimedStep {
            onboarding_id,
            step_id,
            seq,
            task: step.task,
            stage: step.stage,
            attempt: step.attempts + 1,
            lease,
            lease_expires_at: expires,
            compensation: step.status == StepStatus::Compensating,
        });
    }
    let notices = batch::apply_all(conn, planned).await?;
    Ok((claimed, notices))
}

/// Carries out one decision on a step, if its guard still holds.
pub async fn finish(conn: &mut PgConnection, f: StepFinish) -> StoreResult<Notices> {
    let id = &f.step.onboarding_id;
    let (state, head) = lock_state(conn, id).await?;
    let (step, lease) = load_step(conn, id, f.step.seq)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("step {} of {id}", f.step.seq)))?;
    let require = check_guard(id, &step, lease, f.guard)?;
    let others = if state.needs_every_step() {
        load_steps(conn, id).await?
    } else if matches!(f.resolution, Resolution::Succeed(_)) && step.seq.0 < state.total_steps {
        load_step(conn, id, StepSeq(step.seq.0 + 1))
            .await?
            .map(|(s, _)| s)
            .into_iter()
            .collect()
    } else {
        Vec::new()
    };
    let changes = plan::resolved(&state, &step, &others, f.resolution, f.now, &f.actor)?;
    apply(
        conn,
        &state,
        head,
        changes,
        f.now,
        Leases {
            grant: None,
            require,
        },
    )
    .await
}

/// Carries out a batch of decisions with a few statements in all (see [`batch`]); each
/// decision whose guard no longer holds gets its own error, as on the one-at-a-time path.
/// `None` when the batch cannot go this way (an onboarding appears twice, or a write missed
/// its compare-and-set); the caller then rolls the transaction back — part of the batch may
/// have been written — and goes one at a time in a new one.
pub async fn finish_all(
    conn: &mut PgConnection,
    finishes: &[StepFinish],
) -> StoreResult<Option<(Vec<StoreResult<()>>, Notices)>> {
    let mut ids: Vec<&str> = finishes
        .iter()
        .map(|f| f.step.onboarding_id.as_str())
        .collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    if ids.len() != before {
        return Ok(None);
    }
    // Every onboarding's lock, in id order: the lock order of all multi-onboarding writes.
    sqlx::query(
        "SELECT o.id FROM unnest($1::text[]) AS k(id) JOIN onboardings o ON o.id = k.id
         ORDER BY o.id FOR UPDATE OF o",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    let keys: Vec<(OnboardingId, StepSeq)> = finishes
        .iter()
        .map(|f| (f.step.onboarding_id.clone(), f.step.seq))
        .collect();
    let mut loaded = batch::load(conn, &keys).await?;

    let mut results = Vec::with_capacity(finishes.len());
    let mut planned = Vec::with_capacity(finishes.len());
    for f in finishes {
        let id = &f.step.onboarding_id;
        let plan = loaded
            .remove(id)
            .ok_or_else(|| StoreError::NotFound(format!("onboarding {id}")))
            .and_then(|found| {
                let (step, lease) = found
                    .step(f.step.seq)
                    .cloned()
                    .ok_or_else(|| StoreError::NotFound(format!("step {} of {id}", f.step.seq)))?;
                let require = check_guard(id, &step, lease, f.guard)?;
                let changes = plan::resolved(
                    &found.state,
                    &step,
                    &found.others(step.seq),
                    f.resolution.clone(),
                    f.now,
                    &f.actor,
                )?;
                Ok(batch::Planned {
                    state: found.state,
                    head: found.head,
                    changes,
                    now: f.now,
                    leases: Leases {
                        grant: None,
                        require,
                    },
                })
            });
        match plan {
            Ok(p) => {
                planned.push(p);
                results.push(Ok(()));
            }
            Err(e) => results.push(Err(e)),
        }
    }

    // No savepoint around the write: with every onboarding locked since the read, a missed
    // compare-and-set is all but impossible, and a savepoint costs two round trips a batch.
    match batch::apply_all(conn, planned).await {
        Ok(notices) => Ok(Some((results, notices))),
        Err(StoreError::Conflict(why)) => {
            tracing::debug!(%why, "batched finish missed; finishing one at a time");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The lease a finish must still hold, or why its guard no longer holds.
fn check_guard(
    id: &OnboardingId,
    step: &plan::StepState,
    lease: Option<LeaseId>,
    guard: StepGuard,
) -> StoreResult<Option<LeaseId>> {
    match guard {
        StepGuard::Lease(expected) => {
            if !step.status.holds_lease() || lease != Some(expected) {
                return Err(StoreError::Conflict(format!(
                    "step {} of {id} is no longer held under this lease (now {})",
                    step.seq, step.status
                )));
            }
            Ok(Some(expected))
        }
        StepGuard::Status(expected) => {
            if step.status != expected {
                return Err(StoreError::Conflict(format!(
                    "step {} of {id} is {}, not {expected}",
                    step.seq, step.status
                )));
            }
            Ok(None)
        }
    }
}

fn claimed_from_row(r: &PgRow) -> StoreResult<ClaimedStep> {
    Ok(ClaimedStep {
        onboarding_id: parsed(r, "onboarding_id")?,
        step_id: parsed(r, "id")?,
        seq: StepSeq(count(r, "seq")?),
        task: parsed(r, "task")?,
        stage: parsed(r, "stage")?,
        attempt: count(r, "attempts")?,
        lease: LeaseId(column(r, "lease_id")?),
        lease_expires_at: millis(r, "lease_expires_at")?,
        compensation: parsed::<StepStatus>(r, "status")? == StepStatus::Compensating,
    })
}

/// Running steps whose lease ran out.
pub async fn expired_leases(
    conn: &mut PgConnection,
    now: Millis,
    max: usize,
) -> StoreResult<Vec<ClaimedStep>> {
    sqlx::query(
        "SELECT onboarding_id, id, seq, task, stage, status, attempts, lease_id, lease_expires_at
         FROM steps WHERE status IN ('running', 'compensating') AND lease_expires_at <= $1
         ORDER BY lease_expires_at, id LIMIT $2",
    )
    .bind(now.0)
    .bind(limit(max))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?
    .iter()
    .map(claimed_from_row)
    .collect()
}

/// Queued steps of `stage` that entered the queue before `queued_before`.
pub async fn unclaimed_since(
    conn: &mut PgConnection,
    stage: &StageName,
    queued_before: Millis,
    max: usize,
) -> StoreResult<Vec<StepRef>> {
    sqlx::query(
        "SELECT onboarding_id, seq, stage FROM steps
         WHERE stage = $1 AND status = 'queued' AND queued_at < $2
         ORDER BY queued_at, id LIMIT $3",
    )
    .bind(stage.as_str())
    .bind(queued_before.0)
    .bind(limit(max))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?
    .iter()
    .map(|r| {
        Ok(StepRef {
            onboarding_id: parsed(r, "onboarding_id")?,
            seq: StepSeq(count(r, "seq")?),
            stage: parsed(r, "stage")?,
        })
    })
    .collect()
}
