//! Request extractors that fail with the SPEC's error JSON instead of axum's plain text.

use crate::error::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A JSON body: 415 without a JSON content type, 413 when too large, 400
/// `validation_failed` when malformed or of the wrong shape (unknown fields included).
/// Keeps the raw JSON too (for idempotency hashing).
#[derive(Debug)]
pub struct JsonBody<T> {
    /// The parsed body.
    pub value: T,
    /// The body as JSON.
    pub raw: Value,
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(raw) = axum::Json::<Value>::from_request(req, state)
            .await
            .map_err(json_rejection)?;
        check_depth(&raw)?;
        let value = serde_json::from_value(raw.clone())
            .map_err(|e| ApiError::invalid("body", e.to_string()))?;
        Ok(JsonBody { value, raw })
    }
}

/// Like [`JsonBody`], but an empty body (with or without content type), or JSON `null`, gives
/// `T::default()`: the document calls such a body optional and nullable.
#[derive(Debug)]
pub struct OptionalJsonBody<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let has_content_type = req.headers().contains_key(axum::http::header::CONTENT_TYPE);
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::invalid("body", e.body_text())
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        if !has_content_type {
            return Err(ApiError::UnsupportedMediaType);
        }
        let raw: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::invalid("body", format!("malformed JSON: {e}")))?;
        check_depth(&raw)?;
        serde_json::from_value::<Option<T>>(raw)
            .map(|body| OptionalJsonBody(body.unwrap_or_default()))
            .map_err(|e| ApiError::invalid("body", e.to_string()))
    }
}

/// Deepest nesting of arrays and objects a body may have. Real requests need a handful of
/// levels (customer attributes, signal payloads); deeper ones are refused before they reach
/// code that walks them recursively (hashing, canonical JSON, templates).
pub const MAX_JSON_DEPTH: usize = 32;

fn check_depth(body: &Value) -> Result<(), ApiError> {
    fn depth(v: &Value) -> usize {
        match v {
            Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
            Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    if depth(body) > MAX_JSON_DEPTH {
        return Err(ApiError::invalid(
            "body",
            format!("nested deeper than {MAX_JSON_DEPTH} levels"),
        ));
    }
    Ok(())
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::invalid("body", format!("malformed JSON: {}", e.body_text()))
        }
        JsonRejection::JsonDataError(e) => ApiError::invalid("body", e.body_text()),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        other => ApiError::invalid("body", other.body_text()),
    }
}

/// Path parameters: like axum's `Path`, but an undecodable one (e.g. `%FF`) is a 400
/// `validation_failed` with the error JSON.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|e| ApiError::invalid("path", e.body_text()))
    }
}

/// Query parameters: like axum's `Query`, but an undecodable query string is a 400
/// `validation_failed` with the error JSON.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|e| ApiError::invalid("query", e.body_text()))
    }
}
