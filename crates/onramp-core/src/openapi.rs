//! OpenAPI schemas of the domain types the HTTP API shows (feature `openapi`).
//!
//! The derives sit on the types themselves (status enums, [`crate::customer::Customer`]), so
//! the documented values are the ones serde writes and reads. Ids and names have hand-written
//! schemas: they (de)serialize as strings through their parsers, and their patterns here say
//! what those parsers accept.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// What [`crate::names`] accepts: 1-64 ASCII letters, digits, `_` and `-`.
pub const NAME_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

/// A string schema with a pattern and a description.
pub fn pattern_string(pattern: &str, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .description(Some(description))
        .into()
}
