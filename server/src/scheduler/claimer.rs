//! Claimer: lease due deliveries and start one executor per delivery.
//!
//! Concurrency is structural: an executor runs only while it holds an owned
//! permit of the global semaphore, and the claimer never leases more rows
//! than it holds free permits, so nothing claimed waits in a local queue
//! while its lease runs down. When there is nothing due it sleeps until the
//! first of: a wake-up (an enqueue, a scheduled retry), the earliest due
//! time in the database, the safety-net poll, or shutdown.

use std::{sync::Arc, time::Duration};

use tokio::{
    sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;

use super::{SchedulerConfig, executor::execute, retry::RetryPolicy};
use crate::{
    store::{Store, records::Completion},
    transport::HttpSender,
};

/// Longest wait after a failed claim before trying again.
const CLAIM_ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// The claim loop and the executors it started.
pub struct Claimer {
    pub(super) store: Store,
    pub(super) sender: HttpSender,
    pub(super) policy: RetryPolicy,
    pub(super) config: SchedulerConfig,
    pub(super) wake: Arc<Notify>,
    pub(super) completions: mpsc::Sender<Completion>,
}

impl Claimer {
    /// Claims and executes until `shutdown`, then gives in-flight attempts
    /// `config.shutdown_grace` to finish before abandoning them to lease
    /// expiry.
    pub async fn run(self, shutdown: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.config.concurrency));
        let mut in_flight = JoinSet::new();
        loop {
            // Wait for a free slot (reaping finished executors meanwhile).
            let first = tokio::select! {
                () = shutdown.cancelled() => break,
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let mut held = vec![first];
            while held.len() < self.config.claim_batch {
                match Arc::clone(&permits).try_acquire_owned() {
                    Ok(permit) => held.push(permit),
                    Err(_) => break,
                }
            }
            reap(&mut in_flight);
            let wanted = held.len();
            let claimed = match self.store.claim(wanted, self.config.lease_duration).await {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::error!(%error, "claiming due deliveries failed");
                    drop(held);
                    if self.idle(&shutdown, CLAIM_ERROR_BACKOFF).await {
                        break;
                    }
                    continue;
                }
            };
            let got = claimed.len();
            for (delivery, permit) in claimed.into_iter().zip(held.drain(..)) {
                in_flight.spawn(self.attempt(delivery, permit));
            }
            drop(held);
            if got < wanted && self.wait_for_work(&shutdown).await {
                break;
            }
        }
        self.drain(in_flight).await;
    }

    fn attempt(
        &self,
        delivery: crate::store::records::ClaimedDelivery,
        permit: OwnedSemaphorePermit,
    ) -> impl Future<Output = ()> + Send + 'static {
        let sender = self.sender.clone();
        let policy = self.policy;
        let completions = self.completions.clone();
        async move {
            let completion = execute(&sender, &policy, delivery).await;
            // The completer outlives every executor, so this only fails if it
            // panicked; the lease then expires and the attempt is retried.
            let _ = completions.send(completion).await;
            drop(permit);
        }
    }

    /// Sleeps until work may be due. Returns true on shutdown.
    async fn wait_for_work(&self, shutdown: &CancellationToken) -> bool {
        let due_in = match self.store.next_due_in().await {
            Ok(Some(due_in)) => due_in.min(self.config.poll_interval),
            Ok(None) => self.config.poll_interval,
            Err(error) => {
                tracing::error!(%error, "reading the next due time failed");
                self.config.poll_interval
            }
        };
        self.idle(shutdown, due_in).await
    }

    /// Sleeps for `duration` or until woken. Returns true on shutdown.
    async fn idle(&self, shutdown: &CancellationToken, duration: Duration) -> bool {
        tokio::select! {
            () = shutdown.cancelled() => true,
            () = self.wake.notified() => false,
            () = tokio::time::sleep(duration) => false,
        }
    }

    /// Lets in-flight attempts finish within the grace period; what is still
    /// running after it is aborted and recovered by lease expiry.
    async fn drain(self, mut in_flight: JoinSet<()>) {
        let count = in_flight.len();
        if count > 0 {
            tracing::info!(count, "waiting for in-flight attempts to finish");
        }
        let finished = tokio::time::timeout(self.config.shutdown_grace, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                count = in_flight.len(),
                "shutdown grace ran out; abandoning attempts to lease expiry"
            );
            in_flight.abort_all();
        }
    }
}

/// Collects finished executors so the set does not grow without bound.
fn reap(in_flight: &mut JoinSet<()>) {
    while let Some(result) = in_flight.try_join_next() {
        if let Err(error) = result {
            tracing::error!(%error, "an attempt task failed");
        }
    }
}
