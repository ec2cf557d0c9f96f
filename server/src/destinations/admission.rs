//! What a claim may take from one destination, and where the destination
//! is parked afterwards: pure functions over the destination's row, so the
//! SQL of both backends stays a matter of counting and fetching.
//!
//! A claim locks the destinations it considers, then for each:
//! 1. [`Opening::of`] says how much its state allows: nothing while it is
//!    paused, disabled, open or asked to hold off; one probe while
//!    half-open; otherwise its in-flight limit and what its rate limiter
//!    has left.
//! 2. The store counts what is in flight (leases not yet recorded, across
//!    every replica) and fetches up to [`Opening::wanted`] due rows, one
//!    more to learn whether more are due, and the earliest pending row
//!    not yet due.
//! 3. [`park`] decides when the destination is next worth a look, which
//!    is what keeps a claim from walking destinations that cannot start
//!    anything: a rate-limited one until its next request may go, an open
//!    circuit until its cool-off ends, an empty one until its next retry.
//!
//! An empty destination is parked in two steps. Its first empty look
//! parks it for at most [`RECHECK`]; only a second empty look, with
//! nothing having woken it in between, parks it until its earliest
//! pending row (or for good). An enqueue wakes a parked destination, but
//! one that commits while a claim is looking may be invisible to that
//! claim's snapshot: the recheck sees it, since no enqueue transaction
//! lasts that long.

use std::time::Duration;

use super::{
    breaker::{Circuit, Phase},
    limiter::Limiter,
    policy::Policy,
};
use crate::domain::DestinationStatus;

/// How long the first empty look parks a destination.
pub const RECHECK: Duration = Duration::from_secs(1);

/// A destination as a claim reads it (locked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Owning tenant.
    pub tenant_id: String,
    /// `scheme://host:port`.
    pub destination: String,
    /// Its effective policy.
    pub policy: Policy,
    /// Active, paused or disabled.
    pub status: DestinationStatus,
    /// Its circuit.
    pub circuit: Circuit,
    /// A receiver's request to hold off (429, `Retry-After`), Unix ms.
    pub hold_until_ms: Option<i64>,
    /// The rate limiter's theoretical arrival time, Unix µs.
    pub rate_tat_us: Option<i64>,
    /// When it was due to be looked at, Unix ms.
    pub next_due_at_ms: Option<i64>,
    /// Parked because it had nothing due.
    pub idle: bool,
}

/// Why nothing may start at a destination now, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// Paused or disabled: until an operator changes that.
    Indefinitely,
    /// Open circuit or a receiver's hold: until then, Unix ms.
    Until(i64),
}

/// What a destination's state allows a claim to start there now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opening {
    /// Most attempts in flight now: its limit, 1 while half-open, 0 when
    /// blocked.
    pub limit: u32,
    /// What the rate limiter allows now (`u32::MAX` without a limit).
    pub rate_room: u32,
    /// Half-open: what starts now is the probe.
    pub probe: bool,
    /// Set when nothing may start.
    pub blocked: Option<Blocked>,
}

impl Opening {
    /// What `candidate` allows at `now_ms`.
    pub fn of(candidate: &Candidate, now_ms: i64) -> Self {
        let closed = |blocked| Self {
            limit: 0,
            rate_room: 0,
            probe: false,
            blocked: Some(blocked),
        };
        if candidate.status != DestinationStatus::Active {
            return closed(Blocked::Indefinitely);
        }
        if let Some(until) = candidate.hold_until_ms.filter(|until| *until > now_ms) {
            return closed(Blocked::Until(until));
        }
        let (limit, probe) = match candidate.circuit.phase(now_ms) {
            Phase::Open { until_ms } => return closed(Blocked::Until(until_ms)),
            Phase::HalfOpen => (1, true),
            Phase::Closed => (candidate.policy.max_in_flight, false),
        };
        let rate_room = candidate.policy.rate_limit.map_or(u32::MAX, |limit| {
            Limiter::new(&limit).available(candidate.rate_tat_us, now_ms * 1_000)
        });
        Self {
            limit,
            rate_room,
            probe,
            blocked: None,
        }
    }

    /// Rows to lease, with `busy` attempts already in flight.
    pub fn wanted(&self, busy: u32) -> u32 {
        self.limit.saturating_sub(busy).min(self.rate_room)
    }
}

/// What the store found at a destination during the claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Found {
    /// Attempts in flight there (unexpired leases not yet recorded).
    pub busy: u32,
    /// Rows this claim leased there.
    pub taken: u32,
    /// Due rows remain beyond those taken.
    pub more_due: bool,
    /// The earliest pending row not due yet (a retry, a lease, a
    /// not-before), Unix ms.
    pub next_pending_ms: Option<i64>,
}

/// Where a destination stands after a claim: what its row should hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Park {
    /// When a claim should look at it next; `None`: not until woken.
    pub next_due_at_ms: Option<i64>,
    /// Parked because nothing was due.
    pub idle: bool,
    /// The rate limiter's state after what was taken.
    pub rate_tat_us: Option<i64>,
    /// Due rows wait for attempts in flight there to finish.
    pub saturated: bool,
}

impl Park {
    /// Whether `candidate`'s row must be written to hold this.
    pub fn changes(&self, candidate: &Candidate) -> bool {
        self.next_due_at_ms != candidate.next_due_at_ms
            || self.idle != candidate.idle
            || self.rate_tat_us != candidate.rate_tat_us
    }
}

/// Where `candidate` is parked after a claim at `now_ms` that found
/// `found`, given what `opening` allowed; leases run `lease_ms`.
pub fn park(
    candidate: &Candidate,
    opening: &Opening,
    found: &Found,
    now_ms: i64,
    lease_ms: i64,
) -> Park {
    let limiter = candidate
        .policy
        .rate_limit
        .map(|limit| Limiter::new(&limit));
    let rate_tat_us = match limiter {
        Some(limiter) if found.taken > 0 => {
            Some(limiter.spend(candidate.rate_tat_us, now_ms * 1_000, found.taken))
        }
        _ => candidate.rate_tat_us,
    };
    let parked = |next_due_at_ms, idle| Park {
        next_due_at_ms,
        idle,
        rate_tat_us,
        saturated: false,
    };
    match opening.blocked {
        Some(Blocked::Indefinitely) => return parked(None, false),
        Some(Blocked::Until(until)) => return parked(Some(until), false),
        None => {}
    }
    if !found.more_due {
        // Nothing left to start: look again when the earliest pending row
        // (or a lease just taken) comes due, but the first time no later
        // than the recheck.
        let leased = (found.taken > 0).then(|| now_ms + lease_ms);
        let next = match (found.next_pending_ms, leased) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if candidate.idle {
            return parked(next, true);
        }
        let recheck = now_ms + millis(RECHECK);
        return parked(Some(next.map_or(recheck, |next| next.min(recheck))), true);
    }
    let in_flight = found.busy + found.taken;
    if opening.probe && in_flight >= 1 {
        // The probe's result decides; if it is never recorded, its lease
        // runs out and the destination is looked at again then.
        return parked(Some(now_ms + lease_ms), false);
    }
    if in_flight >= opening.limit {
        // Full: attempts finishing free it. The replica that started them
        // knows when, so the row stays due (no write); others skip it for
        // a moment on their own.
        return Park {
            saturated: true,
            ..parked(
                candidate
                    .next_due_at_ms
                    .filter(|due| *due <= now_ms)
                    .or(Some(now_ms)),
                false,
            )
        };
    }
    if let (Some(limiter), Some(tat)) = (limiter, rate_tat_us) {
        let next_us = limiter.next_at(tat);
        if next_us > now_ms * 1_000 {
            // Rate-limited: due again when the next request may go.
            let next_ms = (next_us + 999) / 1_000;
            return parked(Some(next_ms), false);
        }
    }
    // Room remains (the claim ran out of permits): still due.
    parked(
        candidate
            .next_due_at_ms
            .filter(|due| *due <= now_ms)
            .or(Some(now_ms)),
        false,
    )
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destinations::policy::{CircuitPolicy, RateLimit, RatePeriod};

    const NOW: i64 = 1_000_000;
    const LEASE: i64 = 60_000;

    fn candidate() -> Candidate {
        Candidate {
            tenant_id: "default".into(),
            destination: "http://a:80".into(),
            policy: Policy {
                max_in_flight: 4,
                rate_limit: None,
                circuit: CircuitPolicy {
                    failure_threshold: 3,
                    cooldown: Duration::from_secs(1),
                    cooldown_max: Duration::from_secs(8),
                },
            },
            status: DestinationStatus::Active,
            circuit: Circuit::default(),
            hold_until_ms: None,
            rate_tat_us: None,
            next_due_at_ms: Some(NOW - 5),
            idle: false,
        }
    }

    fn found(busy: u32, taken: u32, more_due: bool) -> Found {
        Found {
            busy,
            taken,
            more_due,
            next_pending_ms: None,
        }
    }

    #[test]
    fn a_healthy_destination_takes_up_to_its_free_slots() {
        let opening = Opening::of(&candidate(), NOW);
        assert_eq!(opening.wanted(0), 4);
        assert_eq!(opening.wanted(3), 1);
        assert_eq!(opening.wanted(5), 0);
        // Full with work waiting: stays due, nothing to write.
        let park = park(&candidate(), &opening, &found(1, 3, true), NOW, LEASE);
        assert!(park.saturated);
        assert!(!park.changes(&candidate()));
    }

    #[test]
    fn blocked_destinations_start_nothing_and_park_until_unblocked() {
        let mut paused = candidate();
        paused.status = DestinationStatus::Paused;
        let opening = Opening::of(&paused, NOW);
        assert_eq!(opening.wanted(0), 0);
        assert_eq!(
            park(&paused, &opening, &found(0, 0, true), NOW, LEASE).next_due_at_ms,
            None
        );

        let mut open = candidate();
        open.circuit = Circuit::default().opened(NOW, &open.policy.circuit);
        let opening = Opening::of(&open, NOW);
        assert_eq!(opening.blocked, Some(Blocked::Until(NOW + 1_000)));
        assert_eq!(
            park(&open, &opening, &found(0, 0, true), NOW, LEASE).next_due_at_ms,
            Some(NOW + 1_000)
        );

        let mut held = candidate();
        held.hold_until_ms = Some(NOW + 30_000);
        assert_eq!(
            Opening::of(&held, NOW).blocked,
            Some(Blocked::Until(NOW + 30_000))
        );
        held.hold_until_ms = Some(NOW);
        assert_eq!(
            Opening::of(&held, NOW).blocked,
            None,
            "a hold that ended is over"
        );
    }

    #[test]
    fn a_half_open_circuit_lets_one_probe_through() {
        let mut half_open = candidate();
        half_open.circuit = Circuit {
            open_until_ms: Some(NOW - 1),
            trips: 2,
        };
        let opening = Opening::of(&half_open, NOW);
        assert!(opening.probe);
        assert_eq!(opening.wanted(0), 1);
        assert_eq!(opening.wanted(1), 0, "one probe at a time, across replicas");
        let park = park(&half_open, &opening, &found(0, 1, true), NOW, LEASE);
        assert_eq!(
            park.next_due_at_ms,
            Some(NOW + LEASE),
            "the probe's result decides"
        );
    }

    #[test]
    fn rate_limited_destinations_park_until_their_next_request() {
        let mut limited = candidate();
        limited.policy.rate_limit = Some(RateLimit {
            requests: 10,
            period: RatePeriod::Second,
            burst: 2,
        });
        let opening = Opening::of(&limited, NOW);
        assert_eq!(opening.wanted(0), 2, "the burst, then the rate");
        let park = park(&limited, &opening, &found(0, 2, true), NOW, LEASE);
        // 2 sent at once: the next may go an interval (100 ms) later, less
        // the half interval of slack.
        assert_eq!(park.next_due_at_ms, Some(NOW + 50));
        limited.rate_tat_us = park.rate_tat_us;
        assert_eq!(Opening::of(&limited, NOW + 49).wanted(0), 0);
        assert_eq!(Opening::of(&limited, NOW + 50).wanted(0), 1);
    }

    #[test]
    fn an_empty_destination_parks_briefly_then_until_its_next_row() {
        let first = candidate();
        let opening = Opening::of(&first, NOW);
        let mut later = found(0, 0, false);
        later.next_pending_ms = Some(NOW + 30_000);
        let suspect = park(&first, &opening, &later, NOW, LEASE);
        assert!(suspect.idle);
        assert_eq!(
            suspect.next_due_at_ms,
            Some(NOW + 1_000),
            "no later than the recheck"
        );

        let second = Candidate {
            idle: true,
            next_due_at_ms: suspect.next_due_at_ms,
            ..candidate()
        };
        let settled = park(&second, &opening, &later, NOW + 1_000, LEASE);
        assert_eq!(settled.next_due_at_ms, Some(NOW + 30_000));
        let nothing = park(&second, &opening, &found(0, 0, false), NOW + 1_000, LEASE);
        assert_eq!(nothing.next_due_at_ms, None, "nothing pending: until woken");

        // A lease just taken counts as pending: its expiry is a look.
        let leased = park(&second, &opening, &found(0, 1, false), NOW, LEASE);
        assert_eq!(leased.next_due_at_ms, Some(NOW + LEASE));
    }
}
