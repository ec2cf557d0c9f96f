//! What this replica has in flight at each destination, as hints for its
//! claims. The database decides what may start (a claim counts leases
//! across every replica); these keep claims from asking for what cannot:
//!
//! - a destination full with this replica's own attempts is left out of
//!   the next claims until one of them finishes, which wakes the claimer;
//! - a destination a claim found full of other replicas' attempts is left
//!   out for [`OTHERS_BACKSTOP`], since their attempts finishing does not
//!   wake this replica;
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
    /// A destination's limit, learned when a claim found it full.
    limits: HashMap<DestinationRef, u32>,
    /// Destinations full of other replicas' attempts, until then.
    others: HashMap<DestinationRef, Instant>,
    /// Finished attempts whose results are not yet written.
    unrecorded: HashMap<DestinationRef, Vec<Lease>>,
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

    /// A claim found `destination` full at `limit`.
    pub fn saturated(&self, destination: &DestinationRef, limit: u32) {
        let mut state = self.lock();
        let mine = state.sending.get(destination).copied().unwrap_or(0);
        if mine < limit {
            state
                .others
                .insert(destination.clone(), Instant::now() + OTHERS_BACKSTOP);
        }
        state.limits.insert(destination.clone(), limit);
    }

    /// The destinations the next claim should leave out, and when the
    /// first of those full of others' attempts is worth a look again.
    pub fn skip(&self) -> (Vec<DestinationRef>, Option<Instant>) {
        let mut state = self.lock();
        let now = Instant::now();
        state.others.retain(|_, until| *until > now);
        let mut skip: Vec<DestinationRef> = state.others.keys().cloned().collect();
        let soonest = state.others.values().min().copied();
        for (destination, sending) in &state.sending {
            let full = state
                .limits
                .get(destination)
                .is_some_and(|limit| sending >= limit);
            if full && !state.others.contains_key(destination) {
                skip.push(destination.clone());
            }
        }
        (skip, soonest)
    }

    /// Finished attempts whose results await writing, by destination.
    pub fn unrecorded(&self) -> HashMap<DestinationRef, Vec<Lease>> {
        self.lock().unrecorded.clone()
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
        let limit = state.limits.get(&self.destination).copied();
        let Some(sending) = state.sending.get_mut(&self.destination) else {
            return;
        };
        let was_full = limit.is_some_and(|limit| *sending >= limit);
        *sending -= 1;
        if *sending == 0 {
            state.sending.remove(&self.destination);
            state.limits.remove(&self.destination);
        }
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
        assert!(in_flight.skip().0.is_empty(), "no limit known yet");
        in_flight.saturated(&a, 2);
        assert_eq!(in_flight.skip().0, std::slice::from_ref(&a));
        let finished = first.lease;
        first.finished(true);
        assert!(in_flight.skip().0.is_empty());
        assert_eq!(in_flight.unrecorded()[&a], [finished]);
        in_flight.recorded(&[(a.clone(), finished)]);
        assert!(in_flight.unrecorded().is_empty());
    }

    #[tokio::test]
    async fn a_destination_full_of_others_is_skipped_for_a_moment() {
        let in_flight = hints().await;
        let b = destination("b");
        in_flight.saturated(&b, 4);
        let (skip, until) = in_flight.skip();
        assert_eq!(skip, [b]);
        assert!(until.unwrap() <= Instant::now() + OTHERS_BACKSTOP);
    }
}
