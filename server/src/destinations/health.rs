//! Each replica's view of its destinations' health, from the attempts it
//! made: consecutive failures (which trip a circuit), probe results, a
//! receiver's request to hold off, and the counts behind the recent
//! success ratio and latency.
//!
//! The completer records every batch here before writing it and gets the
//! destination changes the batch needs ([`DestinationChange`]): nothing
//! for a healthy destination, so its row is not written on the hot path.
//! Counts and times are written every few seconds instead ([`Health::take`],
//! flushed by [`crate::destinations::flush`]).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use crate::{
    domain::AttemptErrorKind,
    store::{
        CircuitChange, DestinationChange,
        records::{Completion, DestinationRef},
    },
};

/// What one attempt says of its destination's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// 2xx.
    Success,
    /// No response, or 408, 425, 429, 5xx: the destination is struggling.
    Failure,
    /// Any other answer (the receiver is up and said no), or nothing sent.
    Neutral,
}

impl Signal {
    /// The signal of `completion`'s attempt.
    pub fn of(completion: &Completion) -> Self {
        let Some(attempt) = &completion.attempt else {
            return Self::Neutral;
        };
        match (attempt.status_code, attempt.error_kind) {
            (Some(200..=299), _) => Self::Success,
            (Some(408 | 425 | 429 | 500..=599), _) => Self::Failure,
            (Some(_), _) => Self::Neutral,
            (
                None,
                Some(AttemptErrorKind::Connect | AttemptErrorKind::Timeout | AttemptErrorKind::Io),
            ) => Self::Failure,
            (None, _) => Self::Neutral,
        }
    }
}

/// One destination's counts since the last flush, and its ongoing state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Attempts sent.
    pub attempts: u64,
    /// Of those, 2xx.
    pub successes: u64,
    /// Their durations added up, µs.
    pub duration_us: u64,
    /// The latest success, Unix ms.
    pub last_success_ms: Option<i64>,
    /// The latest failure, Unix ms.
    pub last_failure_ms: Option<i64>,
    /// A success was seen since the last flush.
    pub succeeded: bool,
    /// The first failure after the latest success, Unix ms: failing since.
    pub failing_since_ms: Option<i64>,
    /// Consecutive failures seen here.
    pub streak: u32,
}

#[derive(Debug, Default)]
struct Tracker {
    snapshot: Snapshot,
    /// This streak already asked for the circuit to open.
    tripped: bool,
    /// Something changed since the last flush.
    dirty: bool,
}

/// This replica's health view; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Health {
    trackers: Arc<Mutex<HashMap<DestinationRef, Tracker>>>,
}

impl Health {
    /// Records `batch` and returns what it changes at its destinations:
    /// a trip once a streak reaches its threshold, a probe's result, a
    /// receiver's hold.
    pub fn record(&self, batch: &[Completion]) -> Vec<DestinationChange> {
        let mut changes: HashMap<DestinationRef, DestinationChange> = HashMap::new();
        let mut trackers = self.lock();
        for completion in batch {
            let destination = DestinationRef {
                tenant_id: completion.tenant_id.clone(),
                destination: completion.destination.clone(),
            };
            let tracker = trackers.entry(destination.clone()).or_default();
            let signal = Signal::of(completion);
            let circuit = tracker.observe(completion, signal);
            if circuit.is_none() && completion.slow_down.is_none() {
                continue;
            }
            let change = changes
                .entry(destination.clone())
                .or_insert_with(|| DestinationChange {
                    destination,
                    circuit: None,
                    hold: None,
                });
            if circuit.is_some() {
                change.circuit = circuit;
            }
            if let Some(hold) = completion.slow_down {
                change.hold = Some(change.hold.map_or(hold, |held| held.max(hold)));
            }
        }
        let mut changes: Vec<DestinationChange> = changes.into_values().collect();
        changes.sort_by(|a, b| a.destination.cmp(&b.destination));
        changes
    }

    /// What changed since the last call, per destination; the counts start
    /// over, the streak and failing-since carry on.
    pub fn take(&self) -> Vec<(DestinationRef, Snapshot)> {
        let mut trackers = self.lock();
        let taken = trackers
            .iter_mut()
            .filter(|(_, tracker)| tracker.dirty)
            .map(|(destination, tracker)| {
                let snapshot = tracker.snapshot;
                tracker.dirty = false;
                tracker.snapshot = Snapshot {
                    failing_since_ms: snapshot.failing_since_ms,
                    streak: snapshot.streak,
                    ..Snapshot::default()
                };
                (destination.clone(), snapshot)
            })
            .collect();
        // Healthy destinations with nothing new are forgotten, so the map
        // holds what is active (or failing), not everything ever seen.
        trackers.retain(|_, tracker| tracker.dirty || tracker.snapshot.streak > 0);
        taken
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DestinationRef, Tracker>> {
        // A panic while holding this lock leaves counts behind, which are
        // still good enough to go on with.
        self.trackers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Tracker {
    /// Counts one attempt; returns the circuit change it makes, if any.
    fn observe(&mut self, completion: &Completion, signal: Signal) -> Option<CircuitChange> {
        self.dirty = true;
        let at_ms = completion.attempt.as_ref().map(|attempt| {
            self.snapshot.attempts += 1;
            self.snapshot.duration_us += u64::try_from(attempt.duration_us).unwrap_or(0);
            attempt.started_at_ms
        });
        match signal {
            Signal::Success => {
                self.snapshot.successes += 1;
                self.snapshot.succeeded = true;
                self.snapshot.last_success_ms = self.snapshot.last_success_ms.max(at_ms);
                self.snapshot.failing_since_ms = None;
                self.snapshot.streak = 0;
                self.tripped = false;
                completion.probe.then_some(CircuitChange::Close)
            }
            Signal::Failure => {
                self.snapshot.last_failure_ms = self.snapshot.last_failure_ms.max(at_ms);
                self.snapshot.failing_since_ms = self.snapshot.failing_since_ms.or(at_ms);
                self.snapshot.streak = self.snapshot.streak.saturating_add(1);
                if completion.probe {
                    return Some(CircuitChange::Reopen);
                }
                if self.snapshot.streak >= completion.failure_threshold && !self.tripped {
                    self.tripped = true;
                    return Some(CircuitChange::Trip {
                        failures: self.snapshot.streak,
                    });
                }
                None
            }
            Signal::Neutral if completion.attempt.is_some() => {
                // The receiver answered: it is up.
                self.snapshot.streak = 0;
                self.tripped = false;
                completion.probe.then_some(CircuitChange::Close)
            }
            // A probe that was never sent (its delivery's deadline had
            // passed) frees the way for another.
            Signal::Neutral => completion.probe.then_some(CircuitChange::ProbeUnsent),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use uuid::Uuid;

    use super::*;
    use crate::{domain::Decision, store::records::AttemptRecord};

    fn completion(status: Option<u16>, probe: bool) -> Completion {
        Completion {
            delivery_id: Uuid::now_v7(),
            tenant_id: "default".into(),
            lease_token: Uuid::new_v4(),
            attempt_number: 1,
            destination: "http://a:80".into(),
            probe,
            failure_threshold: 3,
            attempt: Some(AttemptRecord {
                number: 1,
                started_at_ms: 1_000,
                duration_us: 500,
                status_code: status,
                error_kind: status.is_none().then_some(AttemptErrorKind::Connect),
                error_message: None,
                response_excerpt: bytes::Bytes::new(),
            }),
            reason: None,
            decision: Decision::Succeeded,
            slow_down: None,
        }
    }

    #[test]
    fn signals_follow_the_classification() {
        assert_eq!(Signal::of(&completion(Some(204), false)), Signal::Success);
        for failing in [Some(503), Some(429), Some(408), None] {
            assert_eq!(Signal::of(&completion(failing, false)), Signal::Failure);
        }
        assert_eq!(Signal::of(&completion(Some(400), false)), Signal::Neutral);
        let mut unsent = completion(None, false);
        unsent.attempt = None;
        assert_eq!(Signal::of(&unsent), Signal::Neutral);
    }

    #[test]
    fn a_streak_trips_once_and_a_success_resets_it() {
        let health = Health::default();
        let fail = || completion(Some(503), false);
        assert!(health.record(&[fail(), fail()]).is_empty());
        let changes = health.record(&[fail(), fail()]);
        assert_eq!(changes.len(), 1);
        assert_eq!(
            changes[0].circuit,
            Some(CircuitChange::Trip { failures: 3 })
        );
        assert!(health.record(&[fail()]).is_empty(), "one trip per streak");
        assert!(health.record(&[completion(Some(204), false)]).is_empty());
        assert!(health.record(&[fail(), fail()]).is_empty());
        assert_eq!(
            health.record(&[fail()]).len(),
            1,
            "a new streak trips again"
        );
    }

    #[test]
    fn probes_close_or_reopen_and_holds_are_passed_on() {
        let health = Health::default();
        let closed = health.record(&[completion(Some(204), true)]);
        assert_eq!(closed[0].circuit, Some(CircuitChange::Close));
        let reopened = health.record(&[completion(Some(500), true)]);
        assert_eq!(reopened[0].circuit, Some(CircuitChange::Reopen));
        let mut slow = completion(Some(429), false);
        slow.slow_down = Some(Duration::from_secs(30));
        let held = health.record(&[slow]);
        assert_eq!(held[0].hold, Some(Duration::from_secs(30)));
        assert_eq!(held[0].circuit, None);
    }

    #[test]
    fn snapshots_count_and_start_over() {
        let health = Health::default();
        health.record(&[completion(Some(204), false), completion(Some(503), false)]);
        let taken = health.take();
        assert_eq!(taken.len(), 1);
        let snapshot = taken[0].1;
        assert_eq!((snapshot.attempts, snapshot.successes), (2, 1));
        assert!(snapshot.succeeded);
        assert_eq!(snapshot.failing_since_ms, Some(1_000));
        assert_eq!(snapshot.streak, 1);
        let again = health.take();
        assert!(again.is_empty(), "nothing new");
    }
}
