//! Store records to proto messages, and proto times to Unix milliseconds.

use herald_proto::v1 as proto;
use prost_types::{Duration as ProtoDuration, Timestamp};

use crate::{
    domain::{AttemptErrorKind, DeliveryState, HttpMethod, OutcomeKind},
    store::{
        Backlog,
        records::{AttemptRecord, DeliveryRecord, NotRedriven, OutcomeRecord, RedriveReport},
    },
};

/// The seconds a proto timestamp may hold: 0001-01-01T00:00:00Z to
/// 9999-12-31T23:59:59Z, what its JSON form can render.
const TIMESTAMP_SECONDS: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

/// A proto timestamp as Unix milliseconds; `None` if out of range.
pub fn timestamp_ms(time: &Timestamp) -> Option<i64> {
    if !(0..1_000_000_000).contains(&time.nanos) || !TIMESTAMP_SECONDS.contains(&time.seconds) {
        return None;
    }
    time.seconds
        .checked_mul(1000)?
        .checked_add(i64::from(time.nanos / 1_000_000))
}

/// Unix milliseconds as a proto timestamp.
pub fn timestamp(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        // rem_euclid(1000) is below 1000, so the product fits an i32.
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

/// Microseconds as a proto duration.
pub fn duration_us(us: i64) -> ProtoDuration {
    ProtoDuration {
        seconds: us.div_euclid(1_000_000),
        nanos: i32::try_from(us.rem_euclid(1_000_000) * 1000).unwrap_or(0),
    }
}

fn method(method: HttpMethod) -> proto::HttpMethod {
    match method {
        HttpMethod::Post => proto::HttpMethod::Post,
        HttpMethod::Put => proto::HttpMethod::Put,
        HttpMethod::Patch => proto::HttpMethod::Patch,
        HttpMethod::Delete => proto::HttpMethod::Delete,
        HttpMethod::Get => proto::HttpMethod::Get,
    }
}

/// A state filter from the API: `None` for "any state".
pub fn state_filter(raw: i32) -> Result<Option<DeliveryState>, UnknownState> {
    match proto::DeliveryState::try_from(raw) {
        Ok(proto::DeliveryState::Unspecified) => Ok(None),
        Ok(proto::DeliveryState::Pending) => Ok(Some(DeliveryState::Pending)),
        Ok(proto::DeliveryState::Succeeded) => Ok(Some(DeliveryState::Succeeded)),
        Ok(proto::DeliveryState::DeadLettered) => Ok(Some(DeliveryState::DeadLettered)),
        Ok(proto::DeliveryState::Cancelled) => Ok(Some(DeliveryState::Cancelled)),
        Err(_) => Err(UnknownState(raw)),
    }
}

/// A state number this build does not know.
#[derive(Debug)]
pub struct UnknownState(pub i32);

/// A delivery state as the API shows it.
pub fn state(state: DeliveryState) -> proto::DeliveryState {
    match state {
        DeliveryState::Pending => proto::DeliveryState::Pending,
        DeliveryState::Succeeded => proto::DeliveryState::Succeeded,
        DeliveryState::DeadLettered => proto::DeliveryState::DeadLettered,
        DeliveryState::Cancelled => proto::DeliveryState::Cancelled,
    }
}

/// An attempt's error; unset (never UNSPECIFIED) when there was none.
fn attempt_error(kind: Option<AttemptErrorKind>) -> Option<i32> {
    let error = match kind? {
        AttemptErrorKind::Connect => proto::AttemptError::Connect,
        AttemptErrorKind::Timeout => proto::AttemptError::Timeout,
        AttemptErrorKind::Io => proto::AttemptError::Io,
        AttemptErrorKind::InvalidRequest => proto::AttemptError::InvalidRequest,
        AttemptErrorKind::Blocked => proto::AttemptError::Blocked,
    };
    Some(error.into())
}

fn outcome_kind(kind: OutcomeKind) -> proto::OutcomeKind {
    match kind {
        OutcomeKind::Succeeded => proto::OutcomeKind::Succeeded,
        OutcomeKind::RetryScheduled => proto::OutcomeKind::RetryScheduled,
        OutcomeKind::DeadLettered => proto::OutcomeKind::DeadLettered,
        OutcomeKind::Cancelled => proto::OutcomeKind::Cancelled,
        OutcomeKind::CircuitOpened => proto::OutcomeKind::CircuitOpened,
        OutcomeKind::CircuitClosed => proto::OutcomeKind::CircuitClosed,
        OutcomeKind::DestinationPaused => proto::OutcomeKind::DestinationPaused,
        OutcomeKind::DestinationResumed => proto::OutcomeKind::DestinationResumed,
        OutcomeKind::DestinationDisabled => proto::OutcomeKind::DestinationDisabled,
        OutcomeKind::DestinationEnabled => proto::OutcomeKind::DestinationEnabled,
        OutcomeKind::Redriven => proto::OutcomeKind::Redriven,
    }
}

/// A stored delivery as the API shows it.
pub fn delivery(record: DeliveryRecord) -> proto::Delivery {
    let request = record.request;
    let event = record.event;
    proto::Delivery {
        id: record.id.to_string(),
        url: request.url,
        method: method(request.method).into(),
        headers: request
            .headers
            .into_iter()
            .map(|(name, value)| proto::Header { name, value })
            .collect(),
        body: request.body.to_vec(),
        content_type: request.content_type.unwrap_or_default(),
        idempotency_key: record.idempotency_key.unwrap_or_default(),
        state: state(record.state).into(),
        attempt_count: record.attempt_count,
        max_attempts: record.max_attempts,
        next_attempt_time: record.next_attempt_at_ms.map(timestamp),
        last_status_code: record.last_status_code.map_or(0, u32::from),
        last_error: record.last_error.unwrap_or_default(),
        create_time: Some(timestamp(record.created_at_ms)),
        update_time: Some(timestamp(record.updated_at_ms)),
        finish_time: record.finished_at_ms.map(timestamp),
        attempts: record.attempts.into_iter().map(attempt).collect(),
        deadline_time: record.deadline_at_ms.map(timestamp),
        event_id: event
            .as_ref()
            .map(|event| event.event_id.to_string())
            .unwrap_or_default(),
        endpoint_id: event
            .as_ref()
            .map(|event| event.endpoint_id.to_string())
            .unwrap_or_default(),
        event_type: event.map(|event| event.event_type).unwrap_or_default(),
    }
}

fn attempt(record: AttemptRecord) -> proto::Attempt {
    proto::Attempt {
        number: record.number,
        start_time: Some(timestamp(record.started_at_ms)),
        duration: Some(duration_us(record.duration_us)),
        status_code: record.status_code.map_or(0, u32::from),
        error: attempt_error(record.error_kind),
        error_message: record.error_message.unwrap_or_default(),
        response_excerpt: record.response_excerpt.to_vec(),
    }
}

/// A recorded outcome as the API shows it.
pub fn outcome(record: OutcomeRecord) -> proto::Outcome {
    proto::Outcome {
        sequence: u64::try_from(record.sequence).unwrap_or(0),
        delivery_id: record
            .delivery_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        kind: outcome_kind(record.kind).into(),
        attempt_number: record.attempt_number,
        status_code: record.status_code.map_or(0, u32::from),
        error: attempt_error(record.error_kind),
        error_message: record.error_message.unwrap_or_default(),
        next_attempt_time: record.next_attempt_at_ms.map(timestamp),
        create_time: Some(timestamp(record.created_at_ms)),
        destination: record.destination.unwrap_or_default(),
        endpoint_id: record
            .endpoint_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        event_type: record.event_type.unwrap_or_default(),
    }
}

/// A tenant's backlog. The counts come from `COUNT`s, never negative.
pub fn backlog(backlog: Backlog) -> proto::GetBacklogResponse {
    proto::GetBacklogResponse {
        due: backlog.due.unsigned_abs(),
        scheduled_retries: backlog.scheduled_retries.unsigned_abs(),
        in_flight: backlog.in_flight.unsigned_abs(),
        dead_letters: backlog.dead_letters.unsigned_abs(),
    }
}

/// What a redrive did, with each named id that was not redriven and why.
pub fn redrive_report(report: RedriveReport) -> proto::RedriveDeadLettersResponse {
    let not_redriven = report
        .not_redriven
        .into_iter()
        .map(|(id, why)| {
            let (reason, now) = match why {
                NotRedriven::NotFound => (proto::NotRedrivenReason::NotFound, None),
                NotRedriven::NotDeadLettered(now) => {
                    (proto::NotRedrivenReason::NotDeadLettered, Some(now))
                }
            };
            proto::NotRedriven {
                id: id.to_string(),
                reason: reason.into(),
                state: now.map(state).unwrap_or_default().into(),
            }
        })
        .collect();
    proto::RedriveDeadLettersResponse {
        count: report.count,
        not_redriven,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_millis() {
        for ms in [0, 1, 999, 1_795_000_000_123, -1, -1001] {
            assert_eq!(timestamp_ms(&timestamp(ms)), Some(ms), "{ms}");
        }
        assert_eq!(
            timestamp_ms(&Timestamp {
                seconds: 1,
                nanos: -1
            }),
            None
        );
        for seconds in [253_402_300_800, -62_135_596_801, i64::MAX / 1000] {
            assert_eq!(
                timestamp_ms(&Timestamp { seconds, nanos: 0 }),
                None,
                "{seconds}"
            );
        }
        assert!(
            timestamp_ms(&Timestamp {
                seconds: 253_402_300_799,
                nanos: 999_999_999
            })
            .is_some()
        );
    }

    #[test]
    fn an_attempt_error_is_unset_when_there_was_none() {
        assert_eq!(attempt_error(None), None, "never ATTEMPT_ERROR_UNSPECIFIED");
        assert_eq!(
            attempt_error(Some(AttemptErrorKind::Timeout)),
            Some(proto::AttemptError::Timeout.into())
        );
    }

    #[test]
    fn durations_keep_microseconds() {
        let duration = duration_us(1_500_250);
        assert_eq!((duration.seconds, duration.nanos), (1, 500_250_000));
    }
}
