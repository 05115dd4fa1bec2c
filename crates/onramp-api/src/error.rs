//! [`ApiError`]: every failure an API call can end in, rendered as the SPEC's error JSON
//! `{"error": {"code", "message", "details"}}`. This is the one place that maps failures to
//! HTTP status codes. Unexpected failures become a 500 with a generic message; their cause goes
//! to the log only.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use onramp_engine::EngineError;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

/// The body of every error response (SPEC §7).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "not_found", "message": "onboarding onb_0190f0a4c3d27a8e9b1c2d3e4f5a6b7c not found", "details": []}}))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// For programs, snake_case: `validation_failed`, `unknown_task`, `unknown_template`,
    /// `unauthenticated`, `forbidden`, `not_found`, `method_not_allowed`,
    /// `invalid_transition`, `conflict`, `payload_too_large`, `unsupported_media_type`,
    /// `idempotency_key_reused`, `unavailable`.
    #[schema(pattern = "^[a-z][a-z0-9_]*$")]
    pub code: &'static str,
    /// For people.
    pub message: String,
    /// For programs: e.g. `{"field", "message"}` per invalid field; empty when there is
    /// nothing more to say.
    pub details: Vec<Value>,
}

/// A failed API call.
#[derive(Debug)]
pub enum ApiError {
    /// 400 with a code and details.
    BadRequest {
        /// e.g. `validation_failed`, `unknown_task`.
        code: &'static str,
        /// For people.
        message: String,
        /// For programs.
        details: Vec<Value>,
    },
    /// 401: no or bad token.
    Unauthenticated,
    /// 403: the token's role may not do this.
    Forbidden(String),
    /// 404.
    NotFound(String),
    /// 405.
    MethodNotAllowed,
    /// 409 with a code.
    Conflict {
        /// `invalid_transition` or `conflict`.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// 413.
    PayloadTooLarge,
    /// 415.
    UnsupportedMediaType,
    /// 422: idempotency key reused with another body.
    IdempotencyKeyReused,
    /// 429: the token's rate limit is used up.
    TooManyRequests {
        /// When the next request will be accepted.
        retry_after: std::time::Duration,
    },
    /// 503.
    Unavailable(String),
    /// 500; the cause is logged, never shown.
    Internal(String),
}

impl ApiError {
    /// A 400 `validation_failed` about one field.
    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError::BadRequest {
            code: "validation_failed",
            details: vec![json!({"field": field, "message": message})],
            message: format!("{field}: {message}"),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Validation(errors) => ApiError::BadRequest {
                code: "validation_failed",
                message: errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
                details: errors
                    .iter()
                    .map(|e| json!({"field": e.field, "message": e.message}))
                    .collect(),
            },
            EngineError::UnknownTask(names) => ApiError::BadRequest {
                code: "unknown_task",
                message: format!("unknown task type(s): {}", names.join(", ")),
                details: names.iter().map(|n| json!({"task": n})).collect(),
            },
            EngineError::UnknownTemplate(name) => ApiError::BadRequest {
                code: "unknown_template",
                message: format!("unknown template `{name}`"),
                details: vec![json!({"template": name})],
            },
            EngineError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            EngineError::Forbidden(message) => ApiError::Forbidden(message),
            EngineError::InvalidTransition(message) => ApiError::Conflict {
                code: "invalid_transition",
                message,
            },
            EngineError::Conflict(message) => ApiError::Conflict {
                code: "conflict",
                message,
            },
            EngineError::IdempotencyKeyReused => ApiError::IdempotencyKeyReused,
            EngineError::Unavailable(m) => ApiError::Unavailable(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = match &self {
            // Whole seconds, rounded up: a client that waits as told is let through.
            ApiError::TooManyRequests { retry_after } => {
                retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)
            }
            _ => 1,
        };
        let (status, code, message, details) = match self {
            ApiError::BadRequest {
                code,
                message,
                details,
            } => (StatusCode::BAD_REQUEST, code, message, details),
            ApiError::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "a valid bearer token is required: Authorization: Bearer <token>".into(),
                vec![],
            ),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m, vec![]),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m, vec![]),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this method is not allowed on this path".into(),
                vec![],
            ),
            ApiError::Conflict { code, message } => (StatusCode::CONFLICT, code, message, vec![]),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the request body is larger than {} bytes",
                    crate::MAX_BODY_BYTES
                ),
                vec![],
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json".into(),
                vec![],
            ),
            ApiError::IdempotencyKeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was already used with a different request body".into(),
                vec![],
            ),
            ApiError::TooManyRequests { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("this token's rate limit is used up; try again in {retry_after} s"),
                vec![],
            ),
            ApiError::Unavailable(m) => {
                tracing::warn!(error = %m, "service unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the service is temporarily unavailable; try again".into(),
                    vec![],
                )
            }
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "an internal error occurred".into(),
                    vec![],
                )
            }
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message,
                details,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        response
    }
}

/// The result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
