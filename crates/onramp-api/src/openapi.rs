//! The OpenAPI 3.1 document, served at `GET /openapi.json` (SPEC §7).
//!
//! Operations come from the handlers' `#[utoipa::path]` attributes as
//! [`crate::routes::routes`] registers them; schemas from the types the handlers read and
//! write ([`crate::views`], the engine's request bodies, [`crate::error::ErrorBody`]). This
//! module adds what belongs to the whole API: its description, the bearer security scheme
//! (required on everything under `/v1`, declared once at the top level), the error responses
//! operations refer to by name.

use crate::error::ErrorBody;
use axum::Extension;
use axum::http::header;
use axum::response::IntoResponse;
use onramp_core::{
    CsrId, DeadLetterId, DeliveryId, EventId, OnboardingId, ServiceName, SignalName, StageName,
    StepId, TaskId, TaskTypeName, TemplateName, WebhookId,
};
use std::sync::Arc;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, ObjectBuilder, OpenApi, RefOr, Type};
use utoipa::{Modify, OpenApi as _, ToResponse, ToSchema};

/// The name of the bearer security scheme (also spelled out in `security(...)` below, which
/// takes a literal).
pub const BEARER: &str = "bearer";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "onramp",
        description = "A durable customer-onboarding pipeline. Everything under `/v1` needs \
            `Authorization: Bearer <token>`; what a token may do depends on its role (`admin`, \
            `operator`, `csr`, `viewer`, `service`). Every error is \
            `{\"error\": {\"code\", \"message\", \"details\"}}`. Lists take `?limit=` (1-500, \
            default 50) and `?cursor=` and answer `{\"items\": [...], \"next_cursor\"}`.",
        license(name = "Apache-2.0"),
    ),
    security(("bearer" = [])),
    components(
        // Ids and names are listed because path parameters refer to them by name, and only
        // bodies register the schemas they use.
        schemas(
            ErrorBody,
            OnboardingId,
            StepId,
            TaskId,
            CsrId,
            DeadLetterId,
            WebhookId,
            EventId,
            DeliveryId,
            StageName,
            TaskTypeName,
            TemplateName,
            ServiceName,
            SignalName
        ),
        responses(
            BadRequest,
            Unauthenticated,
            Forbidden,
            NotFound,
            Conflict,
            PayloadTooLarge,
            UnsupportedMediaType,
            IdempotencyKeyReused,
            RateLimited,
            Unavailable
        )
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "onboardings", description = "Customers' runs through their steps"),
        (name = "people", description = "CSRs, their human tasks, and signals"),
        (name = "operations", description = "Stages, services and dead letters"),
        (name = "templates", description = "Named, versioned task lists"),
        (name = "events", description = "Live event streams and webhooks"),
        (name = "meta", description = "Health, readiness, metrics and this document"),
    )
)]
struct ApiDoc;

/// The document without operations: the routes add theirs.
pub fn base() -> OpenApi {
    ApiDoc::openapi()
}

/// The whole document, as `GET /openapi.json` serves it.
pub fn document_json(doc: &OpenApi) -> Arc<str> {
    // A document built from our own types always serializes; `{}` would fail every client
    // loudly rather than take the server down.
    let mut json = serde_json::to_value(doc).unwrap_or_else(|_| serde_json::json!({}));
    camel_case_links(&mut json);
    rate_limited_under_v1(&mut json);
    Arc::from(json.to_string())
}

/// Every `/v1` operation may be answered 429 (the per-token rate limit is checked with the
/// token, before any handler runs), so the response is added to each here rather than
/// repeated in every route's attribute.
fn rate_limited_under_v1(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    let responses = paths
        .iter_mut()
        .filter(|(path, _)| path.starts_with("/v1/"))
        .filter_map(|(_, item)| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses")?.as_object_mut());
    for responses in responses {
        responses.insert(
            "429".into(),
            serde_json::json!({"$ref": "#/components/responses/RateLimited"}),
        );
    }
}

/// utoipa 5 writes the fields of a response's link object in snake_case (`operation_id`);
/// OpenAPI spells them `operationId`, `operationRef` and `requestBody`, and clients that
/// follow links (schemathesis' stateful tests among them) find nothing under the other names.
fn camel_case_links(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    let links = paths
        .values_mut()
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses")?.as_object_mut())
        .flat_map(|responses| responses.values_mut())
        .filter_map(|response| response.get_mut("links")?.as_object_mut())
        .flat_map(|links| links.values_mut())
        .filter_map(|link| link.as_object_mut());
    for link in links {
        for (snake, camel) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(value) = link.remove(snake) {
                link.insert(camel.into(), value);
            }
        }
    }
}

/// The serialized document, shared by every request.
#[derive(Debug, Clone)]
pub struct Document(pub Arc<str>);

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    operation_id = "openapi",
    security(()),
    responses(
        (status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json", body = Object),
    )
)]
pub async fn document(Extension(doc): Extension<Document>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.to_string(),
    )
}

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

fn error_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                ErrorBody::name(),
            ))))
            .build(),
    )
}

fn header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(description))
        .build()
}

/// Declares the reusable error responses: one unit struct each, named like the component.
macro_rules! error_responses {
    ($($(#[$doc:meta])* $name:ident => $description:literal $(, $extra:expr)?;)*) => {
        $(
            $(#[$doc])*
            pub struct $name;

            impl<'r> ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<Response>) {
                    let builder = error_response($description);
                    $(let builder = $extra(builder);)?
                    (stringify!($name), builder.build().into())
                }
            }
        )*
    };
}

error_responses! {
    /// 400.
    BadRequest => "The request is invalid: `validation_failed` (details name each field), \
        `unknown_task` or `unknown_template`";
    /// 401.
    Unauthenticated => "`unauthenticated`: no bearer token, or not a live one",
        |b: ResponseBuilder| b.header(
            "WWW-Authenticate",
            header("`Bearer`: the scheme to authenticate with"),
        );
    /// 403.
    Forbidden => "`forbidden`: the token's role may not do this";
    /// 404.
    NotFound => "`not_found`: no such resource (an id of the wrong shape is not found either)";
    /// 409.
    Conflict => "`invalid_transition` (the state machine refuses the change) or `conflict`";
    /// 413.
    PayloadTooLarge => "`payload_too_large`: the body is over 1 MiB";
    /// 415.
    UnsupportedMediaType => "`unsupported_media_type`: send the body as `application/json`";
    /// 422.
    IdempotencyKeyReused => "`idempotency_key_reused`: the `Idempotency-Key` came before \
        with another body";
    /// 429.
    RateLimited => "`rate_limited`: this token's request budget (`[server] rate_limit`) is \
        spent; try again after `Retry-After` seconds",
        |b: ResponseBuilder| b.header(
            "Retry-After",
            header("Whole seconds until the token may send another request"),
        );
    /// 503.
    Unavailable => "`unavailable`: the database cannot be reached; try again",
        |b: ResponseBuilder| b.header(
            "Retry-After",
            header("Seconds to wait before trying again"),
        );
}
