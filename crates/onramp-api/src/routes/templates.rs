//! `/v1/templates`: list, get (latest or `?version=`), PUT a new version.

use super::parse_id;
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path, Query};
use crate::views;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use onramp_core::TemplateName;
use onramp_core::auth::Permission;
use onramp_engine::EngineError;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

/// `GET /v1/templates`: the latest version of each.
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(Permission::ReadOnboardings)?;
    let templates = state
        .engine
        .store
        .list_templates()
        .await
        .map_err(EngineError::from)?;
    Ok(Json(views::page(
        templates.iter().map(views::template).collect(),
        None,
    )))
}

/// `GET /v1/templates/{name}?version=`.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ReadOnboardings)?;
    let name: TemplateName = parse_id(&name, "template")?;
    let version = q
        .get("version")
        .map(|v| {
            v.parse::<u32>()
                .map_err(|_| ApiError::invalid("version", "must be a positive whole number"))
        })
        .transpose()?;
    let store = &state.engine.store;
    let t = store
        .get_template(&name, version)
        .await
        .map_err(EngineError::from)?;
    let versions: Vec<u32> = store
        .template_versions(&name)
        .await
        .map_err(EngineError::from)?
        .iter()
        .map(|t| t.version)
        .collect();
    let mut v = views::template(&t);
    v["versions"] = versions.into();
    Ok(Json(v))
}

/// The body of a template PUT.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutTemplate {
    tasks: Vec<String>,
    /// `hold` (default) or `compensate`.
    #[serde(default)]
    on_failure: Option<String>,
}

/// `PUT /v1/templates/{name}`: a new version; running onboardings keep theirs.
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: JsonBody<PutTemplate>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(Permission::Administer)?;
    let body = body.value;
    let t = state
        .engine
        .put_template(
            &name,
            &body.tasks,
            body.on_failure.as_deref(),
            &caller.actor(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(views::template(&t))))
}
