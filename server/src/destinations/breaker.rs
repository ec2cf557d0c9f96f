//! The circuit breaker's state and transitions, as pure functions.
//!
//! ```text
//!   closed --(failure_threshold consecutive failures)--> open (cool-off)
//!   open --(cool-off over)--> half-open: one probe may be in flight
//!   half-open --probe succeeds--> closed
//!   half-open --probe fails--> open again, cool-off doubled up to the cap
//! ```
//!
//! The state (`open_until`, `trips`) lives on the destination's row, so
//! every replica sees the same circuit; the count of consecutive failures
//! that trips it is kept by each replica for the attempts it made
//! ([`super::health`]). Half-open is not stored: it is an open circuit
//! whose cool-off is over, and the claim lets one probe through.

use std::time::Duration;

use super::policy::CircuitPolicy;

/// A destination's circuit as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Circuit {
    /// `None` while closed; otherwise when its cool-off ends, Unix ms.
    pub open_until_ms: Option<i64>,
    /// Openings since it last closed: the first waits the cool-off, each
    /// failed probe doubles it.
    pub trips: u32,
}

/// Where a circuit stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Attempts flow.
    Closed,
    /// Nothing is sent until the cool-off ends.
    Open {
        /// When it ends, Unix ms.
        until_ms: i64,
    },
    /// One probe may be in flight; its result closes or reopens it.
    HalfOpen,
}

impl Circuit {
    /// The phase at `now_ms`.
    pub fn phase(&self, now_ms: i64) -> Phase {
        match self.open_until_ms {
            None => Phase::Closed,
            Some(until_ms) if now_ms < until_ms => Phase::Open { until_ms },
            Some(_) => Phase::HalfOpen,
        }
    }

    /// Opened at `now_ms`: the first trip waits the cool-off, each one
    /// after a failed probe twice as long, up to the cap.
    pub fn opened(&self, now_ms: i64, policy: &CircuitPolicy) -> Self {
        let trips = self.trips.saturating_add(1);
        Self {
            open_until_ms: Some(now_ms.saturating_add(millis(cooldown(trips, policy)))),
            trips,
        }
    }

    /// Closed: a success came back.
    pub fn closed() -> Self {
        Self::default()
    }
}

/// The cool-off of the `trips`-th opening in a row.
pub fn cooldown(trips: u32, policy: &CircuitPolicy) -> Duration {
    let doublings = trips.saturating_sub(1).min(31);
    policy
        .cooldown
        .saturating_mul(1u32 << doublings)
        .min(policy.cooldown_max)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const POLICY: CircuitPolicy = CircuitPolicy {
        failure_threshold: 5,
        cooldown: Duration::from_secs(1),
        cooldown_max: Duration::from_secs(60),
    };

    #[test]
    fn opens_then_half_opens_when_the_cool_off_ends() {
        let open = Circuit::default().opened(1_000, &POLICY);
        assert_eq!(open.phase(1_000), Phase::Open { until_ms: 2_000 });
        assert_eq!(open.phase(1_999), Phase::Open { until_ms: 2_000 });
        assert_eq!(open.phase(2_000), Phase::HalfOpen);
        assert_eq!(Circuit::closed().phase(2_000), Phase::Closed);
    }

    #[test]
    fn failed_probes_double_the_cool_off_up_to_the_cap() {
        let mut circuit = Circuit::default();
        let mut waits = Vec::new();
        for _ in 0..9 {
            circuit = circuit.opened(0, &POLICY);
            waits.push(circuit.open_until_ms.unwrap() / 1_000);
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    proptest! {
        /// However many probes fail, the wait stays between the cool-off
        /// and its cap, and never shrinks.
        #[test]
        fn the_wait_grows_within_its_bounds(trips in 1u32..200, cooldown_ms in 100u64..5_000, cap_factor in 1u32..100) {
            let policy = CircuitPolicy {
                failure_threshold: 1,
                cooldown: Duration::from_millis(cooldown_ms),
                cooldown_max: Duration::from_millis(cooldown_ms) * cap_factor,
            };
            let wait = cooldown(trips, &policy);
            prop_assert!(wait >= policy.cooldown && wait <= policy.cooldown_max);
            prop_assert!(cooldown(trips + 1, &policy) >= wait);
        }
    }
}
