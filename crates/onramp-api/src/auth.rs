//! Bearer-token authentication and role checks.
//!
//! [`Caller`] is an extractor: a handler that takes one only runs for a live token (else 401);
//! [`Caller::require`] then checks the role (else 403). Tokens are looked up by their SHA-256,
//! so the secret is never compared byte by byte, and never logged. A live token then takes one
//! request from its rate limit (else 429).

use crate::AppState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use onramp_core::auth::Permission;
use onramp_engine::commands::actor_for;
use onramp_store::TokenRecord;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Their token.
    pub token: TokenRecord,
}

impl Caller {
    /// 403 unless the caller's role allows `p`.
    pub fn require(&self, p: Permission) -> Result<(), ApiError> {
        if self.token.role.allows(p) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "the {} role may not do this",
                self.token.role
            )))
        }
    }

    /// The actor recorded in audit entries.
    pub fn actor(&self) -> String {
        actor_for(&self.token.name)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let secret = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or(ApiError::Unauthenticated)?;
        let token = state
            .engine
            .authenticate(secret)
            .await?
            .ok_or(ApiError::Unauthenticated)?;
        state
            .limits
            .take(&token.name)
            .map_err(|retry_after| ApiError::TooManyRequests { retry_after })?;
        Ok(Caller { token })
    }
}
