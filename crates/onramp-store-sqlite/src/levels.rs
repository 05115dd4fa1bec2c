//! Levels of open work for metrics. Each query's filter is exactly the predicate of a partial
//! index over open rows (SQLite uses a partial index only when the query repeats its terms).

use crate::db_error;
use crate::registry::stage_counts;
use crate::rows::*;
use onramp_core::time::Millis;
use onramp_store::*;
use rusqlite::{Connection, params};

/// Every level, read in one transaction.
pub fn work_levels(conn: &Connection, now: Millis) -> StoreResult<WorkLevels> {
    let open_onboardings = conn
        .prepare_cached(
            "SELECT status, count(*) AS n FROM onboardings
             WHERE status IN ('pending', 'running', 'waiting', 'failed', 'cancelling')
             GROUP BY status ORDER BY status",
        )
        .map_err(db_error)?
        .query_map([], |r| Ok((get_parsed(r, "status")?, r.get("n")?)))
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    let unpublished_events = conn
        .query_row("SELECT count(*) FROM outbox WHERE seq IS NULL", [], |r| {
            r.get(0)
        })
        .map_err(db_error)?;
    let open_deliveries = conn
        .prepare_cached(
            "SELECT target, count(*) AS n FROM deliveries
             WHERE status IN ('pending', 'sending', 'retrying')
             GROUP BY target ORDER BY target",
        )
        .map_err(db_error)?
        .query_map([], |r| Ok((r.get("target")?, r.get("n")?)))
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    let (unassigned_tasks, overdue_tasks) = conn
        .query_row(
            "SELECT count(*) FILTER (WHERE status = 'unassigned'),
                    count(*) FILTER (WHERE due_by < ?1)
             FROM tasks WHERE status IN ('unassigned', 'assigned')",
            params![ms(now)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db_error)?;
    let assigned_tasks = conn
        .prepare_cached(
            "SELECT csr_id, count(*) AS n FROM tasks
             WHERE status IN ('unassigned', 'assigned') AND status = 'assigned'
             GROUP BY csr_id ORDER BY csr_id",
        )
        .map_err(db_error)?
        .query_map([], |r| Ok((get_parsed(r, "csr_id")?, r.get("n")?)))
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    Ok(WorkLevels {
        stages: stage_counts(conn)?,
        open_onboardings,
        unpublished_events,
        open_deliveries,
        unassigned_tasks,
        overdue_tasks,
        assigned_tasks,
    })
}
