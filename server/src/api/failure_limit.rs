//! Slows key guessing: failed authentications are counted per client
//! address (an IPv6 client by its /64) and per key id, each against a
//! rate with a burst (the generic cell rate algorithm: a key's
//! "theoretical arrival time" moves one interval on at every failure).
//!
//! An address over its budget is refused without its key being looked up,
//! after waiting out its delay (at most [`MAX_WAIT`]), so however many
//! calls it makes at once, no more keys are checked than the rate allows;
//! a refusal unchecked counts as a failure too. A key id over its budget
//! (someone guessing one known key's secret from many addresses) makes
//! its failures wait, but its right key is still served, so knowing a key
//! id does not lock its owner out.
//!
//! Memory is bounded: each table keeps at most [`MAX_TRACKED`] entries,
//! dropping those whose budget has fully come back; when that is not
//! enough, newcomers share one overflow entry (so a flood of new
//! addresses slows itself rather than evicting the ones it floods with).

use std::{
    collections::HashMap,
    hash::Hash,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::destinations::policy::Rate;

/// Entries per table, at most.
const MAX_TRACKED: usize = 50_000;
/// The longest one call is held before its answer.
pub const MAX_WAIT: Duration = Duration::from_secs(5);
/// How far beyond its burst a key's debt may grow: a flood stops
/// lengthening its own penalty after this.
const MAX_DEBT: Duration = Duration::from_secs(60);

/// One table of budgets.
#[derive(Debug)]
struct Budgets<K> {
    /// Key -> theoretical arrival time; `None` is the overflow entry.
    due: HashMap<Option<K>, Instant>,
    interval: Duration,
    tolerance: Duration,
}

impl<K: Hash + Eq + Clone> Budgets<K> {
    fn new(rate: Rate, burst: u32) -> Self {
        let interval = rate.period.duration() / rate.requests.max(1);
        Self {
            due: HashMap::new(),
            interval,
            tolerance: interval * burst.max(1),
        }
    }

    /// The entry `key` is counted in: its own, or the overflow one when
    /// the table is full of keys still in debt.
    fn slot(&mut self, key: &K, now: Instant) -> Option<K> {
        let slot = Some(key.clone());
        if self.due.contains_key(&slot) || self.due.len() < MAX_TRACKED {
            return slot;
        }
        self.due.retain(|_, due| *due > now);
        (self.due.len() < MAX_TRACKED).then_some(slot).flatten()
    }

    /// How long `key` must wait before it is within its budget.
    fn delay(&self, key: &K, now: Instant) -> Duration {
        self.due
            .get(&Some(key.clone()))
            .or_else(|| self.due.get(&None))
            .map_or(Duration::ZERO, |due| {
                due.saturating_duration_since(now)
                    .saturating_sub(self.tolerance)
            })
    }

    /// Counts a failure of `key`; returns how long it must wait now.
    fn fail(&mut self, key: &K, now: Instant) -> Duration {
        let slot = self.slot(key, now);
        let cap = now + self.tolerance + MAX_DEBT;
        let due = self.due.entry(slot).or_insert(now);
        *due = ((*due).max(now) + self.interval).min(cap);
        due.saturating_duration_since(now)
            .saturating_sub(self.tolerance)
    }
}

/// What the limiter says about a call before its key is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Look the key up.
    Check,
    /// Refuse it unchecked after waiting this long: its address is over
    /// its budget.
    Refuse(Duration),
}

/// Failed-authentication budgets per address and per key id; cheap to
/// clone (the tables are shared).
#[derive(Clone, Debug)]
pub struct FailureLimiter {
    addresses: Arc<Mutex<Budgets<IpAddr>>>,
    key_ids: Arc<Mutex<Budgets<String>>>,
}

impl FailureLimiter {
    /// A limiter allowing `rate` failures with bursts of `burst`, per
    /// address and per key id.
    pub fn new(rate: Rate, burst: u32) -> Self {
        Self {
            addresses: Arc::new(Mutex::new(Budgets::new(rate, burst))),
            key_ids: Arc::new(Mutex::new(Budgets::new(rate, burst))),
        }
    }

    /// Whether a call from `address` may have its key looked up. A
    /// refusal counts as a failure of the address.
    pub fn before_lookup(&self, address: Option<IpAddr>) -> Verdict {
        let Some(address) = address.map(client) else {
            return Verdict::Check;
        };
        let now = Instant::now();
        let mut addresses = lock(&self.addresses);
        if addresses.delay(&address, now).is_zero() {
            return Verdict::Check;
        }
        Verdict::Refuse(addresses.fail(&address, now).min(MAX_WAIT))
    }

    /// Counts a failed lookup from `address` of a key claiming `key_id`;
    /// returns how long to hold the answer.
    pub fn failed(&self, address: Option<IpAddr>, key_id: Option<&str>) -> Duration {
        let now = Instant::now();
        let by_address = address.map_or(Duration::ZERO, |address| {
            lock(&self.addresses).fail(&client(address), now)
        });
        let by_key = key_id.map_or(Duration::ZERO, |id| {
            lock(&self.key_ids).fail(&id.to_owned(), now)
        });
        by_address.max(by_key).min(MAX_WAIT)
    }
}

/// The client an address stands for: an IPv4 address (also when mapped
/// into IPv6), or an IPv6 address's /64, which one client usually holds
/// whole.
fn client(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destinations::policy::RatePeriod;

    fn ten_per_second() -> Rate {
        Rate {
            requests: 10,
            period: RatePeriod::Second,
        }
    }

    #[test]
    fn a_burst_passes_then_each_failure_waits_an_interval() {
        let mut budgets = Budgets::<u32>::new(ten_per_second(), 3);
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(budgets.fail(&1, now), Duration::ZERO);
        }
        assert_eq!(budgets.delay(&1, now), Duration::ZERO);
        assert_eq!(budgets.fail(&1, now), Duration::from_millis(100));
        assert_eq!(budgets.delay(&1, now), Duration::from_millis(100));
        assert_eq!(budgets.delay(&2, now), Duration::ZERO, "others are free");
        let later = now + Duration::from_millis(100);
        assert_eq!(
            budgets.delay(&1, later),
            Duration::ZERO,
            "the budget comes back"
        );
    }

    #[test]
    fn a_flood_cannot_grow_a_penalty_without_bound() {
        let mut budgets = Budgets::<u32>::new(ten_per_second(), 1);
        let now = Instant::now();
        for _ in 0..10_000 {
            budgets.fail(&1, now);
        }
        assert!(budgets.delay(&1, now) <= MAX_DEBT);
    }

    #[test]
    fn a_full_table_sends_newcomers_to_one_shared_entry() {
        let mut budgets = Budgets::<usize>::new(ten_per_second(), 1);
        let now = Instant::now();
        for key in 0..MAX_TRACKED {
            budgets.fail(&key, now);
        }
        budgets.fail(&MAX_TRACKED, now);
        budgets.fail(&(MAX_TRACKED + 1), now);
        assert_eq!(budgets.due.len(), MAX_TRACKED + 1, "one overflow entry");
        assert!(!budgets.delay(&(MAX_TRACKED + 2), now).is_zero());
        // Once the debts are paid, the table makes room again.
        let later = now + Duration::from_secs(120);
        assert_eq!(
            budgets.slot(&(MAX_TRACKED + 3), later),
            Some(MAX_TRACKED + 3)
        );
        assert!(budgets.due.len() <= 1, "{}", budgets.due.len());
    }

    #[test]
    fn an_address_over_its_budget_is_refused_before_lookup() {
        let limiter = FailureLimiter::new(ten_per_second(), 2);
        let attacker: IpAddr = "2001:db8::1".parse().unwrap();
        let neighbour: IpAddr = "2001:db8::2".parse().unwrap();
        let other: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(limiter.before_lookup(Some(attacker)), Verdict::Check);
        limiter.failed(Some(attacker), Some("k1"));
        limiter.failed(Some(attacker), Some("k2"));
        assert!(!limiter.failed(Some(attacker), Some("k3")).is_zero());
        assert!(
            matches!(limiter.before_lookup(Some(neighbour)), Verdict::Refuse(_)),
            "the same /64 is the same client"
        );
        assert_eq!(limiter.before_lookup(Some(other)), Verdict::Check);
        assert_eq!(limiter.before_lookup(None), Verdict::Check);
    }
}
