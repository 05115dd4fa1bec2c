//! Store errors.

use onramp_core::plan::PlanError;

/// What can go wrong in a store.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The state machines refuse the change.
    #[error("{0}")]
    InvalidTransition(String),
    /// The row changed under us (lease lost, status moved on, name taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The idempotency key was used before with a different request.
    #[error("the idempotency key was already used with a different request")]
    IdempotencyKeyReused,
    /// The database is unreachable or busy.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database holds something it should not (bad enum value, broken JSON).
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// Anything else.
    #[error("store error: {0}")]
    Internal(String),
}

/// A store result.
pub type StoreResult<T> = Result<T, StoreError>;

impl From<PlanError> for StoreError {
    fn from(e: PlanError) -> Self {
        StoreError::InvalidTransition(e.to_string())
    }
}
