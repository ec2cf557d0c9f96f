//! What this replica has in flight at each destination, as hints for its
//! claims. The database decides what may start (a claim counts leases
//! across every replica); these keep claims from asking for what cannot:
//!
//! - a destination a claim found full is left out of the next claims
//!   until one of this replica's attempts there finishes, which wakes the
//!   claimer; when none of them is there (it is full of other replicas'
//!   attempts, whose finishing does not wake this one), for
//!   [`OTHERS_BACKSTOP`];
//! - an attempt that finished but whose result the completer has not yet
//!   written still holds a lease in the database: claims are told, so the
//!   slot it used is free at once instead of after the write.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use crate::{
    signal::Signal,
    store::records::{DestinationRef, Lease},
};

/// How long a claim skips a destination full of other replicas' attempts.
pub const OTHERS_BACKSTOP: Duration = Duration::from_millis(50);

/// Destinations whose latest finish is remembered (the most recent ones).
const FINISHES_KEPT: usize = 4096;

/// The hints; cheap to clone.
#[derive(Clone, Debug)]
pub struct InFlight {
    state: Arc<Mutex<State>>,
    wakeup: Signal,
}

#[derive(Debug, Default)]
struct State {
    /// Attempts sending now, per destination.
    sending: HashMap<DestinationRef, u32>,
    /// Destinations found full: until one of ours there finishes (`None`),
    /// or until then.
    full: HashMap<DestinationRef, Option<Instant>>,
    /// Finished attempts whose results are not yet written.
    unrecorded: HashMap<DestinationRef, Vec<Lease>>,
    /// Counts every attempt finished on this replica.
    epoch: u64,
    /// The epoch of the latest attempt finished at each destination.
    last_finished: HashMap<DestinationRef, u64>,
}

/// What a claim is told when it starts, and the epoch it started at.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Destinations to leave out.
    pub skip: Vec<DestinationRef>,
    /// When the first of those full of others' attempts is worth a look.
    pub others_until: Option<Instant>,
    /// Finished attempts whose results await writing, by destination.
    pub unrecorded: HashMap<DestinationRef, Vec<Lease>>,
    /// Attempts finished before it was taken.
    pub epoch: u64,
}

/// One attempt's place at its destination, from claim to the hand-over
/// of its result: [`Slot::finished`] frees it.
#[derive(Debug)]
pub struct Slot {
    in_flight: InFlight,
    destination: DestinationRef,
    lease: Lease,
    open: bool,
}

impl InFlight {
    /// Hints that wake `wakeup` when a full destination frees up.
    pub fn new(wakeup: Signal) -> Self {
        Self {
            state: Arc::default(),
            wakeup,
        }
    }

    /// An attempt on `lease` starts at `destination`.
    pub fn start(&self, destination: DestinationRef, lease: Lease) -> Slot {
        *self.lock().sending.entry(destination.clone()).or_default() += 1;
        Slot {
            in_flight: self.clone(),
            destination,
            lease,
            open: true,
        }
    }

    /// A claim that started at `epoch` found `destination` full. If one of
    /// this replica's attempts there finished since, the claim counted it
    /// as in flight: nothing is marked, and the claimer is woken to look
    /// again at once.
    pub fn saturated(&self, destination: &DestinationRef, epoch: u64) {
        let mut state = self.lock();
        if state
            .last_finished
            .get(destination)
            .is_some_and(|finished| *finished > epoch)
        {
            drop(state);
            self.wakeup.raise_local();
            return;
        }
        let until = if state.sending.contains_key(destination) {
            None
        } else {
            Some(Instant::now() + OTHERS_BACKSTOP)
        };
        state.full.insert(destination.clone(), until);
    }

    /// What the next claim should know: the destinations to leave out,
    /// when the first of those full of others' attempts is worth a look
    /// again, and the attempts that finished but await recording.
    pub fn snapshot(&self) -> Snapshot {
        let mut state = self.lock();
        let now = Instant::now();
        state
            .full
            .retain(|_, until| until.is_none_or(|until| until > now));
        Snapshot {
            skip: state.full.keys().cloned().collect(),
            others_until: state.full.values().flatten().min().copied(),
            unrecorded: state.unrecorded.clone(),
            epoch: state.epoch,
        }
    }

    /// The completer wrote (or gave up writing) these results.
    pub fn recorded(&self, written: &[(DestinationRef, Lease)]) {
        let mut state = self.lock();
        for (destination, lease) in written {
            if let Some(leases) = state.unrecorded.get_mut(destination) {
                leases.retain(|held| held != lease);
                if leases.is_empty() {
                    state.unrecorded.remove(destination);
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves hints behind, which the
        // database's counts make safe to go on with.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Slot {
    /// The attempt's result was handed to the completer (`recording`) or
    /// will never be (the attempt was cut off): the slot is free.
    pub fn finished(mut self, recording: bool) {
        self.close(recording);
    }

    fn close(&mut self, recording: bool) {
        if !self.open {
            return;
        }
        self.open = false;
        let mut state = self.in_flight.lock();
        if recording {
            state
                .unrecorded
                .entry(self.destination.clone())
                .or_default()
                .push(self.lease);
        }
        if let Some(sending) = state.sending.get_mut(&self.destination) {
            *sending -= 1;
            if *sending == 0 {
                state.sending.remove(&self.destination);
            }
        }
        state.epoch += 1;
        let epoch = state.epoch;
        state.last_finished.insert(self.destination.clone(), epoch);
        if state.last_finished.len() > FINISHES_KEPT {
            // Claims are short: a finish this far back is older than any
            // claim still in flight, and tells none of them anything.
            let horizon = epoch.saturating_sub(FINISHES_KEPT as u64);
            state
                .last_finished
                .retain(|_, finished| *finished > horizon);
        }
        let was_full = state.full.remove(&self.destination).is_some();
        drop(state);
        if was_full {
            self.in_flight.wakeup.raise_local();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // An attempt task aborted at shutdown: its lease is given back.
        self.close(false);
    }
}

#[cfg(test)]
mod tests {
    use tokio_util::sync::CancellationToken;
    use uuid::Uuid;

    use super::*;
    use crate::store::{Channel, Store};

    fn destination(name: &str) -> DestinationRef {
        DestinationRef {
            tenant_id: "default".into(),
            destination: format!("http://{name}:80"),
        }
    }

    fn lease() -> Lease {
        Lease {
            delivery_id: Uuid::now_v7(),
            token: Uuid::new_v4(),
        }
    }

    async fn hints() -> InFlight {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        InFlight::new(Signal::start(&store, Channel::Work, &CancellationToken::new()).await)
    }

    #[tokio::test]
    async fn a_destination_full_of_our_attempts_is_skipped_until_one_finishes() {
        let in_flight = hints().await;
        let a = destination("a");
        let first = in_flight.start(a.clone(), lease());
        let _second = in_flight.start(a.clone(), lease());
        let claim = in_flight.snapshot();
        assert!(claim.skip.is_empty(), "not known to be full");
        in_flight.saturated(&a, claim.epoch);
        let next = in_flight.snapshot();
        assert_eq!(next.skip, std::slice::from_ref(&a));
        assert_eq!(next.others_until, None, "until one of ours finishes");
        let finished = first.lease;
        first.finished(true);
        let after = in_flight.snapshot();
        assert!(after.skip.is_empty());
        assert_eq!(after.unrecorded[&a], [finished]);
        in_flight.recorded(&[(a.clone(), finished)]);
        assert!(in_flight.snapshot().unrecorded.is_empty());
    }

    #[tokio::test]
    async fn a_finish_during_the_claim_keeps_the_destination_in_view() {
        let in_flight = hints().await;
        let a = destination("a");
        let first = in_flight.start(a.clone(), lease());
        let _second = in_flight.start(a.clone(), lease());
        let claim = in_flight.snapshot();
        // The claim counted `first` as in flight; it finished meanwhile.
        first.finished(true);
        in_flight.saturated(&a, claim.epoch);
        assert!(in_flight.snapshot().skip.is_empty());
    }

    #[tokio::test]
    async fn a_destination_full_of_others_is_skipped_for_a_moment() {
        let in_flight = hints().await;
        let b = destination("b");
        in_flight.saturated(&b, in_flight.snapshot().epoch);
        let snapshot = in_flight.snapshot();
        assert_eq!(snapshot.skip, [b]);
        assert!(snapshot.others_until.unwrap() <= Instant::now() + OTHERS_BACKSTOP);
    }
}
