//! Hand-over: slots whose attempts succeeded at a full destination pass
//! straight to its next due deliveries ([`Store::hand_over`]) instead of
//! going back for a claim.
//!
//! A slot that came to its delivery this way (its destination's last
//! attempt there succeeded) leases the next one while its attempt is in
//! flight ([`HandOvers::lease_ahead`]), so that when the attempt succeeds
//! the next starts at once, without a statement between them: at a
//! destination answering in 20 ms, a statement between attempts was a
//! twentieth of every slot's time. The destination's policy is checked
//! when the lease is taken; the delivery starts only if the attempt
//! succeeded, no destination changed since ([`Changes`]: a pause or a
//! lowered limit reaches it as it reaches a delivery not yet leased), and
//! its lease outlasts a whole attempt. Otherwise it is given back,
//! uncounted. Leased ahead, it counts as in flight in the database, so
//! other replicas and this replica's claims see the destination a little
//! fuller than it is, never emptier.
//!
//! Slots that finish at one destination while its statement runs wait at
//! its desk, and the next statement leases one row for each of them: a
//! destination whose receiver answers at once has many slots finishing
//! every millisecond, and one statement each would cost the database more
//! than the claims they replace. Where the database takes two writers at
//! once (PostgreSQL), a crowd of waiting slots starts a second statement
//! beside the first. Either way the statement checks this replica's
//! attempts at the destination as the scheduler counts them, which passing
//! slots on does not change, so statements side by side cannot take the
//! destination past its limit.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use tokio::time::Instant;

use tokio::sync::{Semaphore, oneshot};

use super::in_flight::InFlight;
use crate::{
    destinations::{changes::Changes, policy::Policy},
    store::{
        HandOver, Store,
        records::{ClaimedDelivery, DestinationRef},
    },
};

/// Slots waiting at a destination whose statement is running that start a
/// second one beside it, where the database takes two writers at once.
const CROWD: usize = 4;

/// Where slots pass to their destinations' next deliveries; shared by
/// every attempt task.
pub(super) struct HandOvers {
    /// Where the next deliveries are leased.
    pub store: Store,
    /// The global permits: only while some are free (permits are not
    /// scarce) does a slot stay with its destination; otherwise it goes
    /// back to be shared fairly by a claim.
    pub permits: Arc<Semaphore>,
    /// What this replica has in flight per destination.
    pub in_flight: InFlight,
    /// How long a lease lasts.
    pub lease: Duration,
    /// The longest an attempt may take.
    pub attempt_timeout: Duration,
    /// Every destination's policy unless it sets its own.
    pub defaults: Policy,
    /// Destination changes, which void what was leased ahead.
    pub changes: Changes,
    /// Slots waiting at each destination with statements running.
    pub desks: Mutex<HashMap<DestinationRef, Desk>>,
}

/// One destination's waiting slots, and its statements running.
#[derive(Default)]
pub(super) struct Desk {
    waiting: Vec<Waiting>,
    running: usize,
}

/// A slot waiting for its destination's next delivery.
pub(super) type Waiting = oneshot::Sender<Option<ClaimedDelivery>>;

/// A delivery leased while the attempt before it was in flight.
pub(super) struct Ahead {
    /// The delivery, leased.
    pub delivery: ClaimedDelivery,
    /// Destination changes counted before its lease was taken.
    changes: u64,
}

impl HandOvers {
    /// `destination`'s next due delivery for a slot there whose attempt
    /// just succeeded, if permits are not scarce and the destination
    /// takes it; `None` sends the slot back to the claims.
    pub async fn next_for(
        self: &Arc<Self>,
        destination: &DestinationRef,
        failure_threshold: u32,
    ) -> Option<ClaimedDelivery> {
        if self.permits.available_permits() == 0 {
            return None;
        }
        let (reply, answer) = oneshot::channel();
        let lead = {
            let mut desks = self.desks();
            let desk = desks.entry(destination.clone()).or_default();
            desk.waiting.push(reply);
            let lead = desk.running == 0
                || (desk.running < self.store.writers() && desk.waiting.len() >= CROWD);
            if lead {
                desk.running += 1;
            }
            lead
        };
        if lead {
            tokio::spawn(Arc::clone(self).serve(destination.clone(), failure_threshold));
        }
        answer.await.ok().flatten()
    }

    /// `destination`'s next due delivery, leased for a slot whose attempt
    /// there is in flight, on the same terms as [`HandOvers::next_for`].
    pub async fn lease_ahead(
        self: &Arc<Self>,
        destination: &DestinationRef,
        failure_threshold: u32,
    ) -> Option<Ahead> {
        let changes = self.changes.count();
        let delivery = self.next_for(destination, failure_threshold).await?;
        Some(Ahead { delivery, changes })
    }

    /// Whether `ahead` may start now: no destination changed since it was
    /// leased, and its lease outlasts a whole attempt.
    pub fn may_start(&self, ahead: &Ahead) -> bool {
        ahead.changes == self.changes.count()
            && ahead
                .delivery
                .lease_ends
                .saturating_duration_since(Instant::now())
                > self.attempt_timeout
    }

    /// Runs statements for `destination`, each for all the slots waiting
    /// when it starts, until none wait.
    async fn serve(self: Arc<Self>, destination: DestinationRef, failure_threshold: u32) {
        loop {
            let waiting = {
                let mut desks = self.desks();
                let Some(desk) = desks.get_mut(&destination) else {
                    return;
                };
                if desk.waiting.is_empty() {
                    desk.running -= 1;
                    if desk.running == 0 {
                        desks.remove(&destination);
                    }
                    return;
                }
                std::mem::take(&mut desk.waiting)
            };
            let request = HandOver {
                destination: &destination,
                lease: self.lease,
                defaults: &self.defaults,
                in_flight: self.in_flight.sending_at(&destination),
                count: u32::try_from(waiting.len()).unwrap_or(u32::MAX),
                failure_threshold,
            };
            let next = match self.store.hand_over(&request).await {
                Ok(next) => next,
                Err(error) => {
                    tracing::warn!(%error, "passing slots to the destination's next deliveries failed; claims will take them");
                    Vec::new()
                }
            };
            let mut next = next.into_iter();
            let mut unstarted = Vec::new();
            for reply in waiting {
                // A slot that went away (its task aborted at shutdown)
                // leaves its delivery to be given back.
                if let Err(Some(delivery)) = reply.send(next.next()) {
                    unstarted.push((delivery.lease(), delivery.destination_ref()));
                }
            }
            if !unstarted.is_empty()
                && let Err(error) = self.store.release(&unstarted, true).await
            {
                tracing::warn!(%error, "could not give back deliveries; their leases will expire");
            }
        }
    }

    fn desks(&self) -> MutexGuard<'_, HashMap<DestinationRef, Desk>> {
        // A panic while holding this lock leaves waiting slots behind,
        // whose tasks then see their replies dropped and go back to the
        // claims.
        self.desks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
