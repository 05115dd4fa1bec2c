//! `/v1/templates`: list, get (latest or `?version=`), PUT a new version.

use super::parse_id;
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path, Query};
use crate::openapi::{
    BadRequest, Forbidden, NotFound, PayloadTooLarge, Unauthenticated, Unavailable,
    UnsupportedMediaType,
};
use crate::views::{Page, Template, TemplateDetail};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use onramp_core::TemplateName;
use onramp_core::auth::Permission;
use onramp_core::onboarding::FailurePolicy;
use onramp_engine::EngineError;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

/// `GET /v1/templates`: the latest version of each.
#[utoipa::path(
    get,
    path = "/templates",
    operation_id = "list_templates",
    tag = "templates",
    responses(
        (status = 200, description = "The latest version of every template, in one page", body = Page<Template>),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Page<Template>>> {
    caller.require(Permission::ReadOnboardings)?;
    let templates = state
        .engine
        .store
        .list_templates()
        .await
        .map_err(EngineError::from)?;
    Ok(Json(Page::of(&templates, None)))
}

/// Which version of a template.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TemplateVersionParams {
    /// The version (default: the latest).
    #[param(value_type = Option<u32>, minimum = 1)]
    version: Option<String>,
}

/// `GET /v1/templates/{name}?version=`.
#[utoipa::path(
    get,
    path = "/templates/{name}",
    operation_id = "get_template",
    tag = "templates",
    params(("name" = TemplateName, Path, description = "The template"), TemplateVersionParams),
    responses(
        (status = 200, description = "The version asked for, and the numbers of all", body = TemplateDetail),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<TemplateVersionParams>,
) -> ApiResult<Json<TemplateDetail>> {
    caller.require(Permission::ReadOnboardings)?;
    let name: TemplateName = parse_id(&name, "template")?;
    let version = q
        .version
        .as_ref()
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
    Ok(Json(TemplateDetail {
        template: Template::from(&t),
        versions,
    }))
}

/// The body of a template PUT.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({
    "tasks": ["verify_identity", "create_crm_account", "send_welcome_email"],
    "on_failure": "hold",
}))]
#[serde(deny_unknown_fields)]
pub struct PutTemplate {
    /// The task types, in order; at least one.
    #[schema(value_type = Vec<onramp_core::TaskTypeName>, min_items = 1)]
    tasks: Vec<String>,
    /// `hold` (default) or `compensate`.
    #[serde(default)]
    #[schema(value_type = Option<FailurePolicy>)]
    on_failure: Option<String>,
}

/// `PUT /v1/templates/{name}`: a new version; running onboardings keep theirs.
#[utoipa::path(
    put,
    path = "/templates/{name}",
    operation_id = "put_template",
    tag = "templates",
    params(("name" = TemplateName, Path, description = "The template")),
    request_body = PutTemplate,
    responses(
        (status = 201, description = "The new version", body = Template,
            links(
                ("get" = (operation_id = "get_template", parameters(("name" = "$response.body#/name")))),
            )),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: JsonBody<PutTemplate>,
) -> ApiResult<(StatusCode, Json<Template>)> {
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
    Ok((StatusCode::CREATED, Json(Template::from(&t))))
}
