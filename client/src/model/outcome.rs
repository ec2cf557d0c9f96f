//! One recorded outcome, as `watch_outcomes` yields it.

use std::time::SystemTime;

use herald_proto::v1 as wire;

use super::{AttemptError, OutcomeKind, time};

/// Something that happened to a delivery (or, for the destination kinds,
/// to a destination), in the order Herald recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// Its place in the feed; pass the last one processed to resume.
    pub sequence: u64,
    /// The delivery; empty for a destination's outcome.
    pub delivery_id: String,
    /// What happened.
    pub kind: OutcomeKind,
    /// The attempt it follows, if any (0 otherwise).
    pub attempt_number: u32,
    /// That attempt's HTTP status; 0 without a response.
    pub status_code: u32,
    /// Why that attempt got no response; `None` when it got one.
    pub error: Option<AttemptError>,
    /// What went wrong, for people.
    pub error_message: String,
    /// When the next attempt is due, for a retry.
    pub next_attempt_time: Option<SystemTime>,
    /// When it was recorded.
    pub create_time: Option<SystemTime>,
    /// The destination (`scheme://host:port`), for a destination's outcome.
    pub destination: String,
}

impl From<wire::Outcome> for Outcome {
    fn from(outcome: wire::Outcome) -> Self {
        Self {
            sequence: outcome.sequence,
            delivery_id: outcome.delivery_id,
            kind: OutcomeKind::from_number(outcome.kind),
            attempt_number: outcome.attempt_number,
            status_code: outcome.status_code,
            error: outcome.error.map(AttemptError::from_number),
            error_message: outcome.error_message,
            next_attempt_time: time(outcome.next_attempt_time),
            create_time: time(outcome.create_time),
            destination: outcome.destination,
        }
    }
}
