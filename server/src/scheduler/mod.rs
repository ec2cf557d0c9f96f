//! The lease-and-retry scheduler: `claimer -> executor -> completer`.
//!
//! - [`claimer`] leases due deliveries (as many as it has free permits,
//!   and only what their destinations can start now) and starts one
//!   executor task per delivery, with hints of what this replica has in
//!   flight ([`in_flight`]);
//! - [`executor`] sends one attempt through `transport` and decides, with
//!   [`retry`], what follows; it never writes results to the database.
//!   Each attempt is a task of its own, tracked for shutdown; at a full
//!   destination, a task whose attempt succeeded takes the destination's
//!   next delivery itself, and from then on leases it while its attempt
//!   is in flight ([`hand_over`]);
//! - [`completer`] persists results in batches, fenced by lease token,
//!   with what they change at their destinations (circuits, holds), and
//!   publishes the committed outcomes to the feed;
//! - [`crate::signal`] carries "work is due" between API, claimer and replicas;
//! - [`crate::destinations::Upkeep`] writes the destinations' health every
//!   few seconds, disables those failing for too long and dead-letters
//!   what no claim will send.
//!
//! Shutdown has two phases: stop claiming, then drain (in-flight attempts
//! finish within the grace period and are recorded; what does not finish is
//! aborted and its lease given back so another replica takes it at once;
//! results the database could not take by then are left to lease expiry).

mod claimer;
mod completer;
mod executor;
mod hand_over;
mod in_flight;
mod keys;
pub mod retry;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    sync::{Semaphore, mpsc, oneshot},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::{completer::Work, executor::Executors, hand_over::HandOvers, in_flight::InFlight};
use crate::{
    destinations::{Upkeep, changes::Changes, health::Health, policy::Policy},
    metrics::Metrics,
    outcomes::OutcomeFeed,
    signal::Signal,
    store::{Actor, Channel, Store, StoreError, records::CancelResult},
    tenants::Keyring,
    transport::HttpSender,
};

/// How often a replica writes its destinations' health.
pub const HEALTH_PERIOD: Duration = Duration::from_secs(2);

/// The scheduler's knobs, taken from [`crate::Config`].
#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    /// Most attempts in flight at once.
    pub concurrency: usize,
    /// Every destination's policy unless it sets its own.
    pub defaults: Policy,
    /// Failing without a success this long disables a destination.
    pub disable_after: Option<Duration>,
    /// Most rows leased per claim statement.
    pub claim_batch: usize,
    /// How long a claim leases a row.
    pub lease_duration: Duration,
    /// The longest an attempt may take: a delivery leased ahead starts
    /// only while its lease outlasts this.
    pub request_timeout: Duration,
    /// Safety-net poll interval.
    pub poll_interval: Duration,
    /// How long in-flight attempts may take to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Backoff bounds and the `Retry-After` cap.
    pub retry: retry::RetryPolicy,
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
    changes: Changes,
}

impl Scheduler {
    /// Starts the claimer, the completer and the destinations' upkeep.
    /// `shutdown` stops claiming.
    pub async fn start(
        store: Store,
        sender: HttpSender,
        feed: OutcomeFeed,
        keyring: Keyring,
        config: SchedulerConfig,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> (Self, SchedulerHandle) {
        let wakeup = Signal::start(&store, Channel::Work, &shutdown).await;
        let changes = Changes::start(&store, &shutdown).await;
        let (inbox, completer_inbox) = mpsc::channel(completer::MAX_BATCH * 2);
        let health = Health::default();
        let in_flight = InFlight::new(wakeup.clone());
        let writer = completer::Writer {
            store: store.clone(),
            feed: feed.clone(),
            wakeup: wakeup.clone(),
            metrics: metrics.clone(),
            health: health.clone(),
            in_flight: in_flight.clone(),
            defaults: config.defaults,
            abandon: CancellationToken::new(),
        };
        let abandon = writer.abandon.clone();
        let mut completer = completer::start(&writer, completer_inbox);
        let upkeep_stop = CancellationToken::new();
        let upkeep = tokio::spawn(
            Upkeep {
                store: store.clone(),
                health,
                feed,
                metrics: metrics.clone(),
                period: HEALTH_PERIOD,
                disable_after: config.disable_after,
                changes: changes.clone(),
            }
            .run(upkeep_stop.clone()),
        );
        let permits = Arc::new(Semaphore::new(config.concurrency));
        let hand_overs = Arc::new(HandOvers {
            store: store.clone(),
            permits: Arc::clone(&permits),
            in_flight: in_flight.clone(),
            lease: config.lease_duration,
            attempt_timeout: config.request_timeout,
            defaults: config.defaults,
            changes: changes.clone(),
            desks: Mutex::default(),
        });
        let executors = Executors::new(
            sender,
            keyring.clone(),
            config.retry,
            metrics.clone(),
            inbox.clone(),
            hand_overs,
        );
        let claimer = claimer::Claimer {
            store,
            keyring,
            config,
            permits,
            in_flight,
            executors,
            metrics,
            wakeup: wakeup.clone(),
        };
        let task = tokio::spawn(async move {
            // Results still unwritten when the grace has run out (the
            // database away) are left to lease expiry.
            let grace_over = {
                let shutdown = shutdown.clone();
                async move {
                    shutdown.cancelled().await;
                    tokio::time::sleep(config.shutdown_grace).await;
                }
            };
            // The completer ends once the claimer, its executors and every
            // handle (held by the API) have dropped their senders.
            let drained = async {
                claimer.run(shutdown).await;
                while let Some(finished) = completer.join_next().await {
                    if let Err(error) = finished {
                        tracing::error!(%error, "a completion writer failed");
                    }
                }
            };
            tokio::pin!(drained);
            tokio::select! {
                () = &mut drained => {}
                () = grace_over => {
                    abandon.cancel();
                    drained.await;
                }
            }
            // Last, the health the final attempts left.
            upkeep_stop.cancel();
            if let Err(error) = upkeep.await {
                tracing::error!(%error, "the destinations' upkeep failed");
            }
        });
        let handle = SchedulerHandle {
            wakeup,
            inbox,
            changes,
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

    /// A destination's policy or state changed (paused, resumed, enabled,
    /// given a new policy): deliveries leased ahead on any replica, under
    /// the policy as it was, are given back instead of started.
    pub fn destination_changed(&self) {
        self.changes.changed();
    }

    /// Cancels a delivery through the completer, whose writers record
    /// the cancellation's outcome the way they record attempt outcomes
    /// (under the feed's lock, so the feed orders them by commit). A
    /// result of the delivery not yet written when the cancel commits is
    /// discarded, like that of an attempt still in flight. The
    /// cancellation is audited as `actor`'s.
    pub async fn cancel(
        &self,
        actor: Actor,
        id: Uuid,
    ) -> Result<Result<CancelResult, StoreError>, ShuttingDown> {
        let (reply, answer) = oneshot::channel();
        let work = Work::Cancel { actor, id, reply };
        self.inbox.send(work).await.map_err(|_| ShuttingDown)?;
        answer.await.map_err(|_| ShuttingDown)
    }
}
