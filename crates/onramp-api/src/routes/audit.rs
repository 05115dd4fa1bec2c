//! `GET /v1/audit`: the audit chain of administrative actions (tokens, templates, CSRs, stages,
//! webhooks), oldest first, for admins. Onboardings' own chains are at
//! `/v1/onboardings/{id}/audit`.

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::Query;
use crate::pagination::{encode_cursor, page_request};
use crate::{AppState, views};
use axum::Json;
use axum::extract::State;
use onramp_core::auth::Permission;
use serde_json::Value;
use std::collections::HashMap;

/// A page of the chain; the cursor continues after the last entry shown.
pub async fn admin_audit(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::Administer)?;
    let page = page_request::<u64>(&query)?;
    let mut entries = state
        .engine
        .admin_audit(page.cursor.unwrap_or(0), page.limit + 1)
        .await?;
    let more = entries.len() > page.limit;
    entries.truncate(page.limit);
    let next = more
        .then(|| entries.last().map(|e| encode_cursor(&e.seq)))
        .flatten();
    Ok(Json(views::page(
        entries.iter().map(views::audit_entry).collect(),
        next,
    )))
}
