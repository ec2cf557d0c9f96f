//! Opaque page tokens. Callers pass back what they were given; the format
//! (base64url of `<listing>1:<ms>:<id>`) is free to change behind them, and
//! a token of one listing is refused by another.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use uuid::Uuid;

use super::error::ApiError;
use crate::store::PageCursor;

/// Which listing a token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// `ListDeadLetters`.
    DeadLetters,
    /// `ListDeliveries`.
    Deliveries,
}

impl Listing {
    fn tag(self) -> &'static str {
        match self {
            Self::DeadLetters => "d1",
            Self::Deliveries => "l1",
        }
    }

    fn rpc(self) -> &'static str {
        match self {
            Self::DeadLetters => "ListDeadLetters",
            Self::Deliveries => "ListDeliveries",
        }
    }
}

/// Encodes the position after `cursor` in `listing`.
pub fn encode(listing: Listing, cursor: PageCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}:{}", listing.tag(), cursor.at_ms, cursor.id))
}

/// Decodes a token from a previous page of `listing`; an empty token is
/// the first page.
pub fn decode(listing: Listing, token: &str) -> Result<Option<PageCursor>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || {
        ApiError::invalid(
            "page_token",
            format!(
                "is not a token returned by {}; start again with an empty page_token",
                listing.rpc()
            ),
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.splitn(3, ':');
    let (Some(tag), Some(millis), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    if tag != listing.tag() {
        return Err(invalid());
    }
    Ok(Some(PageCursor {
        at_ms: millis.parse().map_err(|_| invalid())?,
        id: Uuid::parse_str(id).map_err(|_| invalid())?,
    }))
}

/// The token for the page after `page`, or empty when `page` was not full.
pub fn next<T>(
    listing: Listing,
    page: &[T],
    page_size: u32,
    cursor: impl Fn(&T) -> PageCursor,
) -> String {
    match page.last() {
        Some(last) if page.len() == page_size as usize => encode(listing, cursor(last)),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage_and_other_listings() {
        let cursor = PageCursor {
            at_ms: 1_795_000_000_123,
            id: Uuid::now_v7(),
        };
        let token = encode(Listing::DeadLetters, cursor);
        assert_eq!(decode(Listing::DeadLetters, &token).unwrap(), Some(cursor));
        assert!(decode(Listing::Deliveries, &token).is_err());
        assert_eq!(decode(Listing::Deliveries, "").unwrap(), None);
        for bad in ["%%%", "djE6eDp5", &URL_SAFE_NO_PAD.encode("d2:1:x")] {
            assert!(decode(Listing::DeadLetters, bad).is_err(), "{bad}");
        }
    }
}
