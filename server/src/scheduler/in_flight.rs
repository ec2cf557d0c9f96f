//! What this replica has in flight at each destination, as hints for its
//! claims. The database decides what may start (a claim counts leases
//! across every replica); these keep claims from asking for what cannot:
//!
//! - a destination a claim found full is left out of the next claims
//!   until one of this replica's attempts there finishes, which wakes the
//!   claimer; when none of them is there (it is full of other replicas'
//!   attempts, whose finishing does not wake this one), for
//!   [`RECHECK_FULL`];
//! - a destination whose circuit a batch of results is opening is left out
//!   until the batch is written;
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

/// How long a claim skips a destination it found full of other replicas'
/// attempts, or full while one of this replica's slots there passed on.
pub const RECHECK_FULL: Duration = Duration::from_millis(50);

/// Longest a destination whose circuit is opening is left out of claims
/// while the batch that opens it is written.
pub const OPENING_HOLD: Duration = Duration::from_secs(5);

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
    /// The epochs of the latest attempt finished, and of the latest slot
    /// passed on, at each destination.
    latest: HashMap<DestinationRef, Latest>,
}

impl State {
    /// The latest finish and pass at `destination`, kept for the most
    /// recent destinations only.
    fn latest_at(&mut self, destination: &DestinationRef) -> &mut Latest {
        if self.latest.len() >= FINISHES_KEPT && !self.latest.contains_key(destination) {
            // Claims are short: an epoch this far back is older than any
            // claim still in flight, and tells none of them anything.
            let horizon = self.epoch.saturating_sub(FINISHES_KEPT as u64);
            self.latest
                .retain(|_, latest| latest.finished.max(latest.passed) > horizon);
        }
        self.latest.entry(destination.clone()).or_default()
    }
}

/// When a destination last saw one of this replica's slots end or pass on.
#[derive(Debug, Default, Clone, Copy)]
struct Latest {
    /// The epoch of the latest attempt finished there (its slot freed).
    finished: u64,
    /// The epoch of the latest slot passed to the next delivery there.
    passed: u64,
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
        let latest = state.latest.get(destination).copied().unwrap_or_default();
        if latest.finished > epoch {
            drop(state);
            self.wakeup.raise_local();
            return;
        }
        // A slot passed on while the claim counted may have been counted
        // twice (the lease it left and the one it took), so "full" may be
        // one short of the truth: looked at again shortly rather than left
        // until an attempt there finishes, which a destination busy with
        // hand-overs may not do for long.
        let until = if state.sending.contains_key(destination) && latest.passed <= epoch {
            None
        } else {
            Some(Instant::now() + RECHECK_FULL)
        };
        state.full.insert(destination.clone(), until);
    }

    /// `destinations`' circuits are opening: a batch of results tripped
    /// them and is being written. Claims leave them out until it is
    /// ([`InFlight::opened`]; at most [`OPENING_HOLD`] if the write never
    /// lands), so a receiver failing at once does not take a claim's worth
    /// of requests more while the circuit's state reaches the database.
    pub fn opening(&self, destinations: &[DestinationRef]) {
        if destinations.is_empty() {
            return;
        }
        let until = Instant::now() + OPENING_HOLD;
        let mut state = self.lock();
        for destination in destinations {
            state.full.insert(destination.clone(), Some(until));
        }
    }

    /// `destinations`' circuits are open in the database, which keeps
    /// claims off them from now on.
    pub fn opened(&self, destinations: &[DestinationRef]) {
        let mut state = self.lock();
        for destination in destinations {
            state.full.remove(destination);
        }
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

    /// This replica's attempts in flight at `destination`.
    pub fn sending_at(&self, destination: &DestinationRef) -> u32 {
        self.lock().sending.get(destination).copied().unwrap_or(0)
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
    /// The destination it is a place at.
    pub fn destination(&self) -> &DestinationRef {
        &self.destination
    }

    /// The attempt's result is about to be handed to the completer: until
    /// the completer writes it, its lease no longer counts as in flight
    /// (say so before the result is handed over, or a quick completer could
    /// write it before it was counted and leave it counted for good; and
    /// only once the slot's pass to a next delivery, if any, is committed).
    pub fn recording(&self) {
        self.in_flight
            .lock()
            .unrecorded
            .entry(self.destination.clone())
            .or_default()
            .push(self.lease);
    }

    /// The slot passes to the destination's next delivery, on `lease`: as
    /// many are in flight there as before.
    pub fn pass_to(&mut self, lease: Lease) {
        self.lease = lease;
        let mut state = self.in_flight.lock();
        state.epoch += 1;
        let epoch = state.epoch;
        state.latest_at(&self.destination).passed = epoch;
    }

    /// The attempt is over (its result handed to the completer, or cut
    /// off): the slot is free.
    pub fn finished(mut self) {
        self.close();
    }

    fn close(&mut self) {
        if !self.open {
            return;
        }
        self.open = false;
        let mut state = self.in_flight.lock();
        if let Some(sending) = state.sending.get_mut(&self.destination) {
            *sending -= 1;
            if *sending == 0 {
                state.sending.remove(&self.destination);
            }
        }
        state.epoch += 1;
        let epoch = state.epoch;
        state.latest_at(&self.destination).finished = epoch;
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
        self.close();
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
        first.recording();
        first.finished();
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
        first.recording();
        first.finished();
        in_flight.saturated(&a, claim.epoch);
        assert!(in_flight.snapshot().skip.is_empty());
    }

    #[tokio::test]
    async fn a_slot_passed_on_during_the_claim_has_the_destination_looked_at_again_soon() {
        let in_flight = hints().await;
        let a = destination("a");
        let mut first = in_flight.start(a.clone(), lease());
        let _second = in_flight.start(a.clone(), lease());
        let claim = in_flight.snapshot();
        // The claim may have counted both the lease `first` left and the
        // one it took.
        first.recording();
        first.pass_to(lease());
        in_flight.saturated(&a, claim.epoch);
        let snapshot = in_flight.snapshot();
        assert_eq!(snapshot.skip, std::slice::from_ref(&a));
        assert!(snapshot.others_until.unwrap() <= Instant::now() + RECHECK_FULL);
        assert_eq!(
            in_flight.sending_at(&a),
            2,
            "a passed slot is still in flight"
        );
        first.finished();
        assert_eq!(in_flight.sending_at(&a), 1);
    }

    #[tokio::test]
    async fn a_destination_whose_circuit_is_opening_is_skipped_until_it_is_written() {
        let in_flight = hints().await;
        let (a, b) = (destination("a"), destination("b"));
        in_flight.opening(std::slice::from_ref(&a));
        let snapshot = in_flight.snapshot();
        assert_eq!(snapshot.skip, std::slice::from_ref(&a));
        assert!(snapshot.others_until.unwrap() <= Instant::now() + OPENING_HOLD);
        in_flight.opened(&[a, b]);
        assert!(in_flight.snapshot().skip.is_empty());
    }

    #[tokio::test]
    async fn a_destination_full_of_others_is_skipped_for_a_moment() {
        let in_flight = hints().await;
        let b = destination("b");
        in_flight.saturated(&b, in_flight.snapshot().epoch);
        let snapshot = in_flight.snapshot();
        assert_eq!(snapshot.skip, [b]);
        assert!(snapshot.others_until.unwrap() <= Instant::now() + RECHECK_FULL);
    }
}
