//! The lease-and-retry scheduler: `claimer -> executor -> completer`.
//!
//! - [`claimer`] leases due deliveries (as many as it has free permits)
//!   and starts one executor task per delivery;
//! - [`executor`] sends one attempt through `transport` and decides, with
//!   [`retry`], what follows; it never writes to the database;
//! - [`completer`] persists results in batches, fenced by lease token, and
//!   publishes the committed outcomes to the feed.
//!
//! Shutdown has two phases: stop claiming, then drain (in-flight attempts
//! finish within the grace period, the completer writes what they produced).

mod claimer;
mod completer;
mod executor;
pub mod retry;

use std::{sync::Arc, time::Duration};

use tokio::{sync::Notify, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{outcomes::OutcomeFeed, store::Store, transport::HttpSender};

/// The scheduler's knobs, taken from [`crate::Config`].
#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    /// Most attempts in flight at once.
    pub concurrency: usize,
    /// Most rows leased per claim statement.
    pub claim_batch: usize,
    /// How long a claim leases a row.
    pub lease_duration: Duration,
    /// Safety-net poll interval.
    pub poll_interval: Duration,
    /// How long in-flight attempts may take to finish on shutdown.
    pub shutdown_grace: Duration,
}

/// A running scheduler.
pub struct Scheduler {
    task: JoinHandle<()>,
}

impl Scheduler {
    /// Starts the claimer and the completer. `wake` is notified by enqueues
    /// and scheduled retries; `shutdown` stops claiming.
    pub fn start(
        store: Store,
        sender: HttpSender,
        feed: OutcomeFeed,
        policy: retry::RetryPolicy,
        config: SchedulerConfig,
        wake: Arc<Notify>,
        shutdown: CancellationToken,
    ) -> Self {
        let (completions, inbox) = tokio::sync::mpsc::channel(completer::MAX_BATCH * 2);
        let completer = tokio::spawn(completer::run(
            store.clone(),
            feed,
            Arc::clone(&wake),
            inbox,
        ));
        let claimer = claimer::Claimer {
            store,
            sender,
            policy,
            config,
            wake,
            completions,
        };
        let task = tokio::spawn(async move {
            // The claimer owns the only completion sender (executors hold
            // clones); when it and they are gone, the completer drains and ends.
            claimer.run(shutdown).await;
            if let Err(error) = completer.await {
                tracing::error!(%error, "the completer failed");
            }
        });
        Self { task }
    }

    /// Waits until the scheduler has stopped claiming, drained in-flight
    /// attempts and recorded their results.
    pub async fn stopped(self) {
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the scheduler failed");
        }
    }
}
