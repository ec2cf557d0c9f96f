//! The contract's enums as the SDK's own: each has the values this version
//! knows and `Unrecognized(n)` for one it does not (a newer server's, or
//! none at all), and names itself as the `herald` commands write it
//! (`dead-lettered`); `parse` takes that name back.

use std::fmt;

use herald_proto::v1 as wire;

/// Declares an SDK enum over a generated one: its variants (named as the
/// generated enum's) with their text, the conversions both ways, `Display`
/// and `FromStr`.
macro_rules! sdk_enum {
    (
        $(#[$meta:meta])*
        $name:ident over $wire:ident {
            $($(#[$variant_meta:meta])* $variant:ident => $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$variant_meta])* $variant,)+
            /// A value this version of the client does not know (from a
            /// newer server), or none: the number as sent.
            Unrecognized(i32),
        }

        impl $name {
            /// Every value this version knows.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The name the `herald` commands use for it, e.g. `dead-lettered`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Unrecognized(_) => "unrecognized",
                }
            }

            /// The value the contract numbers `raw`; `Unrecognized` for a
            /// number this version does not know.
            pub fn from_number(raw: i32) -> Self {
                match wire::$wire::try_from(raw) {
                    $(Ok(wire::$wire::$variant) => Self::$variant,)+
                    _ => Self::Unrecognized(raw),
                }
            }

            /// The number the contract gives this value (stable across
            /// releases, as the contract's numbers are).
            pub fn number(self) -> i32 {
                match self {
                    $(Self::$variant => wire::$wire::$variant.into(),)+
                    Self::Unrecognized(raw) => raw,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownName;

            /// The value named as [`Self::as_str`] names it, in any case,
            /// with `_` for `-` accepted.
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                let wanted = text.trim().to_ascii_lowercase().replace('_', "-");
                Self::ALL
                    .iter()
                    .copied()
                    .find(|value| value.as_str() == wanted)
                    .ok_or_else(|| UnknownName {
                        text: text.to_owned(),
                        expected: Self::ALL.iter().map(|value| value.as_str()).collect(),
                    })
            }
        }
    };
}

/// A name that is none of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown value {text:?}: use {}", expected.join(", "))]
pub struct UnknownName {
    text: String,
    expected: Vec<&'static str>,
}

sdk_enum! {
    /// Where a delivery is in its life.
    DeliveryState over DeliveryState {
        /// Waiting for its next attempt, or being attempted.
        Pending => "pending",
        /// A receiver answered 2xx.
        Succeeded => "succeeded",
        /// Given up on: a permanent failure, or attempts or time ran out.
        DeadLettered => "dead-lettered",
        /// Cancelled by an operator before it finished.
        Cancelled => "cancelled",
    }
}

sdk_enum! {
    /// The HTTP method of a delivery's requests.
    HttpMethod over HttpMethod {
        /// POST (the default).
        Post => "post",
        /// PUT.
        Put => "put",
        /// PATCH.
        Patch => "patch",
        /// DELETE.
        Delete => "delete",
        /// GET.
        Get => "get",
    }
}

sdk_enum! {
    /// Why an attempt got no response.
    AttemptError over AttemptError {
        /// The connection could not be made (refused, DNS, TLS).
        Connect => "connect",
        /// The request timed out.
        Timeout => "timeout",
        /// The connection failed mid-request.
        Io => "io",
        /// The request could not be built.
        InvalidRequest => "invalid-request",
        /// The destination resolved only to addresses Herald may not send to.
        Blocked => "blocked",
    }
}

sdk_enum! {
    /// What an outcome records.
    OutcomeKind over OutcomeKind {
        /// A delivery succeeded.
        Succeeded => "succeeded",
        /// An attempt failed and another is scheduled.
        RetryScheduled => "retry-scheduled",
        /// A delivery was dead-lettered.
        DeadLettered => "dead-lettered",
        /// A delivery was cancelled.
        Cancelled => "cancelled",
        /// A destination's circuit opened.
        CircuitOpened => "circuit-opened",
        /// A destination's circuit closed.
        CircuitClosed => "circuit-closed",
        /// A destination was paused.
        DestinationPaused => "destination-paused",
        /// A destination was resumed.
        DestinationResumed => "destination-resumed",
        /// A destination was disabled.
        DestinationDisabled => "destination-disabled",
        /// A destination was enabled.
        DestinationEnabled => "destination-enabled",
        /// A dead letter was redriven.
        Redriven => "redriven",
    }
}

sdk_enum! {
    /// Whether a destination takes deliveries.
    DestinationState over DestinationState {
        /// Taking deliveries.
        Active => "active",
        /// Held by an operator; its deliveries wait.
        Paused => "paused",
        /// Failing for too long; its deliveries are dead-lettered.
        Disabled => "disabled",
    }
}

sdk_enum! {
    /// A destination's circuit breaker.
    CircuitState over CircuitState {
        /// Deliveries flow.
        Closed => "closed",
        /// Deliveries wait for the cool-off.
        Open => "open",
        /// One probe is allowed through.
        HalfOpen => "half-open",
    }
}

sdk_enum! {
    /// The period of a rate limit.
    RatePeriod over RatePeriod {
        /// Per second.
        Second => "second",
        /// Per minute.
        Minute => "minute",
    }
}

sdk_enum! {
    /// Why a named dead letter was not redriven.
    NotRedrivenReason over NotRedrivenReason {
        /// No such delivery (for the caller).
        NotFound => "not-found",
        /// The delivery is not dead-lettered.
        NotDeadLettered => "not-dead-lettered",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips_and_parses_from_its_name() {
        for &state in DeliveryState::ALL {
            assert_eq!(DeliveryState::from_number(state.number()), state);
            assert_eq!(state.as_str().parse(), Ok(state));
        }
        assert_eq!("DEAD_LETTERED".parse(), Ok(DeliveryState::DeadLettered));
        assert_eq!(
            DeliveryState::from_number(wire::DeliveryState::DeadLettered.into()),
            DeliveryState::DeadLettered
        );
        let error = "lost".parse::<DeliveryState>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown value \"lost\": use pending, succeeded, dead-lettered, cancelled"
        );
    }

    #[test]
    fn a_value_from_a_newer_server_is_kept_as_a_number() {
        let newer = OutcomeKind::from_number(99);
        assert_eq!(newer, OutcomeKind::Unrecognized(99));
        assert_eq!(newer.number(), 99);
        assert_eq!(
            DeliveryState::from_number(0),
            DeliveryState::Unrecognized(0),
            "unset"
        );
    }
}
