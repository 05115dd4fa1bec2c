//! Levels of open work for metrics, each read through a partial index over open rows.

use crate::db_error;
use crate::registry::stage_counts;
use crate::rows::*;
use onramp_core::time::Millis;
use onramp_store::*;
use sqlx::PgConnection;

/// Every level (the caller passes one snapshot transaction, so they agree).
pub async fn work_levels(conn: &mut PgConnection, now: Millis) -> StoreResult<WorkLevels> {
    let open_onboardings = sqlx::query(
        "SELECT status, count(*) AS n FROM onboardings
         WHERE status IN ('pending', 'running', 'waiting', 'failed', 'cancelling')
         GROUP BY status ORDER BY status",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?
    .iter()
    .map(|r| Ok((parsed(r, "status")?, big_count(r, "n")?)))
    .collect::<StoreResult<_>>()?;
    let row = sqlx::query("SELECT count(*) AS n FROM outbox WHERE seq IS NULL")
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error)?;
    let unpublished_events = big_count(&row, "n")?;
    let open_deliveries = sqlx::query(
        "SELECT target, count(*) AS n FROM deliveries
         WHERE status IN ('pending', 'sending', 'retrying')
         GROUP BY target ORDER BY target",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?
    .iter()
    .map(|r| Ok((column::<String>(r, "target")?, big_count(r, "n")?)))
    .collect::<StoreResult<_>>()?;
    let row = sqlx::query(
        "SELECT count(*) FILTER (WHERE status = 'unassigned') AS unassigned,
                count(*) FILTER (WHERE due_by < $1) AS overdue
         FROM tasks WHERE status IN ('unassigned', 'assigned')",
    )
    .bind(now.0)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_error)?;
    let (unassigned_tasks, overdue_tasks) =
        (big_count(&row, "unassigned")?, big_count(&row, "overdue")?);
    let assigned_tasks = sqlx::query(
        "SELECT csr_id, count(*) AS n FROM tasks WHERE status = 'assigned'
         GROUP BY csr_id ORDER BY csr_id",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?
    .iter()
    .map(|r| Ok((parsed(r, "csr_id")?, big_count(r, "n")?)))
    .collect::<StoreResult<_>>()?;
    Ok(WorkLevels {
        stages: stage_counts(conn).await?,
        open_onboardings,
        unpublished_events,
        open_deliveries,
        unassigned_tasks,
        overdue_tasks,
        assigned_tasks,
    })
}
