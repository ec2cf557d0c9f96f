//! Opaque page tokens. Callers pass back what they were given; the format
//! (base64url of `<listing tag>:<position>`, the position `<ms>:<id>` for
//! deliveries and a destination's name for destinations) is free to change
//! behind them, and a token of one listing is refused by another.

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
    /// `ListDestinations`.
    Destinations,
}

impl Listing {
    fn tag(self) -> &'static str {
        match self {
            Self::DeadLetters => "d1",
            Self::Deliveries => "l1",
            Self::Destinations => "n1",
        }
    }

    fn rpc(self) -> &'static str {
        match self {
            Self::DeadLetters => "ListDeadLetters",
            Self::Deliveries => "ListDeliveries",
            Self::Destinations => "ListDestinations",
        }
    }
}

/// Where a page starts, as a token holds it.
pub trait Position: Sized {
    /// The position as text.
    fn to_text(&self) -> String;
    /// The position from its text; `None` if it is not one.
    fn from_text(text: &str) -> Option<Self>;
}

/// Deliveries: `<ms>:<id>`.
impl Position for PageCursor {
    fn to_text(&self) -> String {
        format!("{}:{}", self.at_ms, self.id)
    }

    fn from_text(text: &str) -> Option<Self> {
        let (millis, id) = text.split_once(':')?;
        Some(Self {
            at_ms: millis.parse().ok()?,
            id: Uuid::parse_str(id).ok()?,
        })
    }
}

/// Destinations: the name of the last one.
impl Position for String {
    fn to_text(&self) -> String {
        self.clone()
    }

    fn from_text(text: &str) -> Option<Self> {
        Some(text.to_owned())
    }
}

/// Encodes the position after `cursor` in `listing`.
pub fn encode(listing: Listing, cursor: &impl Position) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", listing.tag(), cursor.to_text()))
}

/// Decodes a token from a previous page of `listing`; an empty token is
/// the first page.
pub fn decode<P: Position>(listing: Listing, token: &str) -> Result<Option<P>, ApiError> {
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
    let (tag, position) = text.split_once(':').ok_or_else(invalid)?;
    if tag != listing.tag() {
        return Err(invalid());
    }
    P::from_text(position).map(Some).ok_or_else(invalid)
}

/// The token for the page after `page`, or empty when `page` was not full.
pub fn next<T, P: Position>(
    listing: Listing,
    page: &[T],
    page_size: u32,
    cursor: impl Fn(&T) -> P,
) -> String {
    match page.last() {
        Some(last) if page.len() == page_size as usize => encode(listing, &cursor(last)),
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
        let token = encode(Listing::DeadLetters, &cursor);
        assert_eq!(decode(Listing::DeadLetters, &token).unwrap(), Some(cursor));
        assert!(decode::<PageCursor>(Listing::Deliveries, &token).is_err());
        assert_eq!(decode::<PageCursor>(Listing::Deliveries, "").unwrap(), None);
        for bad in ["%%%", "djE6eDp5", &URL_SAFE_NO_PAD.encode("d2:1:x")] {
            assert!(
                decode::<PageCursor>(Listing::DeadLetters, bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn destination_tokens_hold_a_name() {
        let last = "https://api.example.com:443".to_owned();
        let token = encode(Listing::Destinations, &last);
        assert_eq!(decode(Listing::Destinations, &token).unwrap(), Some(last));
        assert!(decode::<PageCursor>(Listing::Deliveries, &token).is_err());
    }
}
