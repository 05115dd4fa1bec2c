//! Stage pause flags, template versions and API tokens.

use crate::db_error;
use crate::rows::*;
use crate::store::Notices;
use onramp_core::time::Millis;
use onramp_core::{StageName, TaskTypeName, TemplateName};
use onramp_store::*;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeMap;

/// Queue counts per stage.
pub fn stage_counts(conn: &Connection) -> StoreResult<Vec<StageCounts>> {
    let mut by_stage: BTreeMap<StageName, StageCounts> = BTreeMap::new();
    let blank = |stage: &StageName| StageCounts {
        stage: stage.clone(),
        queued: 0,
        running: 0,
        retrying: 0,
        dead: 0,
        paused: false,
    };
    let rows: Vec<(StageName, String, u64)> = conn
        .prepare_cached(
            "SELECT stage, status, count(*) AS n FROM steps
             WHERE status IN ('queued', 'running', 'retrying', 'compensating')
             GROUP BY stage, status",
        )
        .map_err(db_error)?
        .query_map([], |r| {
            Ok((get_parsed(r, "stage")?, r.get("status")?, r.get("n")?))
        })
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    for (stage, status, n) in rows {
        let counts = by_stage
            .entry(stage.clone())
            .or_insert_with(|| blank(&stage));
        match status.as_str() {
            "queued" => counts.queued = n,
            "running" => counts.running = n,
            "retrying" => counts.retrying = n,
            // Read only so the query's filter matches the partial index `steps_open`.
            _ => {}
        }
    }
    let dead: Vec<(StageName, u64)> = conn
        .prepare_cached(
            "SELECT stage, count(*) AS n FROM dead_letters WHERE resolved_at IS NULL GROUP BY stage",
        )
        .map_err(db_error)?
        .query_map([], |r| Ok((get_parsed(r, "stage")?, r.get("n")?)))
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    for (stage, n) in dead {
        by_stage
            .entry(stage.clone())
            .or_insert_with(|| blank(&stage))
            .dead = n;
    }
    for stage in paused_stages(conn)? {
        by_stage
            .entry(stage.clone())
            .or_insert_with(|| blank(&stage))
            .paused = true;
    }
    Ok(by_stage.into_values().collect())
}

/// Pauses or resumes a stage.
pub fn set_stage_paused(
    conn: &Connection,
    stage: &StageName,
    paused: bool,
    now: Millis,
) -> StoreResult<((), Notices)> {
    conn.prepare_cached(
        "INSERT INTO stages (name, paused, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at",
    )
    .map_err(db_error)?
    .execute(params![stage.as_str(), paused, ms(now)])
    .map_err(db_error)?;
    let mut notices = Notices::default();
    if !paused {
        notices.wake.push(stage.clone());
    }
    Ok(((), notices))
}

/// The paused stages.
pub fn paused_stages(conn: &Connection) -> StoreResult<Vec<StageName>> {
    conn.prepare_cached("SELECT name FROM stages WHERE paused = 1 ORDER BY name")
        .map_err(db_error)?
        .query_map([], |r| get_parsed(r, "name"))
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)
}

fn template_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TemplateRecord> {
    Ok(TemplateRecord {
        name: get_parsed(r, "name")?,
        version: r.get("version")?,
        tasks: r.get::<_, Json<Vec<TaskTypeName>>>("tasks")?.0,
        on_failure: get_parsed(r, "on_failure")?,
        created_at: get_ms(r, "created_at")?,
    })
}

/// Stores a new template version; with `only_if_changed`, returns the latest version
/// unchanged when it already says the same.
pub fn put_template(
    conn: &Connection,
    name: &TemplateName,
    spec: &TemplateSpec,
    now: Millis,
    only_if_changed: bool,
    actor: &str,
) -> StoreResult<(TemplateRecord, Notices)> {
    let latest = latest_template(conn, name)?;
    if only_if_changed
        && let Some(latest) = &latest
        && latest.says(spec)
    {
        return Ok((latest.clone(), Notices::default()));
    }
    let version = latest.map_or(1, |t| t.version + 1);
    let tasks_json =
        serde_json::to_string(&spec.tasks).map_err(|e| StoreError::Internal(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO templates (name, version, tasks, on_failure, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .map_err(db_error)?
    .execute(params![
        name.as_str(),
        version,
        tasks_json,
        spec.on_failure.as_str(),
        ms(now)
    ])
    .map_err(db_error)?;
    let record = TemplateRecord {
        name: name.clone(),
        version,
        tasks: spec.tasks.clone(),
        on_failure: spec.on_failure,
        created_at: now,
    };
    crate::admin_audit::append(conn, onramp_store::admin::template_changed(&record, actor))?;
    Ok((record, Notices::default()))
}

fn latest_template(conn: &Connection, name: &TemplateName) -> StoreResult<Option<TemplateRecord>> {
    conn.prepare_cached(
        "SELECT name, version, tasks, on_failure, created_at FROM templates WHERE name = ?1
         ORDER BY version DESC LIMIT 1",
    )
    .map_err(db_error)?
    .query_row([name.as_str()], template_from_row)
    .optional()
    .map_err(db_error)
}

/// A template version, the latest by default.
pub fn get_template(
    conn: &Connection,
    name: &TemplateName,
    version: Option<u32>,
) -> StoreResult<TemplateRecord> {
    let found = match version {
        None => latest_template(conn, name)?,
        Some(v) => conn
            .prepare_cached(
                "SELECT name, version, tasks, on_failure, created_at FROM templates WHERE name = ?1 AND version = ?2",
            )
            .map_err(db_error)?
            .query_row(params![name.as_str(), v], template_from_row)
            .optional()
            .map_err(db_error)?,
    };
    found.ok_or_else(|| match version {
        Some(v) => StoreError::NotFound(format!("template {name} version {v}")),
        None => StoreError::NotFound(format!("template {name}")),
    })
}

/// All versions of a template.
pub fn template_versions(
    conn: &Connection,
    name: &TemplateName,
) -> StoreResult<Vec<TemplateRecord>> {
    let versions: Vec<TemplateRecord> = conn
        .prepare_cached(
            "SELECT name, version, tasks, on_failure, created_at FROM templates WHERE name = ?1 ORDER BY version",
        )
        .map_err(db_error)?
        .query_map([name.as_str()], template_from_row)
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    if versions.is_empty() {
        return Err(StoreError::NotFound(format!("template {name}")));
    }
    Ok(versions)
}

/// The latest version of every template.
pub fn list_templates(conn: &Connection) -> StoreResult<Vec<TemplateRecord>> {
    conn.prepare_cached(
        "SELECT t.name, t.version, t.tasks, t.on_failure, t.created_at FROM templates t
         WHERE t.version = (SELECT max(version) FROM templates WHERE name = t.name)
         ORDER BY t.name",
    )
    .map_err(db_error)?
    .query_map([], template_from_row)
    .map_err(db_error)?
    .collect::<Result<_, _>>()
    .map_err(db_error)
}

fn token_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        name: r.get("name")?,
        role: get_parsed(r, "role")?,
        csr: get_opt_parsed(r, "csr_id")?,
        created_at: get_ms(r, "created_at")?,
        revoked_at: get_opt_ms(r, "revoked_at")?,
    })
}

/// Stores a token.
pub fn create_token(conn: &Connection, t: NewToken) -> StoreResult<(TokenRecord, Notices)> {
    let taken: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM tokens WHERE name = ?1)")
        .map_err(db_error)?
        .query_row([&t.name], |r| r.get(0))
        .map_err(db_error)?;
    if taken {
        return Err(StoreError::Conflict(format!(
            "a token named `{}` already exists",
            t.name
        )));
    }
    conn.prepare_cached(
        "INSERT INTO tokens (name, role, hash, csr_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .map_err(db_error)?
    .execute(params![
        t.name,
        t.role.as_str(),
        t.hash,
        t.csr.as_ref().map(|c| c.as_str()),
        ms(t.now)
    ])
    .map_err(db_error)?;
    let record = TokenRecord {
        name: t.name,
        role: t.role,
        csr: t.csr,
        created_at: t.now,
        revoked_at: None,
    };
    Ok((record, Notices::default()))
}

/// The live token with this hash.
pub fn token_by_hash(conn: &Connection, hash: &str) -> StoreResult<Option<TokenRecord>> {
    conn.prepare_cached(
        "SELECT name, role, csr_id, created_at, revoked_at FROM tokens
         WHERE hash = ?1 AND revoked_at IS NULL",
    )
    .map_err(db_error)?
    .query_row([hash], token_from_row)
    .optional()
    .map_err(db_error)
}

/// Every token.
pub fn list_tokens(conn: &Connection) -> StoreResult<Vec<TokenRecord>> {
    conn.prepare_cached(
        "SELECT name, role, csr_id, created_at, revoked_at FROM tokens ORDER BY name",
    )
    .map_err(db_error)?
    .query_map([], token_from_row)
    .map_err(db_error)?
    .collect::<Result<_, _>>()
    .map_err(db_error)
}

/// Revokes a token by name.
pub fn revoke_token(conn: &Connection, name: &str, now: Millis) -> StoreResult<((), Notices)> {
    let updated = conn
        .prepare_cached("UPDATE tokens SET revoked_at = ?1 WHERE name = ?2 AND revoked_at IS NULL")
        .map_err(db_error)?
        .execute(params![ms(now), name])
        .map_err(db_error)?;
    if updated == 0 {
        return Err(StoreError::NotFound(format!("live token `{name}`")));
    }
    Ok(((), Notices::default()))
}
