//! Claimer: lease due deliveries and start one executor per delivery.
//!
//! Concurrency is structural: an executor runs only while it holds an owned
//! permit of the global semaphore, and the claimer never leases more rows
//! than it holds free permits, so nothing claimed waits in a local queue
//! while its lease runs down. What each destination may take (its
//! in-flight limit, rate limit, circuit) the claim itself decides in the
//! database ([`Store::claim`]), so nothing claimed is handed back; the
//! claimer passes hints of what it has in flight ([`InFlight`]). When
//! nothing more is due it sleeps until the first of: a wake-up (an enqueue
//! here or on another replica, a scheduled retry, a full destination
//! freeing up), the soonest destination's next look, the safety-net poll,
//! or shutdown.

use std::{
    collections::{HashMap, hash_map::Entry},
    sync::Arc,
    time::{Duration, Instant},
};

use futures::FutureExt;
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    task::{JoinError, JoinSet},
};
use tokio_util::sync::CancellationToken;

use super::{
    SchedulerConfig,
    executor::{Draining, Executors},
    in_flight::InFlight,
    keys::{HeldKeys, signer_of},
};
use crate::signal::Signal;
use crate::{
    metrics::Metrics,
    store::{
        ClaimRequest, Claimed, Store, StoreError,
        records::{ClaimedDelivery, DestinationRef, Lease},
    },
    tenants::Keyring,
};

/// Longest wait after a failed claim before trying again.
const CLAIM_ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// A claim's result, with the permits taken for it and the hints' epoch
/// it started at.
struct Claim {
    held: Vec<OwnedSemaphorePermit>,
    rows: Result<Claimed, StoreError>,
    epoch: u64,
}

/// How a claim went.
enum Outcome {
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
    /// Signing keys, read ahead of the attempts that need them.
    pub(super) keyring: Keyring,
    pub(super) config: SchedulerConfig,
    pub(super) wakeup: Signal,
    /// Attempts in flight on this replica, at most `config.concurrency`.
    pub(super) permits: Arc<Semaphore>,
    /// What this replica has in flight per destination.
    pub(super) in_flight: InFlight,
    pub(super) executors: Executors,
    /// Counts probes.
    pub(super) metrics: Metrics,
}

impl Claimer {
    /// Claims and executes until `shutdown`, then gives in-flight attempts
    /// `config.shutdown_grace`, counted from `shutdown`, to finish; what is
    /// still running after that is aborted and its leases are given back
    /// for any replica to take.
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
            backlog = matches!(outcome, Outcome::Full);
            if !claims.is_empty() {
                continue;
            }
            let stop = match outcome {
                Outcome::Full => false,
                Outcome::Failed => self.idle(&shutdown, CLAIM_ERROR_BACKOFF).await,
                Outcome::Short => self.wait_for_work(&shutdown).await,
            };
            if stop {
                break;
            }
        }
        let deadline = Instant::now() + self.config.shutdown_grace;
        // Claims still in flight are seen through: their rows go back.
        while let Some(claimed) = claims.join_next().await {
            if let Ok(Claim {
                rows: Ok(claimed), ..
            }) = claimed
            {
                give_back(&self.store, &claimed.deliveries).await;
            }
        }
        self.drain(deadline).await;
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

    /// Leases as many rows as `held` has permits, at destinations that can
    /// start them.
    fn claim(
        &self,
        held: Vec<OwnedSemaphorePermit>,
    ) -> impl Future<Output = Claim> + Send + 'static {
        let store = self.store.clone();
        let lease = self.config.lease_duration;
        let defaults = self.config.defaults;
        let hints = self.in_flight.snapshot();
        async move {
            let request = ClaimRequest {
                limit: held.len(),
                lease,
                defaults: &defaults,
                skip: &hints.skip,
                unrecorded: &hints.unrecorded,
            };
            let rows = store.claim(&request).await;
            Claim {
                held,
                rows,
                epoch: hints.epoch,
            }
        }
    }

    /// Starts an executor for each claimed row; says whether the claim was
    /// full.
    async fn start(&self, claim: Result<Claim, JoinError>) -> Outcome {
        let Claim {
            mut held,
            rows,
            epoch,
        } = match claim {
            Ok(claim) => claim,
            Err(error) => {
                tracing::error!(%error, "a claim task failed");
                return Outcome::Failed;
            }
        };
        let wanted = held.len();
        let Claimed {
            deliveries,
            saturated,
        } = match rows {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::error!(%error, "claiming due deliveries failed");
                return Outcome::Failed;
            }
        };
        let got = deliveries.len();
        // Each signer's keys are read once per claim, before any attempt
        // starts, so the attempts go out in the order claimed instead of
        // racing each other to the database.
        let mut keys = HashMap::new();
        for delivery in &deliveries {
            let signer = signer_of(delivery);
            if let Entry::Vacant(unread) = keys.entry(signer) {
                let read = HeldKeys::read(&self.keyring, unread.key().clone()).await;
                unread.insert(read);
            }
        }
        let mut unstarted = Vec::new();
        for delivery in deliveries {
            let permit = held.pop().expect("one permit per claimed row");
            if delivery.probe {
                self.metrics.probe_sent();
            }
            let slot = self
                .in_flight
                .start(delivery.destination_ref(), delivery.lease());
            let kept = (delivery.lease(), delivery.destination_ref());
            let keys = keys[&signer_of(&delivery)].clone();
            if let Err(Draining) = self.executors.start(delivery, keys, permit, slot) {
                unstarted.push(kept);
            }
        }
        drop(held);
        // After the attempts started: a destination full of them is this
        // replica's to watch, one full of others' is skipped for a moment.
        for destination in &saturated {
            self.in_flight.saturated(destination, epoch);
        }
        if !unstarted.is_empty() {
            release(&self.store, &unstarted).await;
        }
        if got < wanted {
            Outcome::Short
        } else {
            Outcome::Full
        }
    }

    /// Sleeps until work may be due. Returns true on shutdown.
    async fn wait_for_work(&self, shutdown: &CancellationToken) -> bool {
        // Woken while the claim ran (an attempt finished, work arrived):
        // claim again at once, without asking when work is due.
        if self.wakeup.raised().now_or_never().is_some() {
            return shutdown.is_cancelled();
        }
        // Destinations full of this replica's attempts are due but wait
        // for one to finish, which wakes the claimer; those full of other
        // replicas' attempts are worth a look again in a moment.
        let hints = self.in_flight.snapshot();
        let mut due_in = match self.store.next_due_in(&hints.skip).await {
            Ok(Some(due_in)) => due_in.min(self.config.poll_interval),
            Ok(None) => self.config.poll_interval,
            Err(error) => {
                tracing::error!(%error, "reading the next due time failed");
                self.config.poll_interval
            }
        };
        if let Some(until) = hints.others_until {
            due_in = due_in.min(until.saturating_duration_since(Instant::now()));
        }
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

    /// Lets attempts in flight finish until `deadline`, then gives back the
    /// leases of those cut off.
    async fn drain(self, deadline: Instant) {
        let grace = deadline.saturating_duration_since(Instant::now());
        let abandoned = self.executors.drain(grace).await;
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

/// Gives back claimed rows whose attempts never started, uncounted.
async fn give_back(store: &Store, claimed: &[ClaimedDelivery]) {
    let leases: Vec<(Lease, DestinationRef)> = claimed
        .iter()
        .map(|delivery| (delivery.lease(), delivery.destination_ref()))
        .collect();
    release(store, &leases).await;
}

/// Gives back `leases` whose attempts never started, uncounted.
async fn release(store: &Store, leases: &[(Lease, DestinationRef)]) {
    if let Err(error) = store.release(leases, true).await {
        tracing::warn!(%error, count = leases.len(), "could not release rows; their leases will expire");
    }
}
