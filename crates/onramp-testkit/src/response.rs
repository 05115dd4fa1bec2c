//! [`ApiResponse`]: an HTTP response read in full, with assertions that show the request and
//! the body when they fail.

use reqwest::header::HeaderMap;
use serde_json::Value;
use std::fmt;

/// A response, body included.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// What was asked, e.g. `POST /v1/onboardings`.
    pub request: String,
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as text.
    pub text: String,
    /// The body as JSON (`Null` when empty or not JSON).
    pub body: Value,
}

impl ApiResponse {
    /// Sends `request` with `client` and reads the whole response. Panics when no response
    /// arrives at all (connection refused, reset).
    pub async fn send(client: &reqwest::Client, request: reqwest::RequestBuilder) -> ApiResponse {
        let request = request.build().expect("a well-formed request");
        let described = format!("{} {}", request.method(), path_of(request.url()));
        let response = client
            .execute(request)
            .await
            .unwrap_or_else(|e| panic!("{described}: no response: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("{described}: could not read the body: {e}"));
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        ApiResponse {
            request: described,
            status,
            headers,
            text,
            body,
        }
    }

    /// A header's value, if present and readable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `error.code` of a SPEC error body.
    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }

    /// Panics unless the status is `status`.
    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "unexpected status: {self}");
        self
    }

    /// Panics unless this is the SPEC's error JSON with `status` and `code`:
    /// `{"error": {"code", "message", "details": [...]}}` with a non-empty message.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> &Self {
        self.assert_status(status);
        let error = &self.body["error"];
        assert_eq!(error["code"], code, "unexpected error code: {self}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error without a message: {self}"
        );
        assert!(error["details"].is_array(), "error without details: {self}");
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "error is not JSON ({content_type}): {self}"
        );
        self
    }
}

impl fmt::Display for ApiResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.text.clone();
        if text.len() > 2000 {
            let mut cut = 2000;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        write!(f, "{} -> {} {}", self.request, self.status, text)
    }
}

fn path_of(url: &reqwest::Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}
