//! Claimer: lease due deliveries and start one executor per delivery.
//!
//! Concurrency is structural: an executor runs only while it holds an owned
//! permit of the global semaphore and a slot of its destination, and the
//! claimer never leases more rows than it holds free permits, so nothing
//! claimed waits in a local queue while its lease runs down. Destinations
//! that are full are excluded from the claim; a row claimed for a
//! destination that filled up meanwhile is released at once with its
//! attempt given back. When there is nothing due it sleeps until the first
//! of: a wake-up (an enqueue here or on another replica, a scheduled
//! retry, a destination freeing up), the earliest due time in the
//! database, the safety-net poll, or shutdown. While it waits, new
//! deliveries may come leased at enqueue and start without it
//! ([`super::handoff`]).

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    task::{JoinError, JoinSet},
};
use tokio_util::sync::CancellationToken;

use super::{
    SchedulerConfig,
    executor::{Draining, Executors},
    fairness::DestinationLimits,
    handoff::Admission,
};
use crate::signal::Signal;
use crate::{
    store::{
        Store, StoreError,
        records::{ClaimedDelivery, Lease},
    },
    tenants::{Keyring, SigningKeys},
};

/// Longest wait after a failed claim before trying again.
const CLAIM_ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// A claim statement's result, with the permits taken for it.
struct Claim {
    held: Vec<OwnedSemaphorePermit>,
    rows: Result<Vec<ClaimedDelivery>, StoreError>,
}

/// How a claim went.
enum Claimed {
    /// Every permit found a row: more may be due.
    Full,
    /// Fewer rows were due than permits were held.
    Short,
    /// The claim, or what it needed to start, failed.
    Failed,
}

/// The claim loop.
pub struct Claimer {
    pub(super) store: Store,
    pub(super) keyring: Keyring,
    pub(super) config: SchedulerConfig,
    pub(super) wakeup: Signal,
    /// Attempts in flight on this replica, at most `config.concurrency`.
    pub(super) permits: Arc<Semaphore>,
    pub(super) limits: DestinationLimits,
    /// Told whether this claimer is caught up, so new deliveries may skip
    /// the claim.
    pub(super) admission: Arc<Admission>,
    pub(super) executors: Executors,
}

impl Claimer {
    /// Claims and executes until `shutdown`, then gives in-flight attempts
    /// `config.shutdown_grace` to finish; what is still running after that
    /// is aborted and its leases are given back for any replica to take.
    ///
    /// One claim is in flight at a time, or as many as the database can
    /// usefully write at once ([`Store::writers`]: two on PostgreSQL)
    /// while the last one came back full (a backlog): a claim spends most
    /// of its time in the database, much of it waiting for its commit, and
    /// a second one overlaps that wait instead of queueing behind it. On
    /// SQLite, with its single writer, a second claim would only queue
    /// for the write and hold up the completer.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut claims = JoinSet::new();
        let mut backlog = false;
        let most = self.store.writers();
        loop {
            let room = claims.is_empty() || (backlog && claims.len() < most);
            let claimed = tokio::select! {
                () = shutdown.cancelled() => break,
                permits = self.permits(), if room => match permits {
                    Some(held) => {
                        claims.spawn(self.claim(held));
                        continue;
                    }
                    None => break,
                },
                Some(claimed) = claims.join_next() => claimed,
            };
            let outcome = self.start(claimed).await;
            backlog = matches!(outcome, Claimed::Full);
            if !claims.is_empty() {
                continue;
            }
            let stop = match outcome {
                Claimed::Full => false,
                Claimed::Failed => self.idle(&shutdown, CLAIM_ERROR_BACKOFF).await,
                // Nothing more is due: new deliveries may skip the claim
                // until something wakes this claimer.
                Claimed::Short => {
                    self.admission.set_caught_up(true);
                    let stop = self.wait_for_work(&shutdown).await;
                    self.admission.set_caught_up(false);
                    stop
                }
            };
            if stop {
                break;
            }
        }
        // Claims still in flight are seen through: their rows go back.
        while let Some(claimed) = claims.join_next().await {
            if let Ok(Claim {
                rows: Ok(claimed), ..
            }) = claimed
            {
                let leases: Vec<Lease> = claimed.iter().map(ClaimedDelivery::lease).collect();
                give_back(&self.store, &leases).await;
            }
        }
        self.drain().await;
    }

    /// Free permits for one claim: waits for the first, then takes what
    /// else is free, up to `config.claim_batch`. `None` once the
    /// semaphore is closed.
    async fn permits(&self) -> Option<Vec<OwnedSemaphorePermit>> {
        let first = Arc::clone(&self.permits).acquire_owned().await.ok()?;
        let mut held = vec![first];
        while held.len() < self.config.claim_batch {
            match Arc::clone(&self.permits).try_acquire_owned() {
                Ok(permit) => held.push(permit),
                Err(_) => break,
            }
        }
        Some(held)
    }

    /// Leases as many due rows as `held` has permits, skipping saturated
    /// destinations.
    fn claim(
        &self,
        held: Vec<OwnedSemaphorePermit>,
    ) -> impl Future<Output = Claim> + Send + 'static {
        let store = self.store.clone();
        let lease = self.config.lease_duration;
        let excluded = self.limits.saturated();
        async move {
            let rows = store.claim(held.len(), lease, &excluded).await;
            Claim { held, rows }
        }
    }

    /// Starts an executor for each claimed row, giving back the rows it
    /// cannot start; says whether the claim was full.
    async fn start(&self, claim: Result<Claim, JoinError>) -> Claimed {
        let Claim { mut held, rows } = match claim {
            Ok(claim) => claim,
            Err(error) => {
                tracing::error!(%error, "a claim task failed");
                return Claimed::Failed;
            }
        };
        let wanted = held.len();
        let claimed = match rows {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::error!(%error, "claiming due deliveries failed");
                return Claimed::Failed;
            }
        };
        let got = claimed.len();
        let signing = match self.signing_keys(&claimed).await {
            Ok(signing) => signing,
            Err(error) => {
                tracing::error!(%error, "reading signing secrets failed; giving the claimed rows back");
                let leases: Vec<Lease> = claimed.iter().map(ClaimedDelivery::lease).collect();
                give_back(&self.store, &leases).await;
                return Claimed::Failed;
            }
        };
        let mut unstarted = Vec::new();
        for delivery in claimed {
            match self.limits.try_acquire(&delivery.destination) {
                Some(slot) => {
                    let permit = held.pop().expect("one permit per claimed row");
                    let keys = Arc::clone(&signing[&delivery.tenant_id]);
                    let lease = delivery.lease();
                    if let Err(Draining) = self.executors.start(delivery, keys, permit, slot) {
                        unstarted.push(lease);
                    }
                }
                // Its destination filled up within this claim: give the
                // row back, unsent and uncounted. The next claim
                // excludes it.
                None => unstarted.push(delivery.lease()),
            }
        }
        drop(held);
        if !unstarted.is_empty() {
            give_back(&self.store, &unstarted).await;
        }
        if got < wanted {
            Claimed::Short
        } else {
            Claimed::Full
        }
    }

    /// The signing keys of every tenant in `claimed`.
    async fn signing_keys(
        &self,
        claimed: &[ClaimedDelivery],
    ) -> Result<HashMap<String, Arc<SigningKeys>>, StoreError> {
        let mut keys = HashMap::new();
        for delivery in claimed {
            if !keys.contains_key(&delivery.tenant_id) {
                let tenant_keys = self.keyring.keys(&delivery.tenant_id).await?;
                keys.insert(delivery.tenant_id.clone(), tenant_keys);
            }
        }
        Ok(keys)
    }

    /// Sleeps until work may be due. Returns true on shutdown.
    async fn wait_for_work(&self, shutdown: &CancellationToken) -> bool {
        // Rows bound for full destinations are due but not claimable: their
        // destination freeing up wakes the claimer, not the clock.
        let excluded = self.limits.saturated();
        let due_in = match self.store.next_due_in(&excluded).await {
            Ok(Some(due_in)) => due_in.min(self.config.poll_interval),
            Ok(None) => self.config.poll_interval,
            Err(error) => {
                tracing::error!(%error, "reading the next due time failed");
                self.config.poll_interval
            }
        };
        tracing::debug!(?due_in, "idle until woken or due");
        self.idle(shutdown, due_in).await
    }

    /// Sleeps for `duration` or until woken. Returns true on shutdown.
    async fn idle(&self, shutdown: &CancellationToken, duration: Duration) -> bool {
        tokio::select! {
            () = shutdown.cancelled() => true,
            () = self.wakeup.raised() => false,
            () = tokio::time::sleep(duration) => false,
        }
    }

    async fn drain(self) {
        let abandoned = self.executors.drain(self.config.shutdown_grace).await;
        if abandoned.is_empty() {
            return;
        }
        tracing::warn!(
            count = abandoned.len(),
            "shutdown grace ran out; giving the unfinished attempts back for another replica"
        );
        // They may have reached their receivers: the attempt stays counted.
        if let Err(error) = self.store.release(&abandoned, false).await {
            tracing::warn!(%error, "could not release leases; they will expire");
        }
    }
}

/// Gives back leases whose attempts never started, uncounted.
pub(super) async fn give_back(store: &Store, leases: &[Lease]) {
    if let Err(error) = store.release(leases, true).await {
        tracing::warn!(%error, count = leases.len(), "could not release rows; their leases will expire");
    }
}
