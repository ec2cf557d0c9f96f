//! The SDK's own types for what Herald answers: deliveries, attempts,
//! outcomes, destinations and the enums they carry. They are
//! `#[non_exhaustive]`, so a field or a value added to the contract is not a
//! breaking change for callers; an enum value this version does not know
//! arrives as `Unrecognized` with its number.
//!
//! Each converts from its generated counterpart; nothing here is sent as
//! is, so the generated types stay inside the crate.

mod delivery;
mod destination;
mod enums;
mod outcome;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use delivery::{Attempt, Delivery, Header, NotRedriven, RedriveReport};
pub use destination::{CircuitPolicy, Destination, DestinationPolicy, DestinationStats, RateLimit};
pub use enums::{
    AttemptError, CircuitState, DeliveryState, DestinationState, HttpMethod, NotRedrivenReason,
    OutcomeKind, RatePeriod, UnknownName,
};
pub use outcome::Outcome;

/// A protobuf timestamp as a time; `None` when unset or out of range.
fn time(timestamp: Option<prost_types::Timestamp>) -> Option<SystemTime> {
    let timestamp = timestamp?;
    let since = Duration::new(
        u64::try_from(timestamp.seconds).ok()?,
        u32::try_from(timestamp.nanos).ok()?,
    );
    UNIX_EPOCH.checked_add(since)
}

/// A protobuf duration as a duration; `None` when unset or negative.
fn duration(duration: Option<prost_types::Duration>) -> Option<Duration> {
    Duration::try_from(duration?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_convert_and_refuse_what_cannot_be() {
        let at = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 5_000_000,
        };
        assert_eq!(
            time(Some(at)),
            Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_005))
        );
        assert_eq!(time(None), None);
        let before_1970 = prost_types::Timestamp {
            seconds: -1,
            nanos: 0,
        };
        assert_eq!(time(Some(before_1970)), None);
        let took = prost_types::Duration {
            seconds: 1,
            nanos: 500_000_000,
        };
        assert_eq!(duration(Some(took)), Some(Duration::from_millis(1500)));
        let negative = prost_types::Duration {
            seconds: -1,
            nanos: 0,
        };
        assert_eq!(duration(Some(negative)), None);
    }
}
