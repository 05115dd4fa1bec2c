//! `GET /v1/audit`: the audit chain of administrative actions (tokens, templates, CSRs, stages,
//! webhooks), oldest first, for admins. Onboardings' own chains are at
//! `/v1/onboardings/{id}/audit`.

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::Query;
use crate::openapi::{BadRequest, Forbidden, Unauthenticated, Unavailable};
use crate::pagination::{PageParams, encode_cursor};
use crate::views::{AuditEntry, Page};
use axum::Json;
use axum::extract::State;
use onramp_core::auth::Permission;

/// A page of the chain; the cursor continues after the last entry shown.
#[utoipa::path(
    get,
    path = "/audit",
    operation_id = "list_admin_audit",
    tag = "operations",
    params(PageParams),
    responses(
        (status = 200, description = "Administrative actions in order: `token.created`, \
            `token.revoked`, `template.changed`, `csr.created`, `csr.changed`, `csr.deleted`, \
            `stage.paused`, `stage.resumed`, `webhook.created`, `webhook.deleted`", body = Page<AuditEntry>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
pub async fn admin_audit(
    State(state): State<AppState>,
    caller: Caller,
    Query(paging): Query<PageParams>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    caller.require(Permission::Administer)?;
    let page = paging.request::<u64>()?;
    let mut entries = state
        .engine
        .admin_audit(page.cursor.unwrap_or(0), page.limit + 1)
        .await?;
    let more = entries.len() > page.limit;
    entries.truncate(page.limit);
    let next = more
        .then(|| entries.last().map(|e| encode_cursor(&e.seq)))
        .flatten();
    Ok(Json(Page::of(&entries, next)))
}
