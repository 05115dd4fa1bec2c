//! `?limit=` and `?cursor=` (SPEC §7): limit defaults to 50, at most 500; the cursor is
//! opaque to clients (base64url of the last item's id).

use crate::error::ApiError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use onramp_store::PageRequest;
use std::collections::HashMap;
use std::str::FromStr;

/// Default page size.
pub const DEFAULT_LIMIT: usize = 50;
/// Largest page size.
pub const MAX_LIMIT: usize = 500;

/// Reads `limit` and `cursor` from query parameters.
pub fn page_request<C: FromStr>(q: &HashMap<String, String>) -> Result<PageRequest<C>, ApiError> {
    let limit = match q.get("limit") {
        None => DEFAULT_LIMIT,
        Some(s) => match s.parse::<usize>() {
            Ok(n @ 1..=MAX_LIMIT) => n,
            _ => {
                return Err(ApiError::invalid(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIMIT}"),
                ));
            }
        },
    };
    let cursor = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            decode_cursor(c)
                .ok_or_else(|| ApiError::invalid("cursor", "is not a cursor this API returned"))?,
        ),
    };
    Ok(PageRequest { limit, cursor })
}

fn decode_cursor<C: FromStr>(c: &str) -> Option<C> {
    let bytes = URL_SAFE_NO_PAD.decode(c).ok()?;
    String::from_utf8(bytes).ok()?.parse().ok()
}

/// Encodes a cursor.
pub fn encode_cursor(id: &impl std::fmt::Display) -> String {
    URL_SAFE_NO_PAD.encode(id.to_string())
}
