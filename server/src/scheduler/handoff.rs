//! Hand-off: a new delivery goes straight to an executor when this
//! replica's scheduler is idle.
//!
//! When the claimer's last claim found no more due work, an `Enqueue` of a
//! delivery due now reserves a global permit and a slot of its destination,
//! inserts the row already leased for its first attempt (counted, fenced by
//! a token, due again when the lease expires: what a claim would have
//! written), and starts its attempt. That skips the wake-up, the claim
//! statement and its commit, so an idle system sends a delivery one commit
//! after it arrives.
//!
//! It never jumps a queue: only a claimer that is caught up lets deliveries
//! through. Capacity is reserved before the insert, so a leased row never
//! waits in memory while its lease runs down. A delivery whose hand-off
//! cannot happen (the scheduler has stopped) is given back at once, its
//! attempt uncounted; one whose replica dies first waits for its lease to
//! expire and is then claimed by any replica, as after any claim.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use uuid::Uuid;

use super::{
    claimer::give_back,
    executor::Executors,
    fairness::{DestinationLimits, DestinationPermit},
};
use crate::{
    domain::unix_ms,
    metrics::Metrics,
    store::{
        GroupCommit, Store, StoreError,
        records::{ClaimedDelivery, Enqueued, InsertLease, NewDelivery},
    },
    tenants::Keyring,
};

/// What decides whether a new delivery may skip the claim, shared by the
/// claimer and the API's [`super::SchedulerHandle`].
pub(super) struct Admission {
    /// The global in-flight permits, the claimer's too.
    permits: Arc<Semaphore>,
    /// The per-destination slots, the claimer's too.
    limits: DestinationLimits,
    /// The claimer's last claim found no more due work, and it waits.
    caught_up: AtomicBool,
    /// How long a lease taken at insert lasts.
    lease: Duration,
    /// The signing keys, as the claimer reads them.
    keyring: Keyring,
    /// Where attempts run, the claimer's too.
    executors: Executors,
    /// To give back a lease whose attempt cannot start.
    store: Store,
    /// Counts the attempts started this way.
    metrics: Metrics,
}

/// Capacity held for one delivery about to be stored leased: a global
/// permit and a slot of its destination. Dropping it frees both.
pub struct Reservation {
    admission: Arc<Admission>,
    permit: OwnedSemaphorePermit,
    slot: DestinationPermit,
    /// When the enqueue was accepted, for the first-attempt latency.
    accepted_at_ms: i64,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("caught_up", &self.caught_up)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Admission {
    /// Admission over the claimer's `permits`, `limits` and `executors`,
    /// leasing for `lease`.
    pub(super) fn new(
        permits: Arc<Semaphore>,
        limits: DestinationLimits,
        lease: Duration,
        keyring: Keyring,
        executors: Executors,
        store: Store,
        metrics: Metrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            permits,
            limits,
            caught_up: AtomicBool::new(false),
            lease,
            keyring,
            executors,
            store,
            metrics,
        })
    }

    /// The claimer is caught up (or no longer is): while it is, new
    /// deliveries due now are handed off.
    pub(super) fn set_caught_up(&self, caught_up: bool) {
        self.caught_up.store(caught_up, Ordering::Relaxed);
    }

    /// Capacity for `delivery`, if it is due now, the claimer is caught up
    /// and both a permit and a slot of its destination are free.
    pub(super) fn reserve(self: &Arc<Self>, delivery: &NewDelivery) -> Option<Reservation> {
        if delivery.not_before_ms.is_some() || !self.caught_up.load(Ordering::Relaxed) {
            return None;
        }
        let permit = Arc::clone(&self.permits).try_acquire_owned().ok()?;
        let slot = self.limits.try_acquire(&delivery.destination.key)?;
        Some(Reservation {
            admission: Arc::clone(self),
            permit,
            slot,
            accepted_at_ms: unix_ms(SystemTime::now()),
        })
    }
}

impl Reservation {
    /// Stores `delivery` through `enqueues`, leased for its first attempt,
    /// and starts that attempt if the insert created it (an idempotent
    /// repeat only frees the reservation). Answers once the insert has
    /// committed; the rest runs on even if the caller goes away meanwhile,
    /// so no stored lease is left unsent.
    pub async fn enqueue(
        self,
        enqueues: &GroupCommit,
        mut delivery: NewDelivery,
    ) -> Result<Enqueued, StoreError> {
        let lease = InsertLease {
            token: Uuid::new_v4(),
            duration: self.admission.lease,
        };
        delivery.lease = Some(lease);
        let enqueues = enqueues.clone();
        let (stored, answer) = oneshot::channel();
        tokio::spawn(async move {
            let sent = delivery.clone();
            let result = enqueues.enqueue(delivery).await;
            let created = match &result {
                Ok(enqueued) if enqueued.created => Some(enqueued.id),
                _ => None,
            };
            // The caller may have gone away; the delivery stands.
            let _ = stored.send(result);
            if let Some(id) = created {
                let claimed = claimed(sent, id, lease, self.accepted_at_ms);
                self.start(claimed).await;
            }
        });
        answer.await.map_err(|_| StoreError::ShuttingDown)?
    }

    /// Starts the attempt on the stored `delivery` with the reserved
    /// capacity, or gives the row back, its attempt uncounted, if it cannot
    /// start (the scheduler is stopping, or its keys cannot be read).
    async fn start(self, delivery: ClaimedDelivery) {
        let Self {
            admission,
            permit,
            slot,
            ..
        } = self;
        let lease = delivery.lease();
        let started = match admission.keyring.keys(&delivery.tenant_id).await {
            Ok(keys) => admission
                .executors
                .start(delivery, keys, permit, slot)
                .is_ok(),
            Err(error) => {
                tracing::error!(%error, "reading signing secrets failed; giving the delivery back");
                false
            }
        };
        if started {
            admission.metrics.handed_off();
        } else {
            give_back(&admission.store, &[lease]).await;
        }
    }
}

/// `delivery`, stored as `id` under `lease`, as a claim returns it.
fn claimed(
    delivery: NewDelivery,
    id: Uuid,
    lease: InsertLease,
    accepted_at_ms: i64,
) -> ClaimedDelivery {
    ClaimedDelivery {
        id,
        tenant_id: delivery.tenant_id,
        request: delivery.request,
        destination: delivery.destination.key,
        attempt_number: 1,
        max_attempts: delivery.max_attempts,
        deadline_at_ms: delivery.deadline_ms,
        lease_token: lease.token,
        trace: delivery.trace,
        created_at_ms: accepted_at_ms,
    }
}
