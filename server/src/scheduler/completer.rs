//! Completer: the writer of outcomes on this replica. Consumes [`Work`]
//! from every executor (attempt results) and from the API
//! (cancellations), writes attempt results in batches (one transaction per
//! batch: as many as are waiting, up to [`MAX_BATCH`], so commits are
//! shared under load and nothing waits when idle), then tells the outcome
//! feed that outcomes were committed. Each batch first goes through the
//! replica's [`Health`] view, which says what it changes at its
//! destinations (a circuit opening or closing, a hold), written in the same
//! transaction; once written, the claim hints stop counting its leases.
//!
//! It runs as many writer tasks as the database can usefully write
//! transactions at once ([`Store::writers`]): one on SQLite, two on
//! PostgreSQL, where one batch commits while the next is gathered and
//! written. They take turns at the inbox, so each takes what is waiting
//! when it comes free. Each batch locks its rows before the feed's lock,
//! so the feed never closes a cycle; two batches share a row only when one
//! holds the result of an expired lease and the other its successor's,
//! and if such a pair ever crossed, PostgreSQL would end the deadlock by
//! failing one batch, which is written again ([`WRITE_TRIES`]).
//!
//! Its inbound channel is bounded: when the database falls behind,
//! executors wait to hand over results, and the claimer (out of permits)
//! stops claiming. A batch that cannot be written is retried a few times;
//! after that its rows keep their leases and are attempted again once the
//! leases expire (a 2xx is re-sent, never dead-lettered: invariant I4).

use std::time::Duration;

use std::sync::Arc;

use tokio::{
    sync::{Mutex, mpsc, oneshot},
    task::JoinSet,
};
use uuid::Uuid;

use super::in_flight::InFlight;
use crate::signal::Signal;
use crate::{
    destinations::{health::Health, policy::Policy},
    domain::{Decision, OutcomeKind},
    metrics::Metrics,
    outcomes::OutcomeFeed,
    store::{
        CircuitChange, Store, StoreError,
        records::{CancelResult, Completion, CompletionResult, DestinationRef, Lease},
    },
};

/// Most attempt results written in one transaction.
pub const MAX_BATCH: usize = 128;
/// Tries per batch before its rows are left to lease expiry.
const WRITE_TRIES: u32 = 3;

/// What the completer writes.
#[derive(Debug)]
pub enum Work {
    /// An attempt's result.
    Attempt(Completion),
    /// An operator's cancellation, answered on `reply`.
    Cancel {
        /// The caller's tenant.
        tenant_id: String,
        /// The delivery to cancel.
        id: Uuid,
        /// Where the result goes.
        reply: oneshot::Sender<Result<CancelResult, StoreError>>,
    },
}

/// What every writer shares.
#[derive(Clone)]
pub struct Writer {
    /// Where results go.
    pub store: Store,
    /// Told when outcomes were committed.
    pub feed: OutcomeFeed,
    /// Raised when a retry may be due sooner than the claimer's timer.
    pub wakeup: Signal,
    /// Counts outcomes.
    pub metrics: Metrics,
    /// The replica's view of its destinations' health.
    pub health: Health,
    /// The claim hints, told when results are written.
    pub in_flight: InFlight,
    /// The configured policy, for what destinations do not override.
    pub defaults: Policy,
}

/// Starts the writers over `inbox`; each stops once every sender is
/// dropped and the channel is drained.
pub fn start(writer: &Writer, inbox: mpsc::Receiver<Work>) -> JoinSet<()> {
    let inbox = Arc::new(Mutex::new(inbox));
    let mut writers = JoinSet::new();
    for _ in 0..writer.store.writers() {
        writers.spawn(run(writer.clone(), Arc::clone(&inbox)));
    }
    writers
}

/// One writer: takes what is waiting (holding the inbox only while it
/// waits), writes it, and comes back for more.
async fn run(writer: Writer, inbox: Arc<Mutex<mpsc::Receiver<Work>>>) {
    let Writer {
        store,
        feed,
        wakeup,
        metrics,
        ..
    } = &writer;
    let mut work = Vec::with_capacity(MAX_BATCH);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while inbox.lock().await.recv_many(&mut work, MAX_BATCH).await > 0 {
        let mut cancels = Vec::new();
        for item in work.drain(..) {
            match item {
                Work::Attempt(completion) => batch.push(completion),
                Work::Cancel {
                    tenant_id,
                    id,
                    reply,
                } => cancels.push((tenant_id, id, reply)),
            }
        }
        if !batch.is_empty() {
            write(&writer, &batch).await;
            if batch
                .iter()
                .any(|c| matches!(c.decision, Decision::Retry { .. }))
            {
                // A retry may now be due sooner than the claimer's timer.
                wakeup.raise_local();
            }
            batch.clear();
        }
        for (tenant_id, id, reply) in cancels {
            let result = store.cancel(&tenant_id, id).await;
            if let Ok(CancelResult::Cancelled(_)) = &result {
                metrics.outcome(OutcomeKind::Cancelled);
                feed.committed();
            }
            // The caller may have gone away; the cancel stands regardless.
            let _ = reply.send(result);
        }
    }
}

async fn write(writer: &Writer, batch: &[Completion]) {
    let Writer {
        store,
        feed,
        metrics,
        health,
        in_flight,
        defaults,
        ..
    } = writer;
    let changes = health.record(batch);
    let opening: Vec<DestinationRef> = changes
        .iter()
        .filter(|change| {
            matches!(
                change.circuit,
                Some(CircuitChange::Trip { .. } | CircuitChange::Reopen)
            )
        })
        .map(|change| change.destination.clone())
        .collect();
    in_flight.opening(&opening);
    let leases: Vec<(DestinationRef, Lease)> = batch
        .iter()
        .map(|completion| {
            let destination = DestinationRef {
                tenant_id: completion.tenant_id.clone(),
                destination: completion.destination.clone(),
            };
            let lease = Lease {
                delivery_id: completion.delivery_id,
                token: completion.lease_token,
            };
            (destination, lease)
        })
        .collect();
    for attempt in 1..=WRITE_TRIES {
        match store.complete(batch, &changes, defaults).await {
            Ok(results) => {
                for (completion, result) in batch.iter().zip(&results) {
                    match result {
                        CompletionResult::Recorded(outcome) => metrics.outcome(outcome.kind),
                        CompletionResult::LeaseLost => tracing::warn!(
                            delivery_id = %completion.delivery_id,
                            "lease lost before the attempt was recorded (expired, or cancelled); result discarded"
                        ),
                    }
                }
                in_flight.recorded(&leases);
                in_flight.opened(&opening);
                // Circuit events are committed with the batch too.
                if !changes.is_empty()
                    || results
                        .iter()
                        .any(|result| matches!(result, CompletionResult::Recorded(_)))
                {
                    feed.committed();
                }
                return;
            }
            Err(error) => {
                tracing::error!(%error, attempt, size = batch.len(), "could not record attempt results");
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            }
        }
    }
    // Their leases count as in flight again until they expire.
    in_flight.recorded(&leases);
    tracing::error!(
        size = batch.len(),
        "giving up on recording this batch; its deliveries will be attempted again when their leases expire"
    );
}
