//! Hand-over: slots whose attempts succeeded at a full destination pass
//! straight to its next due deliveries ([`Store::hand_over`]) instead of
//! going back for a claim.
//!
//! Slots that finish at one destination while its statement runs wait at
//! its desk, and the next statement leases one row for each of them: a
//! destination whose receiver answers at once has many slots finishing
//! every millisecond, and one statement each would cost the database more
//! than the claims they replace. One statement runs per destination at a
//! time, so this replica's count of its attempts there is exact when the
//! statement reads it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use tokio::sync::{Semaphore, oneshot};

use super::in_flight::InFlight;
use crate::{
    destinations::policy::Policy,
    store::{
        HandOver, Store,
        records::{ClaimedDelivery, DestinationRef},
    },
};

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
    /// Every destination's policy unless it sets its own.
    pub defaults: Policy,
    /// Slots waiting at each destination whose statement is running.
    pub desks: Mutex<HashMap<DestinationRef, Vec<Waiting>>>,
}

/// A slot waiting for its destination's next delivery.
pub(super) type Waiting = oneshot::Sender<Option<ClaimedDelivery>>;

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
            match desks.get_mut(destination) {
                Some(waiting) => {
                    waiting.push(reply);
                    false
                }
                None => {
                    desks.insert(destination.clone(), vec![reply]);
                    true
                }
            }
        };
        if lead {
            tokio::spawn(Arc::clone(self).serve(destination.clone(), failure_threshold));
        }
        answer.await.ok().flatten()
    }

    /// Runs `destination`'s statements, one for all the slots waiting at
    /// a time, until none wait.
    async fn serve(self: Arc<Self>, destination: DestinationRef, failure_threshold: u32) {
        loop {
            let waiting = {
                let mut desks = self.desks();
                let Some(queue) = desks.get_mut(&destination) else {
                    return;
                };
                if queue.is_empty() {
                    desks.remove(&destination);
                    return;
                }
                std::mem::take(queue)
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

    fn desks(&self) -> MutexGuard<'_, HashMap<DestinationRef, Vec<Waiting>>> {
        // A panic while holding this lock leaves waiting slots behind,
        // whose tasks then see their replies dropped and go back to the
        // claims.
        self.desks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
