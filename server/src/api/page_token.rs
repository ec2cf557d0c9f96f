//! Opaque page tokens. Callers pass back what they were given; the format
//! (base64url of `v1:<finished ms>:<id>`) is free to change behind them.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use uuid::Uuid;

use super::error::ApiError;
use crate::store::DeadLetterCursor;

/// Encodes the position after `cursor`.
pub fn encode(cursor: DeadLetterCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{}:{}", cursor.finished_at_ms, cursor.id))
}

/// Decodes a token from a previous page; an empty token is the first page.
pub fn decode(token: &str) -> Result<Option<DeadLetterCursor>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || {
        ApiError::invalid(
            "page_token",
            "is not a token returned by ListDeadLetters; start again with an empty page_token",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.splitn(3, ':');
    let (Some("v1"), Some(millis), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    Ok(Some(DeadLetterCursor {
        finished_at_ms: millis.parse().map_err(|_| invalid())?,
        id: Uuid::parse_str(id).map_err(|_| invalid())?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let cursor = DeadLetterCursor {
            finished_at_ms: 1_795_000_000_123,
            id: Uuid::now_v7(),
        };
        assert_eq!(decode(&encode(cursor)).unwrap(), Some(cursor));
        assert_eq!(decode("").unwrap(), None);
        for bad in ["%%%", "djE6eDp5", &URL_SAFE_NO_PAD.encode("v2:1:x")] {
            assert!(decode(bad).is_err(), "{bad}");
        }
    }
}
