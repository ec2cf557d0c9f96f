//! Destinations: the receivers Herald sends to, one per tenant and
//! `scheme://host:port`, each with a policy and a health.
//!
//! - [`policy`]: most in flight, rate limit, circuit thresholds; defaults
//!   from the configuration, overrides per destination;
//! - [`limiter`]: the rate limiter (GCRA), whose state is one number on
//!   the destination's row, shared by every replica;
//! - [`breaker`]: the circuit breaker's transitions;
//! - [`admission`]: what a claim may start at a destination and where the
//!   destination is parked afterwards (the claim itself is in
//!   [`crate::store`]);
//! - [`health`]: each replica's view of the attempts it made, which trips
//!   circuits and feeds the recent success ratio and latency;
//! - [`state`]: an operator's pause, resume and enable, and what each
//!   takes;
//! - [`Upkeep`]: writes that view every few seconds, disables destinations
//!   that failed for too long, dead-letters what no claim will send, and
//!   now and then wakes an idle destination that has due work (an enqueue
//!   that committed after both of a claim's empty looks, which only a
//!   database stalling mid-commit makes possible).
//!
//! What is cluster-wide: the in-flight limit (counted from leases in the
//! database), the rate limit, the circuit's state, pause and disable.
//! What is per replica: the count of consecutive failures that trips a
//! circuit (each replica counts its own attempts), and the health counts
//! until they are written.

pub mod admission;
pub mod breaker;
pub mod changes;
pub mod health;
pub mod limiter;
pub mod policy;
pub mod state;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{metrics::Metrics, outcomes::OutcomeFeed, store::Store};

use self::{changes::Changes, health::Health};

/// Stranded deliveries dead-lettered per transaction.
const STRANDED_BATCH: u64 = 500;

/// Every how many rounds idle destinations with due work are looked for.
const OVERLOOKED_EVERY: u64 = 15;

/// The destinations' background writer on one replica.
pub struct Upkeep {
    /// Where health goes.
    pub store: Store,
    /// What this replica saw.
    pub health: Health,
    /// Told of disabling and dead-lettering.
    pub feed: OutcomeFeed,
    /// Counts them.
    pub metrics: Metrics,
    /// How often it runs.
    pub period: Duration,
    /// Failing without a success this long disables a destination.
    pub disable_after: Option<Duration>,
    /// Told when a destination is disabled.
    pub changes: Changes,
}

impl Upkeep {
    /// Runs every `period` until `shutdown`, and once more after it, so
    /// the last counts are written.
    pub async fn run(self, shutdown: CancellationToken) {
        for rounds in 1.. {
            let stop = tokio::select! {
                () = shutdown.cancelled() => true,
                () = tokio::time::sleep(self.period) => false,
            };
            self.round().await;
            if stop {
                return;
            }
            if rounds % OVERLOOKED_EVERY == 0 {
                self.wake_overlooked().await;
            }
        }
    }

    /// Wakes idle destinations that have due deliveries no claim is going
    /// to look at.
    pub async fn wake_overlooked(&self) {
        match self.store.wake_overlooked().await {
            Ok(0) => {}
            Ok(woken) => {
                tracing::warn!(woken, "woke idle destinations with due deliveries");
            }
            Err(error) => tracing::warn!(%error, "looking for overlooked destinations failed"),
        }
    }

    /// One round: health written, failing destinations disabled, stranded
    /// deliveries dead-lettered.
    pub async fn round(&self) {
        let snapshots = self.health.take();
        match self
            .store
            .flush_health(&snapshots, self.disable_after)
            .await
        {
            Ok(disabled) => {
                for event in &disabled {
                    tracing::warn!(
                        tenant = %event.tenant_id,
                        destination = event.destination.as_deref().unwrap_or_default(),
                        "destination disabled: {}",
                        event.error_message.as_deref().unwrap_or_default()
                    );
                    self.metrics.outcome(event.kind);
                }
                if !disabled.is_empty() {
                    self.changes.changed();
                    self.feed.committed();
                }
            }
            Err(error) => tracing::warn!(%error, "recording destination health failed"),
        }
        loop {
            match self.store.dead_letter_stranded(STRANDED_BATCH).await {
                Ok(outcomes) => {
                    for outcome in &outcomes {
                        self.metrics.outcome(outcome.kind);
                    }
                    if !outcomes.is_empty() {
                        self.feed.committed();
                    }
                    if (outcomes.len() as u64) < STRANDED_BATCH {
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "dead-lettering stranded deliveries failed");
                    return;
                }
            }
        }
    }
}
