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
//! database, the safety-net poll, or shutdown. Meanwhile it starts the
//! deliveries the API hands it already leased ([`super::handoff`]).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    SchedulerConfig,
    completer::Work,
    executor::execute,
    fairness::{DestinationLimits, DestinationPermit},
    handoff::{Admission, HandedOff},
    retry::RetryPolicy,
};
use crate::signal::Signal;
use crate::{
    metrics::Metrics,
    store::{
        Store, StoreError,
        records::{ClaimedDelivery, Lease},
    },
    tenants::{Keyring, SigningKeys},
    transport::HttpSender,
};

/// Longest wait after a failed claim before trying again.
const CLAIM_ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// Leases of attempts in flight, so shutdown can give back what it aborts.
type InFlight = Arc<Mutex<HashSet<Lease>>>;

/// The executors a claimer started and the leases they hold.
#[derive(Default)]
struct Running {
    tasks: JoinSet<()>,
    leases: InFlight,
}

/// The claim loop and the executors it started.
pub struct Claimer {
    pub(super) store: Store,
    pub(super) keyring: Keyring,
    pub(super) metrics: Metrics,
    pub(super) sender: HttpSender,
    pub(super) policy: RetryPolicy,
    pub(super) config: SchedulerConfig,
    pub(super) wakeup: Signal,
    /// Attempts in flight on this replica, at most `config.concurrency`.
    pub(super) permits: Arc<Semaphore>,
    pub(super) limits: DestinationLimits,
    /// Told whether this claimer is caught up, so new deliveries may skip
    /// the claim.
    pub(super) admission: Arc<Admission>,
    /// Deliveries leased at enqueue, to start.
    pub(super) handed_off: mpsc::Receiver<HandedOff>,
    pub(super) completions: mpsc::Sender<Work>,
}

impl Claimer {
    /// Claims and executes until `shutdown`, then gives in-flight attempts
    /// `config.shutdown_grace` to finish; what is still running after that
    /// is aborted and its leases are given back for any replica to take.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut running = Running::default();
        loop {
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(handed_off) = self.handed_off.recv() => {
                    self.start_handed_off(handed_off, &mut running).await;
                    continue;
                }
                permit = Arc::clone(&self.permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let mut held = vec![first];
            while held.len() < self.config.claim_batch {
                match Arc::clone(&self.permits).try_acquire_owned() {
                    Ok(permit) => held.push(permit),
                    Err(_) => break,
                }
            }
            reap(&mut running.tasks);
            let wanted = held.len();
            let excluded = self.limits.saturated();
            let claimed = match self
                .store
                .claim(wanted, self.config.lease_duration, &excluded)
                .await
            {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::error!(%error, "claiming due deliveries failed");
                    drop(held);
                    if self
                        .idle(&shutdown, CLAIM_ERROR_BACKOFF, &mut running)
                        .await
                    {
                        break;
                    }
                    continue;
                }
            };
            let got = claimed.len();
            let signing = match self.signing_keys(&claimed).await {
                Ok(signing) => signing,
                Err(error) => {
                    tracing::error!(%error, "reading signing secrets failed; giving the claimed rows back");
                    let leases: Vec<Lease> = claimed.iter().map(ClaimedDelivery::lease).collect();
                    self.give_back(&leases).await;
                    drop(held);
                    if self
                        .idle(&shutdown, CLAIM_ERROR_BACKOFF, &mut running)
                        .await
                    {
                        break;
                    }
                    continue;
                }
            };
            let mut overflow = Vec::new();
            for delivery in claimed {
                match self.limits.try_acquire(&delivery.destination) {
                    Some(slot) => {
                        let permit = held.pop().expect("one permit per claimed row");
                        let keys = Arc::clone(&signing[&delivery.tenant_id]);
                        self.start(delivery, keys, permit, slot, &mut running);
                    }
                    None => overflow.push(delivery.lease()),
                }
            }
            drop(held);
            if !overflow.is_empty() {
                // Its destination filled up within this claim: give the rows
                // back, unsent and uncounted. The next claim excludes it.
                self.give_back(&overflow).await;
            }
            if got < wanted {
                // Nothing more is due: new deliveries may skip the claim
                // until something wakes this claimer.
                self.admission.set_caught_up(true);
                let stop = self.wait_for_work(&shutdown, &mut running).await;
                self.admission.set_caught_up(false);
                if stop {
                    break;
                }
            }
        }
        self.drain(running).await;
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

    /// Starts a delivery the API stored already leased.
    async fn start_handed_off(&self, handed_off: HandedOff, running: &mut Running) {
        let HandedOff {
            delivery,
            permit,
            slot,
        } = handed_off;
        match self.keyring.keys(&delivery.tenant_id).await {
            Ok(keys) => self.start(delivery, keys, permit, slot, running),
            Err(error) => {
                tracing::error!(%error, "reading signing secrets failed; giving the delivery back");
                self.give_back(&[delivery.lease()]).await;
            }
        }
    }

    /// Gives back leases whose attempts never started, uncounted.
    async fn give_back(&self, leases: &[Lease]) {
        if let Err(error) = self.store.release(leases, true).await {
            tracing::warn!(%error, count = leases.len(), "could not release rows; their leases will expire");
        }
    }

    /// Spawns the attempt on `delivery`, which holds `permit` and `slot`
    /// until its completion is handed to the completer.
    fn start(
        &self,
        delivery: ClaimedDelivery,
        signing: Arc<SigningKeys>,
        permit: OwnedSemaphorePermit,
        slot: DestinationPermit,
        running: &mut Running,
    ) {
        let sender = self.sender.clone();
        let policy = self.policy;
        let metrics = self.metrics.clone();
        let completions = self.completions.clone();
        let lease = delivery.lease();
        let leases = Arc::clone(&running.leases);
        lock(&leases).insert(lease);
        let span = tracing::info_span!(
            "attempt",
            delivery_id = %delivery.id,
            tenant = %delivery.tenant_id,
            attempt = delivery.attempt_number,
        );
        let attempt = async move {
            let in_flight = metrics.in_flight();
            let completion = execute(&sender, &policy, &metrics, delivery, signing).await;
            drop(in_flight);
            // The completer outlives every executor, so this only fails if it
            // panicked; the lease then expires and the attempt is retried.
            let _ = completions.send(Work::Attempt(completion)).await;
            lock(&leases).remove(&lease);
            drop((slot, permit));
        };
        running.tasks.spawn(attempt.instrument(span));
    }

    /// Sleeps until work may be due, starting hand-offs meanwhile. Returns
    /// true on shutdown.
    async fn wait_for_work(&mut self, shutdown: &CancellationToken, running: &mut Running) -> bool {
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
        self.idle(shutdown, due_in, running).await
    }

    /// Sleeps for `duration` or until woken, starting hand-offs meanwhile.
    /// Returns true on shutdown.
    async fn idle(
        &mut self,
        shutdown: &CancellationToken,
        duration: Duration,
        running: &mut Running,
    ) -> bool {
        let timer = tokio::time::sleep(duration);
        tokio::pin!(timer);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return true,
                () = self.wakeup.raised() => return false,
                () = &mut timer => return false,
                Some(handed_off) = self.handed_off.recv() => {
                    self.start_handed_off(handed_off, running).await;
                }
            }
        }
    }

    async fn drain(mut self, running: Running) {
        // Hand-offs that came too late are given back, never started.
        self.handed_off.close();
        let mut late = Vec::new();
        while let Ok(handed_off) = self.handed_off.try_recv() {
            late.push(handed_off.delivery.lease());
        }
        if !late.is_empty() {
            self.give_back(&late).await;
        }
        let Running { mut tasks, leases } = running;
        let count = tasks.len();
        if count > 0 {
            tracing::info!(count, "waiting for in-flight attempts to finish");
        }
        let finished = tokio::time::timeout(self.config.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if finished.is_ok() {
            return;
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let abandoned: Vec<Lease> = lock(&leases).drain().collect();
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

fn lock(leases: &InFlight) -> std::sync::MutexGuard<'_, HashSet<Lease>> {
    leases
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Collects finished executors so the set does not grow without bound.
fn reap(tasks: &mut JoinSet<()>) {
    while let Some(result) = tasks.try_join_next() {
        if let Err(error) = result {
            tracing::error!(%error, "an attempt task failed");
        }
    }
}
