//! Engine errors: what went wrong in a use case, in terms the API can map to a status.

use onramp_core::customer::FieldError;
use onramp_store::StoreError;

/// Why a command failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The request is malformed; every problem is listed.
    #[error("the request is invalid")]
    Validation(Vec<FieldError>),
    /// A task type that the configuration does not declare.
    #[error("unknown task type(s): {}", .0.join(", "))]
    UnknownTask(Vec<String>),
    /// A template that does not exist.
    #[error("unknown template `{0}`")]
    UnknownTemplate(String),
    /// The caller may not act on this (e.g. a CSR on another CSR's task).
    #[error("{0}")]
    Forbidden(String),
    /// The thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The state machine refuses.
    #[error("{0}")]
    InvalidTransition(String),
    /// A conflicting concurrent change or a taken name.
    #[error("{0}")]
    Conflict(String),
    /// Idempotency key reused with a different request.
    #[error("the idempotency key was already used with a different request")]
    IdempotencyKeyReused,
    /// The database is unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else (details go to the log, not to callers).
    #[error("{0}")]
    Internal(String),
}

impl EngineError {
    /// A single validation error.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        EngineError::Validation(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => EngineError::NotFound(what),
            StoreError::InvalidTransition(m) => EngineError::InvalidTransition(m),
            StoreError::Conflict(m) => EngineError::Conflict(m),
            StoreError::IdempotencyKeyReused => EngineError::IdempotencyKeyReused,
            StoreError::Unavailable(m) => EngineError::Unavailable(m),
            other => EngineError::Internal(other.to_string()),
        }
    }
}
