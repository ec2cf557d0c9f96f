//! The rate limiter: GCRA (the generic cell rate algorithm), whose whole
//! state is one number per destination, the theoretical arrival time
//! (`tat`) of the next request. It is kept on the destination's row and
//! read and written only by a claim holding that row's lock, so every
//! replica draws from the same allowance.
//!
//! With a steady interval `T` (the period divided by the requests) and a
//! burst `B`, a request may go at `now` if `tat - (B - 1/2) * T <= now`;
//! sending `k` moves `tat` to `max(tat, now) + k * T`. Hence at most `B`
//! go at once after a quiet spell, and at most `requests + B` in any
//! period. The half interval of slack lets a claim that comes a little
//! late (its timer, its turn) keep the full rate: without it, every late
//! claim would push all later ones back.

use super::policy::RateLimit;

/// GCRA over one destination's stored `tat` (Unix microseconds).
#[derive(Debug, Clone, Copy)]
pub struct Limiter {
    interval_us: i64,
    tolerance_us: i64,
    burst: u32,
}

impl Limiter {
    /// The limiter of `limit`.
    pub fn new(limit: &RateLimit) -> Self {
        let interval_us = limit.interval_us();
        let burst = limit.burst.max(1);
        Self {
            interval_us,
            tolerance_us: interval_us
                .saturating_mul(i64::from(burst - 1))
                .saturating_add(interval_us / 2),
            burst,
        }
    }

    /// How many requests may go at `now_us`, given the stored `tat_us`.
    pub fn available(&self, tat_us: Option<i64>, now_us: i64) -> u32 {
        let tat = tat_us.unwrap_or(now_us).max(now_us);
        let slack = now_us + self.tolerance_us - tat;
        if slack < 0 {
            return 0;
        }
        let cells = slack / self.interval_us + 1;
        u32::try_from(cells).unwrap_or(u32::MAX).min(self.burst)
    }

    /// The `tat` after `sent` requests went at `now_us`.
    pub fn spend(&self, tat_us: Option<i64>, now_us: i64, sent: u32) -> i64 {
        let tat = tat_us.unwrap_or(now_us).max(now_us);
        tat.saturating_add(self.interval_us.saturating_mul(i64::from(sent)))
    }

    /// When the next request may go, given the stored `tat_us` (Unix
    /// microseconds; at or before `now_us` when one may go now).
    pub fn next_at(&self, tat_us: i64) -> i64 {
        tat_us - self.tolerance_us
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::destinations::policy::RatePeriod;

    fn limiter(requests: u32, burst: u32) -> Limiter {
        Limiter::new(&RateLimit {
            requests,
            period: RatePeriod::Second,
            burst,
        })
    }

    #[test]
    fn a_burst_then_the_steady_rate() {
        let limiter = limiter(50, 5);
        let now = 1_000_000_000;
        assert_eq!(limiter.available(None, now), 5);
        let tat = limiter.spend(None, now, 5);
        assert_eq!(limiter.available(Some(tat), now), 0);
        // Then one every 20 ms (the first of them up to half an interval early).
        assert_eq!(limiter.next_at(tat), now + 10_000);
        assert_eq!(limiter.available(Some(tat), now + 10_000), 1);
        assert_eq!(limiter.available(Some(tat), now + 9_999), 0);
        let tat = limiter.spend(Some(tat), now + 10_000, 1);
        assert_eq!(limiter.next_at(tat), now + 30_000);
        // A quiet second refills the burst, no more.
        assert_eq!(limiter.available(Some(tat), now + 10_000_000), 5);
    }

    #[test]
    fn no_burst_means_one_at_a_time() {
        let limiter = limiter(2, 1);
        let now = 5_000_000;
        assert_eq!(limiter.available(None, now), 1);
        let tat = limiter.spend(None, now, 1);
        assert_eq!(limiter.available(Some(tat), now + 249_999), 0);
        assert_eq!(limiter.available(Some(tat), now + 250_000), 1);
    }

    proptest! {
        /// Claims at arbitrary times, each taking what it wants up to what
        /// is available: in every window of one period at most
        /// `requests + burst` go.
        #[test]
        fn never_more_than_the_rate_plus_the_burst_in_any_period(
            requests in 1u32..200,
            burst in 1u32..20,
            claims in proptest::collection::vec((0i64..50_000, 0u32..40), 1..300),
        ) {
            let limiter = limiter(requests, burst);
            let mut now = 0i64;
            let mut tat = None;
            let mut sent: Vec<i64> = Vec::new();
            for (gap, wanted) in claims {
                now += gap;
                let granted = wanted.min(limiter.available(tat, now));
                if granted > 0 {
                    tat = Some(limiter.spend(tat, now, granted));
                }
                sent.extend(std::iter::repeat_n(now, granted as usize));
            }
            let period = 1_000_000;
            for (i, start) in sent.iter().enumerate() {
                let in_window = sent[i..].iter().take_while(|t| **t < start + period).count();
                prop_assert!(
                    in_window as u32 <= requests + burst,
                    "{in_window} in one period at {requests}/s, burst {burst}"
                );
            }
        }

        /// A claimer that always wants more gets the full rate.
        #[test]
        fn a_busy_destination_gets_its_whole_rate(requests in 1u32..100, burst in 1u32..10) {
            let limiter = limiter(requests, burst);
            let mut tat = None;
            let mut sent = 0u64;
            let step = 1_000;
            let seconds = 10;
            for now in (0..seconds * 1_000_000).step_by(step) {
                let granted = limiter.available(tat, now);
                if granted > 0 {
                    tat = Some(limiter.spend(tat, now, granted));
                    sent += u64::from(granted);
                }
            }
            let expected = u64::from(requests) * seconds as u64;
            prop_assert!(sent + 1 >= expected, "{sent} sent, {expected} expected");
            prop_assert!(sent <= expected + u64::from(burst), "{sent} sent, {expected} expected");
        }
    }
}
