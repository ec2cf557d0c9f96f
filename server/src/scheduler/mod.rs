//! The lease-and-retry scheduler: `claimer -> executor -> completer`.
//!
//! - [`claimer`] leases due deliveries (as many as it has free permits,
//!   none for destinations at their in-flight limit, see [`fairness`]) and
//!   starts one executor task per delivery; while it is idle, a new
//!   delivery is instead leased as it is stored and started at once
//!   ([`handoff`]);
//! - [`executor`] sends one attempt through `transport` and decides, with
//!   [`retry`], what follows; it never writes to the database. Each
//!   attempt is a task of its own, tracked for shutdown;
//! - [`completer`] persists results in batches, fenced by lease token, and
//!   publishes the committed outcomes to the feed;
//! - [`crate::signal`] carries "work is due" between API, claimer and replicas.
//!
//! Shutdown has two phases: stop claiming, then drain (in-flight attempts
//! finish within the grace period and are recorded; what does not finish is
//! aborted and its lease given back so another replica takes it at once).

mod claimer;
mod completer;
mod executor;
mod fairness;
mod handoff;
pub mod retry;

use std::time::Duration;

use std::sync::Arc;

use tokio::{
    sync::{Semaphore, mpsc, oneshot},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use self::handoff::Reservation;
use self::{completer::Work, executor::Executors, fairness::DestinationLimits, handoff::Admission};
use crate::metrics::Metrics;
use crate::tenants::Keyring;
use crate::{
    outcomes::OutcomeFeed,
    signal::Signal,
    store::{
        Channel, Store, StoreError,
        records::{CancelResult, NewDelivery},
    },
    transport::HttpSender,
};

/// The scheduler's knobs, taken from [`crate::Config`].
#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    /// Most attempts in flight at once.
    pub concurrency: usize,
    /// Most attempts in flight at once to one destination.
    pub destination_concurrency: usize,
    /// Most rows leased per claim statement.
    pub claim_batch: usize,
    /// How long a claim leases a row.
    pub lease_duration: Duration,
    /// Safety-net poll interval.
    pub poll_interval: Duration,
    /// How long in-flight attempts may take to finish on shutdown.
    pub shutdown_grace: Duration,
    /// How long a tenant's signing secrets are reused before rereading.
    pub credential_cache: Duration,
}

/// A running scheduler.
pub struct Scheduler {
    task: JoinHandle<()>,
}

/// What the API may ask of the scheduler; cheap to clone.
#[derive(Clone, Debug)]
pub struct SchedulerHandle {
    wakeup: Signal,
    inbox: mpsc::Sender<Work>,
    admission: Arc<Admission>,
}

impl Scheduler {
    /// Starts the claimer and the completer. `shutdown` stops claiming.
    pub async fn start(
        store: Store,
        sender: HttpSender,
        feed: OutcomeFeed,
        policy: retry::RetryPolicy,
        config: SchedulerConfig,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> (Self, SchedulerHandle) {
        let wakeup = Signal::start(&store, Channel::Work, &shutdown).await;
        let (inbox, completer_inbox) = mpsc::channel(completer::MAX_BATCH * 2);
        let mut completer = completer::start(&store, &feed, &wakeup, &metrics, completer_inbox);
        let permits = Arc::new(Semaphore::new(config.concurrency));
        let limits = DestinationLimits::new(config.destination_concurrency, wakeup.clone());
        let keyring = Keyring::new(store.clone(), config.credential_cache);
        let executors = Executors::new(sender, policy, metrics.clone(), inbox.clone());
        let admission = Admission::new(
            Arc::clone(&permits),
            limits.clone(),
            config.lease_duration,
            keyring.clone(),
            executors.clone(),
            store.clone(),
            metrics,
        );
        let claimer = claimer::Claimer {
            keyring,
            store,
            config,
            permits,
            limits,
            admission: Arc::clone(&admission),
            executors,
            wakeup: wakeup.clone(),
        };
        let task = tokio::spawn(async move {
            // The completer ends once the claimer, its executors and every
            // handle (held by the API) have dropped their senders.
            claimer.run(shutdown).await;
            while let Some(finished) = completer.join_next().await {
                if let Err(error) = finished {
                    tracing::error!(%error, "a completion writer failed");
                }
            }
        });
        let handle = SchedulerHandle {
            wakeup,
            inbox,
            admission,
        };
        (Self { task }, handle)
    }

    /// Waits until the scheduler has stopped claiming, drained in-flight
    /// attempts and recorded their results.
    pub async fn stopped(self) {
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the scheduler failed");
        }
    }
}

/// The scheduler stopped before it could answer.
#[derive(Debug, thiserror::Error)]
#[error("the scheduler is shutting down")]
pub struct ShuttingDown;

impl SchedulerHandle {
    /// New work is due now (an enqueue, a redrive): wake every replica.
    pub fn work_added(&self) {
        self.wakeup.raise();
    }

    /// Capacity to send `delivery` the moment it is stored, if it is due
    /// now and this replica's claimer is idle with room for it; `None`
    /// leaves it to be claimed (see [`handoff`]).
    pub fn reserve(&self, delivery: &NewDelivery) -> Option<Reservation> {
        self.admission.reserve(delivery)
    }

    /// Cancels a delivery through the completer, whose writers record
    /// the cancellation's outcome the way they record attempt outcomes
    /// (under the feed's lock, so the feed orders them by commit). A
    /// result of the delivery not yet written when the cancel commits is
    /// discarded, like that of an attempt still in flight.
    pub async fn cancel(
        &self,
        tenant_id: &str,
        id: Uuid,
    ) -> Result<Result<CancelResult, StoreError>, ShuttingDown> {
        let (reply, answer) = oneshot::channel();
        let work = Work::Cancel {
            tenant_id: tenant_id.to_owned(),
            id,
            reply,
        };
        self.inbox.send(work).await.map_err(|_| ShuttingDown)?;
        answer.await.map_err(|_| ShuttingDown)
    }
}
