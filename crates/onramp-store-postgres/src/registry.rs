//! Stage pause flags, template versions and API tokens.

use crate::db_error;
use crate::rows::*;
use crate::store::Notices;
use onramp_core::time::Millis;
use onramp_core::{StageName, TemplateName};
use onramp_store::*;
use sqlx::PgConnection;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use std::collections::BTreeMap;

/// The first key of the advisory locks that serialise template versioning (the second is the
/// template name's hash); any fixed number distinct from the migration lock.
const TEMPLATE_LOCK_CLASS: i32 = 0x746d_706c;

/// Queue counts per stage.
pub async fn stage_counts(conn: &mut PgConnection) -> StoreResult<Vec<StageCounts>> {
    let mut by_stage: BTreeMap<StageName, StageCounts> = BTreeMap::new();
    let blank = |stage: &StageName| StageCounts {
        stage: stage.clone(),
        queued: 0,
        running: 0,
        retrying: 0,
        dead: 0,
        paused: false,
    };
    let rows = sqlx::query(
        "SELECT stage, status, count(*) AS n FROM steps
         WHERE status IN ('queued', 'running', 'retrying', 'compensating')
             GROUP BY stage, status",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    for row in &rows {
        let stage: StageName = parsed(row, "stage")?;
        let status: &str = column(row, "status")?;
        let n = big_count(row, "n")?;
        let counts = by_stage
            .entry(stage.clone())
            .or_insert_with(|| blank(&stage));
        match status {
            "queued" => counts.queued = n,
            "running" => counts.running = n,
            "retrying" => counts.retrying = n,
            // Read only so the query's filter matches the partial index `steps_open`.
            _ => {}
        }
    }
    let dead = sqlx::query(
        "SELECT stage, count(*) AS n FROM dead_letters WHERE resolved_at IS NULL GROUP BY stage",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    for row in &dead {
        let stage: StageName = parsed(row, "stage")?;
        by_stage
            .entry(stage.clone())
            .or_insert_with(|| blank(&stage))
            .dead = big_count(row, "n")?;
    }
    for stage in paused_stages(conn).await? {
        by_stage
            .entry(stage.clone())
            .or_insert_with(|| blank(&stage))
            .paused = true;
    }
    Ok(by_stage.into_values().collect())
}

/// Pauses or resumes a stage.
pub async fn set_stage_paused(
    conn: &mut PgConnection,
    stage: &StageName,
    paused: bool,
    now: Millis,
) -> StoreResult<Notices> {
    sqlx::query(
        "INSERT INTO stages (name, paused, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at",
    )
    .bind(stage.as_str())
    .bind(paused)
    .bind(now.0)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    let mut notices = Notices::default();
    if !paused {
        notices.wake.push(stage.clone());
    }
    Ok(notices)
}

/// The paused stages.
pub async fn paused_stages(conn: &mut PgConnection) -> StoreResult<Vec<StageName>> {
    sqlx::query("SELECT name FROM stages WHERE paused ORDER BY name")
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?
        .iter()
        .map(|r| parsed(r, "name"))
        .collect()
}

fn template_from_row(r: &PgRow) -> StoreResult<TemplateRecord> {
    Ok(TemplateRecord {
        name: parsed(r, "name")?,
        version: count(r, "version")?,
        tasks: json(r, "tasks")?,
        on_failure: parsed(r, "on_failure")?,
        created_at: millis(r, "created_at")?,
    })
}

/// Stores a new template version; with `only_if_changed`, returns the latest version
/// unchanged when it already says the same.
///
/// An advisory lock on the name makes concurrent puts of one template take turns, so each
/// gets the next version number instead of colliding on it.
pub async fn put_template(
    conn: &mut PgConnection,
    name: &TemplateName,
    spec: &TemplateSpec,
    now: Millis,
    only_if_changed: bool,
    actor: &str,
) -> StoreResult<TemplateRecord> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(TEMPLATE_LOCK_CLASS)
        .bind(name.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    let latest = latest_template(conn, name).await?;
    if only_if_changed
        && let Some(latest) = &latest
        && latest.says(spec)
    {
        return Ok(latest.clone());
    }
    let version = latest.map_or(1, |t| t.version + 1);
    sqlx::query(
        "INSERT INTO templates (name, version, tasks, on_failure, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(name.as_str())
    .bind(int(version)?)
    .bind(Json(&spec.tasks))
    .bind(spec.on_failure.as_str())
    .bind(now.0)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    let record = TemplateRecord {
        name: name.clone(),
        version,
        tasks: spec.tasks.clone(),
        on_failure: spec.on_failure,
        created_at: now,
    };
    crate::admin_audit::append(conn, onramp_store::admin::template_changed(&record, actor)).await?;
    Ok(record)
}

async fn latest_template(
    conn: &mut PgConnection,
    name: &TemplateName,
) -> StoreResult<Option<TemplateRecord>> {
    sqlx::query(
        "SELECT name, version, tasks, on_failure, created_at FROM templates WHERE name = $1
         ORDER BY version DESC LIMIT 1",
    )
    .bind(name.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?
    .as_ref()
    .map(template_from_row)
    .transpose()
}

/// A template version, the latest by default.
pub async fn get_template(
    conn: &mut PgConnection,
    name: &TemplateName,
    version: Option<u32>,
) -> StoreResult<TemplateRecord> {
    let found = match version {
        None => latest_template(conn, name).await?,
        Some(v) => sqlx::query(
            "SELECT name, version, tasks, on_failure, created_at FROM templates WHERE name = $1 AND version = $2",
        )
        .bind(name.as_str())
        .bind(int(v)?)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(template_from_row)
        .transpose()?,
    };
    found.ok_or_else(|| match version {
        Some(v) => StoreError::NotFound(format!("template {name} version {v}")),
        None => StoreError::NotFound(format!("template {name}")),
    })
}

/// All versions of a template.
pub async fn template_versions(
    conn: &mut PgConnection,
    name: &TemplateName,
) -> StoreResult<Vec<TemplateRecord>> {
    let versions: Vec<TemplateRecord> = sqlx::query(
        "SELECT name, version, tasks, on_failure, created_at FROM templates WHERE name = $1 ORDER BY version",
    )
    .bind(name.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?
    .iter()
    .map(template_from_row)
    .collect::<StoreResult<_>>()?;
    if versions.is_empty() {
        return Err(StoreError::NotFound(format!("template {name}")));
    }
    Ok(versions)
}

/// The latest version of every template.
pub async fn list_templates(conn: &mut PgConnection) -> StoreResult<Vec<TemplateRecord>> {
    sqlx::query(
        "SELECT DISTINCT ON (name) name, version, tasks, on_failure, created_at FROM templates
         ORDER BY name, version DESC",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?
    .iter()
    .map(template_from_row)
    .collect()
}

fn token_from_row(r: &PgRow) -> StoreResult<TokenRecord> {
    Ok(TokenRecord {
        name: column(r, "name")?,
        role: parsed(r, "role")?,
        csr: opt_parsed(r, "csr_id")?,
        created_at: millis(r, "created_at")?,
        revoked_at: opt_millis(r, "revoked_at")?,
    })
}

/// Stores a token; a taken name is a conflict.
pub async fn create_token(conn: &mut PgConnection, t: NewToken) -> StoreResult<TokenRecord> {
    let inserted = sqlx::query(
        "INSERT INTO tokens (name, role, hash, csr_id, created_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(&t.name)
    .bind(t.role.as_str())
    .bind(&t.hash)
    .bind(t.csr.as_ref().map(|c| c.as_str()))
    .bind(t.now.0)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?
    .rows_affected();
    if inserted == 0 {
        return Err(StoreError::Conflict(format!(
            "a token named `{}` already exists",
            t.name
        )));
    }
    Ok(TokenRecord {
        name: t.name,
        role: t.role,
        csr: t.csr,
        created_at: t.now,
        revoked_at: None,
    })
}

/// The live token with this hash.
pub async fn token_by_hash(
    conn: &mut PgConnection,
    hash: &str,
) -> StoreResult<Option<TokenRecord>> {
    sqlx::query(
        "SELECT name, role, csr_id, created_at, revoked_at FROM tokens
         WHERE hash = $1 AND revoked_at IS NULL",
    )
    .bind(hash)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?
    .as_ref()
    .map(token_from_row)
    .transpose()
}

/// Every token.
pub async fn list_tokens(conn: &mut PgConnection) -> StoreResult<Vec<TokenRecord>> {
    sqlx::query("SELECT name, role, csr_id, created_at, revoked_at FROM tokens ORDER BY name")
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?
        .iter()
        .map(token_from_row)
        .collect()
}

/// Revokes a token by name.
pub async fn revoke_token(conn: &mut PgConnection, name: &str, now: Millis) -> StoreResult<()> {
    let updated =
        sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
            .bind(now.0)
            .bind(name)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?
            .rows_affected();
    if updated == 0 {
        return Err(StoreError::NotFound(format!("live token `{name}`")));
    }
    Ok(())
}
