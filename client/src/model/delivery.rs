//! A delivery, its attempts and headers, and what a redrive reports.

use std::time::{Duration, SystemTime};

use herald_proto::v1 as wire;

use super::{AttemptError, DeliveryState, HttpMethod, NotRedrivenReason, duration, time};

/// One header of a delivery's requests.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Header {
    /// The header's name.
    pub name: String,
    /// Its value.
    pub value: String,
}

impl From<wire::Header> for Header {
    fn from(header: wire::Header) -> Self {
        Self {
            name: header.name,
            value: header.value,
        }
    }
}

/// One attempt to send a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt {
    /// 1 for the first attempt, counting up.
    pub number: u32,
    /// When it started.
    pub start_time: Option<SystemTime>,
    /// How long it took, connect to response.
    pub duration: Option<Duration>,
    /// The receiver's HTTP status; 0 when there was no response.
    pub status_code: u32,
    /// Why there was no response; `None` when there was one.
    pub error: Option<AttemptError>,
    /// What went wrong, for people.
    pub error_message: String,
    /// The start of the response body, as kept.
    pub response_excerpt: Vec<u8>,
}

impl From<wire::Attempt> for Attempt {
    fn from(attempt: wire::Attempt) -> Self {
        Self {
            number: attempt.number,
            start_time: time(attempt.start_time),
            duration: duration(attempt.duration),
            status_code: attempt.status_code,
            error: attempt.error.map(AttemptError::from_number),
            error_message: attempt.error_message,
            response_excerpt: attempt.response_excerpt,
        }
    }
}

/// A delivery as Herald keeps it. Listings leave `body`, `headers` and
/// `attempts` empty unless asked for the full view.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivery {
    /// Herald's id, sent to the receiver as `webhook-id`.
    pub id: String,
    /// Where it goes.
    pub url: String,
    /// The HTTP method.
    pub method: HttpMethod,
    /// The caller's headers.
    pub headers: Vec<Header>,
    /// The body, byte for byte.
    pub body: Vec<u8>,
    /// The body's `content-type`.
    pub content_type: String,
    /// The idempotency key it was enqueued with; empty without one.
    pub idempotency_key: String,
    /// Where it is in its life.
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempt_count: u32,
    /// Most attempts it may take.
    pub max_attempts: u32,
    /// When the next attempt is due, while pending.
    pub next_attempt_time: Option<SystemTime>,
    /// The last attempt's HTTP status; 0 without a response.
    pub last_status_code: u32,
    /// The last attempt's error, for people.
    pub last_error: String,
    /// When it was enqueued.
    pub create_time: Option<SystemTime>,
    /// When it last changed.
    pub update_time: Option<SystemTime>,
    /// When it finished, once it has.
    pub finish_time: Option<SystemTime>,
    /// After this no attempt starts, if set.
    pub deadline_time: Option<SystemTime>,
    /// Every attempt, oldest first (from `get_delivery`).
    pub attempts: Vec<Attempt>,
}

impl From<wire::Delivery> for Delivery {
    fn from(delivery: wire::Delivery) -> Self {
        Self {
            id: delivery.id,
            url: delivery.url,
            method: HttpMethod::from_number(delivery.method),
            headers: delivery.headers.into_iter().map(Into::into).collect(),
            body: delivery.body,
            content_type: delivery.content_type,
            idempotency_key: delivery.idempotency_key,
            state: DeliveryState::from_number(delivery.state),
            attempt_count: delivery.attempt_count,
            max_attempts: delivery.max_attempts,
            next_attempt_time: time(delivery.next_attempt_time),
            last_status_code: delivery.last_status_code,
            last_error: delivery.last_error,
            create_time: time(delivery.create_time),
            update_time: time(delivery.update_time),
            finish_time: time(delivery.finish_time),
            deadline_time: time(delivery.deadline_time),
            attempts: delivery.attempts.into_iter().map(Into::into).collect(),
        }
    }
}

/// What a redrive did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedriveReport {
    /// How many dead letters were (or would be) redriven.
    pub count: u64,
    /// The named ids that were not redriven, each with why.
    pub not_redriven: Vec<NotRedriven>,
}

impl From<wire::RedriveDeadLettersResponse> for RedriveReport {
    fn from(response: wire::RedriveDeadLettersResponse) -> Self {
        Self {
            count: response.count,
            not_redriven: response.not_redriven.into_iter().map(Into::into).collect(),
        }
    }
}

/// A named dead letter that was not redriven.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NotRedriven {
    /// The id as named.
    pub id: String,
    /// Why not.
    pub reason: NotRedrivenReason,
    /// The state it is in, when it exists.
    pub state: Option<DeliveryState>,
}

impl From<wire::NotRedriven> for NotRedriven {
    fn from(skipped: wire::NotRedriven) -> Self {
        Self {
            id: skipped.id,
            reason: NotRedrivenReason::from_number(skipped.reason),
            state: (skipped.state != 0).then(|| DeliveryState::from_number(skipped.state)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_converts_field_by_field() {
        let wire = wire::Delivery {
            id: "d-1".into(),
            method: wire::HttpMethod::Put.into(),
            state: wire::DeliveryState::DeadLettered.into(),
            headers: vec![wire::Header {
                name: "x-a".into(),
                value: "1".into(),
            }],
            attempts: vec![
                wire::Attempt {
                    number: 1,
                    status_code: 503,
                    ..Default::default()
                },
                wire::Attempt {
                    number: 2,
                    error: Some(wire::AttemptError::Timeout.into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let delivery = Delivery::from(wire);
        assert_eq!(delivery.method, HttpMethod::Put);
        assert_eq!(delivery.state, DeliveryState::DeadLettered);
        assert_eq!(delivery.headers[0].name, "x-a");
        assert_eq!(delivery.attempts[0].error, None, "a response");
        assert_eq!(delivery.attempts[1].error, Some(AttemptError::Timeout));
        assert_eq!(delivery.create_time, None);
    }
}
