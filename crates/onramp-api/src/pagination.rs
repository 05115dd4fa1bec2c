//! `?limit=` and `?cursor=` (SPEC §7): limit defaults to 50, at most 500; the cursor is
//! opaque to clients (base64url of the last item's id).

use crate::error::ApiError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use onramp_store::PageRequest;
use serde::Deserialize;
use std::str::FromStr;
use utoipa::IntoParams;

/// Default page size.
pub const DEFAULT_LIMIT: usize = 50;
/// Largest page size.
pub const MAX_LIMIT: usize = 500;

/// The paging parameters of a list. Both stay text until [`PageParams::request`], so a bad
/// value gets our own message rather than the query decoder's.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page, 1 to 500 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

impl PageParams {
    /// The store's page request.
    pub fn request<C: FromStr>(&self) -> Result<PageRequest<C>, ApiError> {
        let limit = match &self.limit {
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
        let cursor =
            match self.cursor.as_deref().filter(|c| !c.is_empty()) {
                None => None,
                Some(c) => Some(decode_cursor(c).ok_or_else(|| {
                    ApiError::invalid("cursor", "is not a cursor this API returned")
                })?),
            };
        Ok(PageRequest { limit, cursor })
    }
}

fn decode_cursor<C: FromStr>(c: &str) -> Option<C> {
    let bytes = URL_SAFE_NO_PAD.decode(c).ok()?;
    String::from_utf8(bytes).ok()?.parse().ok()
}

/// Encodes a cursor.
pub fn encode_cursor(id: &impl std::fmt::Display) -> String {
    URL_SAFE_NO_PAD.encode(id.to_string())
}
