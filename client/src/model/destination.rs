//! A destination (one receiver of the caller's tenant) with its policy and
//! health.

use std::time::{Duration, SystemTime};

use herald_proto::v1 as wire;

use super::{CircuitState, DestinationState, RatePeriod, duration, time};

/// How fast a destination may be sent to, across every replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimit {
    /// Requests per period.
    pub requests: u32,
    /// The period they are counted in.
    pub period: RatePeriod,
    /// Requests that may go at once after a quiet spell.
    pub burst: u32,
}

impl From<wire::RateLimit> for RateLimit {
    fn from(limit: wire::RateLimit) -> Self {
        Self {
            requests: limit.requests,
            period: RatePeriod::from_number(limit.period),
            burst: limit.burst,
        }
    }
}

/// When a destination's circuit opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CircuitPolicy {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long it stays open before the first probe.
    pub cooldown: Option<Duration>,
    /// The longest it stays open between probes.
    pub cooldown_max: Option<Duration>,
}

impl From<wire::CircuitPolicy> for CircuitPolicy {
    fn from(circuit: wire::CircuitPolicy) -> Self {
        Self {
            failure_threshold: circuit.failure_threshold.unwrap_or_default(),
            cooldown: duration(circuit.cooldown),
            cooldown_max: duration(circuit.cooldown_max),
        }
    }
}

/// A destination's effective policy: its own values where it sets them,
/// the server's defaults elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DestinationPolicy {
    /// Most attempts in flight to it at once, across every replica.
    pub max_in_flight: u32,
    /// How fast it may be sent to; `None` without a rate limit.
    pub rate_limit: Option<RateLimit>,
    /// Its circuit breaker.
    pub circuit: Option<CircuitPolicy>,
}

impl From<wire::DestinationPolicy> for DestinationPolicy {
    fn from(policy: wire::DestinationPolicy) -> Self {
        Self {
            max_in_flight: policy.max_in_flight,
            rate_limit: policy.rate_limit.map(Into::into),
            circuit: policy.circuit.map(Into::into),
        }
    }
}

/// Attempts to a destination over the recent window.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct DestinationStats {
    /// How far back the figures reach.
    pub window: Option<Duration>,
    /// Attempts sent in the window.
    pub attempts: u64,
    /// The share of them that got a 2xx, 0 to 1; `None` without attempts.
    pub success_ratio: Option<f64>,
    /// Their mean duration; `None` without attempts.
    pub mean_latency: Option<Duration>,
}

impl From<wire::DestinationStats> for DestinationStats {
    fn from(stats: wire::DestinationStats) -> Self {
        Self {
            window: duration(stats.window),
            attempts: stats.attempts,
            success_ratio: stats.success_ratio,
            mean_latency: duration(stats.mean_latency),
        }
    }
}

/// One receiver (scheme, host and port) of the caller's tenant, with its
/// policy and health.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Destination {
    /// `scheme://host:port`, what every destination call takes to name it.
    pub destination: String,
    /// Its host.
    pub host: String,
    /// Whether it takes deliveries.
    pub state: DestinationState,
    /// Why it is paused or disabled; empty while active.
    pub state_reason: String,
    /// When its state last changed.
    pub state_change_time: Option<SystemTime>,
    /// Its circuit breaker's state now.
    pub circuit: CircuitState,
    /// While the circuit is open: when its probe may go.
    pub next_probe_time: Option<SystemTime>,
    /// The policy in force.
    pub policy: Option<DestinationPolicy>,
    /// The policy fields it sets for itself (as `reset` names them).
    pub policy_overrides: Vec<String>,
    /// Attempts in flight to it now, across every replica.
    pub in_flight: u32,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Its latest 2xx.
    pub last_success_time: Option<SystemTime>,
    /// Its latest failure.
    pub last_failure_time: Option<SystemTime>,
    /// Failing without a success since this time.
    pub failing_since_time: Option<SystemTime>,
    /// Nothing is sent before this time (the receiver asked to hold off).
    pub hold_until_time: Option<SystemTime>,
    /// Its attempts over the last few minutes.
    pub recent: Option<DestinationStats>,
    /// When Herald first kept it.
    pub create_time: Option<SystemTime>,
    /// When it last changed.
    pub update_time: Option<SystemTime>,
}

impl From<wire::Destination> for Destination {
    fn from(destination: wire::Destination) -> Self {
        Self {
            destination: destination.destination,
            host: destination.host,
            state: DestinationState::from_number(destination.state),
            state_reason: destination.state_reason,
            state_change_time: time(destination.state_change_time),
            circuit: CircuitState::from_number(destination.circuit),
            next_probe_time: time(destination.next_probe_time),
            policy: destination.policy.map(Into::into),
            policy_overrides: destination.policy_overrides,
            in_flight: destination.in_flight,
            consecutive_failures: destination.consecutive_failures,
            last_success_time: time(destination.last_success_time),
            last_failure_time: time(destination.last_failure_time),
            failing_since_time: time(destination.failing_since_time),
            hold_until_time: time(destination.hold_until_time),
            recent: destination.recent.map(Into::into),
            create_time: time(destination.create_time),
            update_time: time(destination.update_time),
        }
    }
}
