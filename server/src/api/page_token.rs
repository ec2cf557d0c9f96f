//! Opaque page tokens. Callers pass back what they were given; the format
//! (base64url of `<listing tag>:<check>:<position>`, the position `<ms>:<id>`
//! for deliveries, events and audit events, an id for endpoints, and a
//! name for destinations and event types) is free to change behind them, and a token of one listing is refused by another.
//!
//! A token is bound to the filters of the listing that returned it (AIP-158):
//! `<check>` is a SHA-256 digest, cut to 128 bits, of the listing, its
//! filters and the position. A token passed with other filters, or altered
//! in any byte, no longer matches its check and is refused with
//! INVALID_ARGUMENT, instead of quietly paging through another selection
//! from a position that belongs to none. The check is a digest, not a keyed
//! MAC: what it must catch is a changed filter, a hand-edited or truncated
//! token, not a forger, since a token only names a position in the
//! caller's own listing (the tenant comes from the API key, never from the
//! token), and any position a forger could write they could also reach by
//! paging. A secret key would have to be shared by every replica and
//! rotated, for no gain.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::ApiError;
use crate::store::{AuditCursor, PageCursor};

/// Which listing a token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// `ListDeadLetters`.
    DeadLetters,
    /// `ListDeliveries`.
    Deliveries,
    /// `ListDestinations`.
    Destinations,
    /// `ListAuditEvents`.
    AuditEvents,
    /// `ListEndpoints`.
    Endpoints,
    /// `ListEvents`.
    Events,
    /// `ListEventTypes`.
    EventTypes,
}

impl Listing {
    fn tag(self) -> &'static str {
        match self {
            Self::DeadLetters => "d1",
            Self::Deliveries => "l1",
            Self::Destinations => "n1",
            Self::AuditEvents => "a1",
            Self::Endpoints => "e1",
            Self::Events => "v1",
            Self::EventTypes => "t1",
        }
    }

    fn rpc(self) -> &'static str {
        match self {
            Self::DeadLetters => "ListDeadLetters",
            Self::Deliveries => "ListDeliveries",
            Self::Destinations => "ListDestinations",
            Self::AuditEvents => "ListAuditEvents",
            Self::Endpoints => "ListEndpoints",
            Self::Events => "ListEvents",
            Self::EventTypes => "ListEventTypes",
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

/// Audit events: `<ms>:<id>`.
impl Position for AuditCursor {
    fn to_text(&self) -> String {
        format!("{}:{}", self.at_ms, self.id)
    }

    fn from_text(text: &str) -> Option<Self> {
        let (millis, id) = text.split_once(':')?;
        Some(Self {
            at_ms: millis.parse().ok()?,
            id: id.parse().ok()?,
        })
    }
}

/// Destinations: the name of the last one.
impl Position for Uuid {
    fn to_text(&self) -> String {
        self.to_string()
    }

    fn from_text(text: &str) -> Option<Self> {
        Uuid::parse_str(text).ok()
    }
}

impl Position for String {
    fn to_text(&self) -> String {
        self.clone()
    }

    fn from_text(text: &str) -> Option<Self> {
        Some(text.to_owned())
    }
}

/// Bytes of the digest a token carries.
const CHECK_BYTES: usize = 16;

/// The check of a token of `listing` with `filters` at `position`.
fn check(listing: Listing, filters: &str, position: &str) -> String {
    let digest = Sha256::new()
        .chain_update(listing.tag())
        .chain_update([0])
        .chain_update(filters)
        .chain_update([0])
        .chain_update(position)
        .finalize();
    digest[..CHECK_BYTES]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Encodes the position after `cursor` in `listing` with `filters` (in
/// any canonical text form: the same filters must give the same text).
pub fn encode(listing: Listing, filters: &str, cursor: &impl Position) -> String {
    let position = cursor.to_text();
    let check = check(listing, filters, &position);
    URL_SAFE_NO_PAD.encode(format!("{}:{check}:{position}", listing.tag()))
}

/// Decodes a token from a previous page of `listing` with `filters`; an
/// empty token is the first page. A token of another listing, of other
/// filters, or altered, is INVALID_ARGUMENT.
pub fn decode<P: Position>(
    listing: Listing,
    filters: &str,
    token: &str,
) -> Result<Option<P>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || {
        ApiError::invalid(
            "page_token",
            format!(
                "is not a token returned by {} with these filters (a token may be used only \
                 with the filters of the listing that returned it, unaltered); keep the \
                 filters while paging, or start again with an empty page_token",
                listing.rpc()
            ),
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.splitn(3, ':');
    let (Some(tag), Some(given), Some(position)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    if tag != listing.tag() || given != check(listing, filters, position) {
        return Err(invalid());
    }
    P::from_text(position).map(Some).ok_or_else(invalid)
}

/// The token for the page that starts after `after` (in `listing` with
/// `filters`), or empty when there is none.
pub fn next(listing: Listing, filters: &str, after: Option<&impl Position>) -> String {
    after.map_or_else(String::new, |after| encode(listing, filters, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILTERS: &str = r#"["pending","example.com",null,null]"#;

    #[test]
    fn round_trips_and_rejects_garbage_and_other_listings() {
        let cursor = PageCursor {
            at_ms: 1_795_000_000_123,
            id: Uuid::now_v7(),
        };
        let token = encode(Listing::DeadLetters, "", &cursor);
        assert_eq!(
            decode(Listing::DeadLetters, "", &token).unwrap(),
            Some(cursor)
        );
        assert!(decode::<PageCursor>(Listing::Deliveries, "", &token).is_err());
        assert_eq!(
            decode::<PageCursor>(Listing::Deliveries, "", "").unwrap(),
            None
        );
        for bad in ["%%%", "djE6eDp5", &URL_SAFE_NO_PAD.encode("d2:1:x")] {
            assert!(
                decode::<PageCursor>(Listing::DeadLetters, "", bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn tokens_are_bound_to_their_filters_and_refuse_changes() {
        let cursor = PageCursor {
            at_ms: 1_795_000_000_123,
            id: Uuid::now_v7(),
        };
        let token = encode(Listing::Deliveries, FILTERS, &cursor);
        assert_eq!(
            decode(Listing::Deliveries, FILTERS, &token).unwrap(),
            Some(cursor)
        );
        let other = r#"["succeeded","example.com",null,null]"#;
        assert!(decode::<PageCursor>(Listing::Deliveries, other, &token).is_err());
        // The same check with a position moved one millisecond back.
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(&token).unwrap()).unwrap();
        let moved = text.replace(&cursor.at_ms.to_string(), &(cursor.at_ms - 1).to_string());
        let tampered = URL_SAFE_NO_PAD.encode(moved);
        let refused = decode::<PageCursor>(Listing::Deliveries, FILTERS, &tampered).unwrap_err();
        assert!(refused.to_string().starts_with("page_token: "), "{refused}");
    }

    #[test]
    fn destination_tokens_hold_a_name() {
        let last = "https://api.example.com:443".to_owned();
        let token = encode(Listing::Destinations, "", &last);
        assert_eq!(
            decode(Listing::Destinations, "", &token).unwrap(),
            Some(last)
        );
        assert!(decode::<PageCursor>(Listing::Deliveries, "", &token).is_err());
    }
}
