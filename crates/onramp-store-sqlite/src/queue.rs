//! The per-stage queues: claiming steps under a lease and carrying out decisions on them.
//!
//! There is no `FOR UPDATE SKIP LOCKED` here because there is no need: every claim runs on
//! the single writer thread, so the select-then-update below cannot race another claim.

use crate::apply::{Leases, apply};
use crate::db_error;
use crate::onboardings::{load_state, load_step, load_steps};
use crate::rows::*;
use crate::store::Notices;
use onramp_core::outcome::Resolution;
use onramp_core::plan;
use onramp_core::step::StepStatus;
use onramp_core::time::Millis;
use onramp_core::{OnboardingId, StageName, StepSeq};
use onramp_store::*;
use rusqlite::{Connection, params};
use std::time::Duration;

/// Claims up to `limit` due steps of `stage`.
pub fn claim(
    conn: &Connection,
    stage: &StageName,
    limit: usize,
    now: Millis,
    lease_for: Duration,
) -> StoreResult<(Vec<ClaimedStep>, Notices)> {
    let candidates: Vec<(OnboardingId, StepSeq, String)> = conn
        .prepare_cached(
            "SELECT onboarding_id, seq, id FROM steps
             WHERE stage = ?1 AND status IN ('queued', 'retrying', 'compensating')
               AND lease_id IS NULL AND available_at <= ?2
             ORDER BY priority DESC, available_at LIMIT ?3",
        )
        .map_err(db_error)?
        .query_map(params![stage.as_str(), ms(now), limit as i64], |r| {
            Ok((
                get_parsed(r, "onboarding_id")?,
                StepSeq(r.get("seq")?),
                r.get("id")?,
            ))
        })
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)?;

    let mut claimed = Vec::with_capacity(candidates.len());
    let mut notices = Notices::default();
    let expires = now.plus(lease_for);
    for (onboarding_id, seq, step_id) in candidates {
        let (state, head) = load_state(conn, &onboarding_id)?;
        let Some((step, _)) = load_step(conn, &onboarding_id, seq)? else {
            continue;
        };
        let changes = match plan::claimed(&state, &step, now, "worker") {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(onboarding = %onboarding_id, seq = seq.0, error = %e, "queued step cannot start");
                continue;
            }
        };
        let lease = LeaseId(rand::random::<i64>());
        notices.merge(apply(
            conn,
            &state,
            head,
            changes,
            now,
            Leases {
                grant: Some((lease, expires)),
                require: None,
            },
        )?);
        claimed.push(ClaimedStep {
            onboarding_id,
            step_id: step_id
                .parse()
                .map_err(|e: onramp_core::InvalidId| StoreError::Corrupt(e.to_string()))?,
            seq,
            task: step.task,
            stage: step.stage,
            attempt: step.attempts + 1,
            lease,
            lease_expires_at: expires,
            compensation: step.status == StepStatus::Compensating,
        });
    }
    Ok((claimed, notices))
}

/// Carries out one decision on a step, if its guard still holds.
pub fn finish(conn: &Connection, f: StepFinish) -> StoreResult<((), Notices)> {
    let id = &f.step.onboarding_id;
    let (state, head) = load_state(conn, id)?;
    let (step, lease) = load_step(conn, id, f.step.seq)?
        .ok_or_else(|| StoreError::NotFound(format!("step {} of {id}", f.step.seq)))?;
    let require = match f.guard {
        StepGuard::Lease(expected) => {
            if !step.status.holds_lease() || lease != Some(expected) {
                return Err(StoreError::Conflict(format!(
                    "step {} of {id} is no longer held under this lease (now {})",
                    step.seq, step.status
                )));
            }
            Some(expected)
        }
        StepGuard::Status(expected) => {
            if step.status != expected {
                return Err(StoreError::Conflict(format!(
                    "step {} of {id} is {}, not {expected}",
                    step.seq, step.status
                )));
            }
            None
        }
    };
    let others = if state.needs_every_step() {
        load_steps(conn, id)?
    } else if matches!(f.resolution, Resolution::Succeed(_)) && step.seq.0 < state.total_steps {
        load_step(conn, id, StepSeq(step.seq.0 + 1))?
            .map(|(s, _)| s)
            .into_iter()
            .collect()
    } else {
        Vec::new()
    };
    let changes = plan::resolved(&state, &step, &others, f.resolution, f.now, &f.actor)?;
    let notices = apply(
        conn,
        &state,
        head,
        changes,
        f.now,
        Leases {
            grant: None,
            require,
        },
    )?;
    Ok(((), notices))
}

/// Running steps whose lease ran out.
pub fn expired_leases(
    conn: &Connection,
    now: Millis,
    limit: usize,
) -> StoreResult<Vec<ClaimedStep>> {
    conn.prepare_cached(
        "SELECT onboarding_id, id, seq, task, stage, status, attempts, lease_id, lease_expires_at
         FROM steps WHERE status IN ('running', 'compensating') AND lease_expires_at <= ?1
         ORDER BY lease_expires_at LIMIT ?2",
    )
    .map_err(db_error)?
    .query_map(params![ms(now), limit as i64], |r| {
        Ok(ClaimedStep {
            onboarding_id: get_parsed(r, "onboarding_id")?,
            step_id: get_parsed(r, "id")?,
            seq: StepSeq(r.get("seq")?),
            task: get_parsed(r, "task")?,
            stage: get_parsed(r, "stage")?,
            attempt: r.get("attempts")?,
            lease: LeaseId(r.get("lease_id")?),
            lease_expires_at: get_ms(r, "lease_expires_at")?,
            compensation: get_parsed::<StepStatus>(r, "status")? == StepStatus::Compensating,
        })
    })
    .map_err(db_error)?
    .collect::<Result<_, _>>()
    .map_err(db_error)
}

/// Queued steps of `stage` that entered the queue before `queued_before`.
pub fn unclaimed_since(
    conn: &Connection,
    stage: &StageName,
    queued_before: Millis,
    limit: usize,
) -> StoreResult<Vec<StepRef>> {
    conn.prepare_cached(
        "SELECT onboarding_id, seq, stage FROM steps
         WHERE stage = ?1 AND status = 'queued' AND queued_at < ?2 LIMIT ?3",
    )
    .map_err(db_error)?
    .query_map(
        params![stage.as_str(), ms(queued_before), limit as i64],
        |r| {
            Ok(StepRef {
                onboarding_id: get_parsed(r, "onboarding_id")?,
                seq: StepSeq(r.get("seq")?),
                stage: get_parsed(r, "stage")?,
            })
        },
    )
    .map_err(db_error)?
    .collect::<Result<_, _>>()
    .map_err(db_error)
}
