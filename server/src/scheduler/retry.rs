//! Retry timing as pure functions: what to do after an attempt, and how
//! long to wait before the next one.

use std::time::Duration;

use rand::Rng;

use crate::{domain::Decision, transport::classify::Verdict};

/// Backoff bounds and the `Retry-After` cap.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Floor of every computed backoff.
    pub min_backoff: Duration,
    /// Cap of every computed backoff.
    pub max_backoff: Duration,
    /// Longest `Retry-After` honoured.
    pub retry_after_cap: Duration,
}

impl RetryPolicy {
    /// Decides what follows attempt `attempt` (1-based) of `max_attempts`.
    /// `until_deadline` is the time left before the delivery's deadline, if
    /// it has one: a retry that would start after it dead-letters instead.
    pub fn decide(
        &self,
        verdict: &Verdict,
        attempt: u32,
        max_attempts: u32,
        until_deadline: Option<Duration>,
    ) -> Decision {
        let delay = match verdict {
            Verdict::Success => return Decision::Succeeded,
            Verdict::Permanent => return Decision::DeadLetter,
            Verdict::Retry { .. } if attempt >= max_attempts => return Decision::DeadLetter,
            Verdict::Retry {
                retry_after: Some(asked),
            } => (*asked).min(self.retry_after_cap),
            Verdict::Retry { retry_after: None } => self.backoff(attempt, &mut rand::rng()),
        };
        match until_deadline {
            Some(left) if delay >= left => Decision::DeadLetter,
            _ => Decision::Retry { delay },
        }
    }

    /// Exponential backoff with full jitter: uniform between the floor and
    /// `min(cap, floor * 2^(attempt - 1))`, so retries of many deliveries
    /// that failed together spread out instead of arriving in waves.
    pub fn backoff(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let exponent = attempt.saturating_sub(1).min(32);
        let ceiling = self
            .min_backoff
            .saturating_mul(1u32 << exponent.min(31))
            .min(self.max_backoff);
        if ceiling <= self.min_backoff {
            return ceiling;
        }
        rng.random_range(self.min_backoff..=ceiling)
    }
}

#[cfg(test)]
mod tests {
    use rand::{SeedableRng, rngs::StdRng};

    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        min_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(60),
        retry_after_cap: Duration::from_secs(30),
    };

    #[test]
    fn backoff_stays_between_floor_and_growing_ceiling() {
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 1..=40 {
            let ceiling =
                Duration::from_secs(1u64 << (attempt - 1).min(20)).min(POLICY.max_backoff);
            for _ in 0..50 {
                let delay = POLICY.backoff(attempt, &mut rng);
                assert!(
                    delay >= POLICY.min_backoff && delay <= ceiling,
                    "attempt {attempt}: {delay:?}"
                );
            }
        }
        assert_eq!(POLICY.backoff(1, &mut rng), POLICY.min_backoff);
    }

    #[test]
    fn decisions_follow_the_classification() {
        let retry = Verdict::Retry { retry_after: None };
        assert_eq!(
            POLICY.decide(&Verdict::Success, 1, 3, None),
            Decision::Succeeded
        );
        assert_eq!(
            POLICY.decide(&Verdict::Permanent, 1, 3, None),
            Decision::DeadLetter
        );
        assert_eq!(
            POLICY.decide(&retry, 3, 3, None),
            Decision::DeadLetter,
            "last attempt"
        );
        assert!(matches!(
            POLICY.decide(&retry, 2, 3, None),
            Decision::Retry { .. }
        ));
    }

    #[test]
    fn a_retry_past_the_deadline_dead_letters() {
        let asked = Verdict::Retry {
            retry_after: Some(Duration::from_secs(10)),
        };
        assert_eq!(
            POLICY.decide(&asked, 1, 3, Some(Duration::from_secs(5))),
            Decision::DeadLetter
        );
        assert_eq!(
            POLICY.decide(&asked, 1, 3, Some(Duration::from_secs(60))),
            Decision::Retry {
                delay: Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let asked = |secs| Verdict::Retry {
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(
            POLICY.decide(&asked(7), 1, 3, None),
            Decision::Retry {
                delay: Duration::from_secs(7)
            }
        );
        assert_eq!(
            POLICY.decide(&asked(3600), 1, 3, None),
            Decision::Retry {
                delay: POLICY.retry_after_cap
            }
        );
    }
}
