//! The delivery's vocabulary, shared by every stage: states, methods,
//! outcome kinds and attempt error classes. Proto types stop at `api/`;
//! these are what `store/`, `scheduler/` and `outcomes/` speak.
//!
//! ```text
//!            enqueue (api -> store)
//!                  |
//!                  v
//!   +--------> PENDING --claim (scheduler::claimer)--> attempt in flight
//!   |                                                        |
//!   +-- retry scheduled (scheduler::completer) <-------------+
//!                                                            |
//!          SUCCEEDED <-- 2xx (scheduler::completer) ---------+
//!      DEAD_LETTERED <-- permanent / exhausted (completer) --+
//! ```

use std::{fmt, str::FromStr, time::Duration};

use bytes::Bytes;

/// Parses the stored text form of an enum; a mismatch means the database
/// holds a value this build does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown {kind} {value:?} in the database")]
pub struct UnknownValue {
    kind: &'static str,
    value: String,
}

/// Declares a closed enum stored as lower-case text, with `as_str`,
/// `Display` and `FromStr` kept in one table so they cannot drift.
macro_rules! stored_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The text stored in the database for this value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(UnknownValue { kind: $kind, value: other.to_owned() }),
                }
            }
        }
    };
}

stored_enum! {
    /// Where a delivery is in its life.
    DeliveryState, "delivery state" {
        /// Waiting for its next attempt, or being attempted under a lease.
        Pending => "pending",
        /// The receiver answered 2xx. Terminal.
        Succeeded => "succeeded",
        /// Herald gave up on it. Terminal unless redriven.
        DeadLettered => "dead_lettered",
        /// An operator cancelled it. Terminal.
        Cancelled => "cancelled",
    }
}

stored_enum! {
    /// The HTTP method a delivery is sent with.
    HttpMethod, "http method" {
        /// POST, the default.
        Post => "POST",
        /// PUT.
        Put => "PUT",
        /// PATCH.
        Patch => "PATCH",
        /// DELETE.
        Delete => "DELETE",
        /// GET.
        Get => "GET",
    }
}

stored_enum! {
    /// What one attempt led to, as recorded in the outcome feed.
    OutcomeKind, "outcome kind" {
        /// 2xx: the delivery is done.
        Succeeded => "succeeded",
        /// A transient failure; another attempt is scheduled.
        RetryScheduled => "retry_scheduled",
        /// Herald gave up on the delivery.
        DeadLettered => "dead_lettered",
        /// An operator cancelled the delivery.
        Cancelled => "cancelled",
        /// A destination's circuit opened after consecutive failures, or
        /// reopened after a failed probe: its deliveries wait.
        CircuitOpened => "circuit_opened",
        /// A destination's probe succeeded: its circuit closed and its
        /// deliveries flow again.
        CircuitClosed => "circuit_closed",
        /// An operator paused a destination: its deliveries are held.
        DestinationPaused => "destination_paused",
        /// An operator resumed a paused destination.
        DestinationResumed => "destination_resumed",
        /// A destination failed without a success for too long, and was
        /// disabled: its pending deliveries are dead-lettered.
        DestinationDisabled => "destination_disabled",
        /// An operator enabled a disabled destination.
        DestinationEnabled => "destination_enabled",
        /// An operator redrove a dead letter: it is pending again, with a
        /// fresh attempt budget.
        Redriven => "redriven",
    }
}

impl OutcomeKind {
    /// Whether this outcome is about a destination rather than one delivery.
    pub fn is_destination_event(self) -> bool {
        matches!(
            self,
            Self::CircuitOpened
                | Self::CircuitClosed
                | Self::DestinationPaused
                | Self::DestinationResumed
                | Self::DestinationDisabled
                | Self::DestinationEnabled
        )
    }
}

stored_enum! {
    /// Whether a destination takes deliveries.
    DestinationStatus, "destination status" {
        /// Deliveries flow, within its policy and circuit.
        Active => "active",
        /// An operator paused it: deliveries are held, nothing is lost.
        Paused => "paused",
        /// It failed without a success for too long, or an operator
        /// disabled it: its deliveries are dead-lettered and new ones
        /// refused until it is enabled.
        Disabled => "disabled",
    }
}

stored_enum! {
    /// Why an attempt got no HTTP response.
    AttemptErrorKind, "attempt error" {
        /// The connection could not be made (refused, DNS, TLS handshake).
        Connect => "connect",
        /// No complete response before the request timeout.
        Timeout => "timeout",
        /// The connection broke mid-request or mid-response.
        Io => "io",
        /// Herald could not build a valid request from the delivery.
        InvalidRequest => "invalid_request",
        /// The destination is, or resolved only to, a blocked address.
        Blocked => "blocked",
    }
}

impl HttpMethod {
    /// The method as an [`http::Method`] for the transport.
    pub fn to_http(self) -> http::Method {
        match self {
            Self::Post => http::Method::POST,
            Self::Put => http::Method::PUT,
            Self::Patch => http::Method::PATCH,
            Self::Delete => http::Method::DELETE,
            Self::Get => http::Method::GET,
        }
    }
}

/// The HTTP request a delivery sends on every attempt, frozen at enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// HTTP method.
    pub method: HttpMethod,
    /// Absolute http(s) URL.
    pub url: String,
    /// Caller's headers, in order (names lower-case).
    pub headers: Vec<(String, String)>,
    /// `content-type` of the body, if any.
    pub content_type: Option<String>,
    /// The body, byte for byte.
    pub body: Bytes,
}

/// `time` as Unix epoch milliseconds (0 before the epoch), the unit every
/// `*_ms` column holds.
pub fn unix_ms(time: std::time::SystemTime) -> i64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// A caller's W3C trace context (`traceparent`, and `tracestate` with it),
/// stored with the delivery and sent on every attempt, so the receiver's
/// trace joins the caller's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// `version-traceid-parentid-flags`, as the caller sent it.
    pub traceparent: String,
    /// Vendor-specific trace state, passed through unchanged.
    pub tracestate: Option<String>,
}

/// Longest `tracestate` forwarded (the W3C limit is 32 members; 512 bytes
/// is what the specification asks every vendor to pass on).
const MAX_TRACESTATE_BYTES: usize = 512;

impl TraceContext {
    /// The context in `traceparent` (and `tracestate`), or `None` when the
    /// header is not a valid W3C trace context: per the specification an
    /// invalid one is ignored, not an error.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let parts: Vec<&str> = traceparent.trim().split('-').collect();
        let hex = |part: &str, len: usize| {
            part.len() == len && part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        let [version, trace_id, parent_id, flags, ..] = parts[..] else {
            return None;
        };
        let valid = hex(version, 2)
            && version != "ff"
            // Version 00 has exactly four fields; later versions may add more.
            && (parts.len() == 4 || version != "00")
            && hex(trace_id, 32)
            && trace_id.bytes().any(|b| b != b'0')
            && hex(parent_id, 16)
            && parent_id.bytes().any(|b| b != b'0')
            && hex(flags, 2);
        if !valid {
            return None;
        }
        let tracestate = tracestate
            .map(str::trim)
            .filter(|state| {
                !state.is_empty()
                    && state.len() <= MAX_TRACESTATE_BYTES
                    && state.bytes().all(|b| (b' '..=b'~').contains(&b))
            })
            .map(str::to_owned);
        Some(Self {
            traceparent: traceparent.trim().to_owned(),
            tracestate,
        })
    }
}

/// Where a delivery goes, as far as fairness is concerned: one in-flight
/// limit applies per scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// `scheme://host:port`, the port made explicit.
    pub key: String,
    /// The host alone, for filters.
    pub host: String,
}

impl Destination {
    /// The destination of an absolute http(s) URL; `None` without a host.
    pub fn of(url: &url::Url) -> Option<Self> {
        // The URL parser already wrote its host in the form
        // [`Destination::host_named`] gives: punycode, brackets, lower case.
        let host = url.host_str()?.to_ascii_lowercase();
        let port = url.port_or_known_default()?;
        Some(Self {
            key: format!("{}://{host}:{port}", url.scheme()),
            host,
        })
    }
}

impl Destination {
    /// The host a person names (in a listing's, redrive's or watch's
    /// filter) in the form [`Destination::of`] stores it: an IDN as
    /// punycode, lower case, an IPv6 address in brackets (given with or
    /// without them) and shortened, an IPv4 address in dotted decimal.
    /// `None` when `raw` is not a host alone (a port, a path, a scheme or
    /// a character no host may hold).
    pub fn host_named(raw: &str) -> Option<String> {
        let bracketed;
        let raw = if raw.parse::<std::net::Ipv6Addr>().is_ok() {
            bracketed = format!("[{raw}]");
            &bracketed
        } else {
            raw
        };
        let host = url::Host::parse(raw).ok()?;
        Some(host.to_string().to_ascii_lowercase())
    }
}

/// What the scheduler decided after an attempt; the completer persists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The receiver answered 2xx.
    Succeeded,
    /// Try again after this delay.
    Retry {
        /// How long to wait before the next attempt.
        delay: Duration,
    },
    /// Give up: a permanent failure or no attempts left.
    DeadLetter,
}

impl Decision {
    /// The state the delivery moves to.
    pub fn state(self) -> DeliveryState {
        match self {
            Self::Succeeded => DeliveryState::Succeeded,
            Self::Retry { .. } => DeliveryState::Pending,
            Self::DeadLetter => DeliveryState::DeadLettered,
        }
    }

    /// The outcome recorded in the feed.
    pub fn outcome_kind(self) -> OutcomeKind {
        match self {
            Self::Succeeded => OutcomeKind::Succeeded,
            Self::Retry { .. } => OutcomeKind::RetryScheduled,
            Self::DeadLetter => OutcomeKind::DeadLettered,
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn trace_contexts_follow_the_w3c_format() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceContext::parse(valid, Some("congo=t61rcWkgMzE")).unwrap();
        assert_eq!(parsed.traceparent, valid);
        assert_eq!(parsed.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
        for invalid in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceContext::parse(invalid, None), None, "{invalid}");
        }
        assert!(TraceContext::parse(&valid.replacen("00", "01", 1), None).is_some());
        let bad_state = TraceContext::parse(valid, Some("a=\u{1}b")).unwrap();
        assert_eq!(
            bad_state.tracestate, None,
            "an unusable tracestate is dropped"
        );
    }

    use super::*;

    #[test]
    fn destinations_make_the_port_explicit() {
        let of = |raw: &str| Destination::of(&url::Url::parse(raw).unwrap()).unwrap();
        assert_eq!(
            of("https://API.example.com/x").key,
            "https://api.example.com:443"
        );
        assert_eq!(
            of("http://example.com:8080/").key,
            "http://example.com:8080"
        );
        assert_eq!(of("http://[::1]/").host, "[::1]");
        assert_eq!(of("http://a.example/"), of("http://a.example:80/y?z"));
    }

    #[test]
    fn a_named_host_takes_the_form_destinations_store() {
        let stored = |raw: &str| {
            Destination::of(&url::Url::parse(raw).unwrap())
                .unwrap()
                .host
        };
        for (named, url) in [
            ("API.Example.com", "https://api.example.com/x"),
            ("BÜCHER.example", "https://bücher.example/"),
            ("xn--bcher-kva.example", "https://Bücher.example:8443/"),
            ("::1", "http://[::1]:8080/"),
            ("[0:0::1]", "http://[::1]/"),
            ("[2001:DB8::1]", "https://[2001:db8:0::1]/"),
            ("0x7f.0.0.1", "http://127.0.0.1/"),
            ("example.com.", "http://example.com./"),
        ] {
            assert_eq!(
                Destination::host_named(named).as_deref(),
                Some(stored(url).as_str()),
                "{named}"
            );
        }
        for not_a_host in [
            "",
            "example.com:443",
            "https://example.com",
            "a/b",
            "a b",
            "[::1",
        ] {
            assert_eq!(Destination::host_named(not_a_host), None, "{not_a_host:?}");
        }
    }

    #[test]
    fn stored_text_round_trips() {
        for state in [
            DeliveryState::Pending,
            DeliveryState::Succeeded,
            DeliveryState::DeadLettered,
        ] {
            assert_eq!(state.as_str().parse::<DeliveryState>().unwrap(), state);
        }
        assert!("bogus".parse::<OutcomeKind>().is_err());
    }
}
