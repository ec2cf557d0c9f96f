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
//! failing one batch, which is written again.
//!
//! Its inbound channel is bounded: when the database falls behind or goes
//! away, executors wait to hand over results, and the claimer (out of
//! permits) stops claiming. A batch that cannot be written is kept and
//! written again, with growing pauses, for as long as its leases hold
//! (invariant I4): a result in hand, a 2xx above all, is recorded once the
//! database is back, not made again. Only a result whose lease runs out
//! first is let go: its row is attempted again once the lease expires, as
//! a resend that neither counts against the attempt budget nor stops at
//! the deadline ([`crate::store::Store::claim`]). Every write is fenced by
//! lease token, so one that lands after another replica took the row
//! changes nothing. At shutdown, what is still unwritten when the grace
//! period ends (`abandon`) is left to lease expiry the same way.

use std::{sync::Arc, time::Duration};

use tokio::{
    sync::{Mutex, mpsc, oneshot},
    task::JoinSet,
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::in_flight::InFlight;
use crate::signal::Signal;
use crate::{
    destinations::{health::Health, policy::Policy},
    domain::{Decision, OutcomeKind},
    metrics::Metrics,
    outcomes::OutcomeFeed,
    store::{
        Actor, CircuitChange, Store, StoreError,
        records::{CancelResult, Completion, CompletionResult, DestinationRef, Lease},
    },
};

/// Most attempt results written in one transaction.
pub const MAX_BATCH: usize = 128;
/// The pause after a batch's first failed write; it doubles with each
/// further failure, up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(50);
/// The longest pause between two writes of a batch: how late, at most, a
/// batch notices that the database is back.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// What the completer writes.
#[derive(Debug)]
pub enum Work {
    /// An attempt's result, worth writing until its lease ends.
    Attempt {
        /// The result (boxed, so the inbox's slots stay small).
        completion: Box<Completion>,
        /// When its lease ends, at the earliest (see
        /// [`ClaimedDelivery::lease_ends`](crate::store::records::ClaimedDelivery::lease_ends)).
        lease_ends: Instant,
    },
    /// An operator's cancellation, answered on `reply`.
    Cancel {
        /// The caller: its tenant and API key.
        actor: Actor,
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
    /// Cancelled when the shutdown grace has run out: results not yet
    /// written are then let go (after one try) instead of kept.
    pub abandon: CancellationToken,
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
    let mut lease_ends = Vec::with_capacity(MAX_BATCH);
    while inbox.lock().await.recv_many(&mut work, MAX_BATCH).await > 0 {
        let mut cancels = Vec::new();
        for item in work.drain(..) {
            match item {
                Work::Attempt {
                    completion,
                    lease_ends: ends,
                } => {
                    batch.push(*completion);
                    lease_ends.push(ends);
                }
                Work::Cancel { actor, id, reply } => cancels.push((actor, id, reply)),
            }
        }
        if !batch.is_empty() {
            let retries = batch
                .iter()
                .any(|c| matches!(c.decision, Decision::Retry { .. }));
            write(&writer, &mut batch, &mut lease_ends).await;
            if retries {
                // A retry may now be due sooner than the claimer's timer.
                wakeup.raise_local();
            }
            batch.clear();
            lease_ends.clear();
        }
        for (actor, id, reply) in cancels {
            let result = store.cancel(&actor, id).await;
            if let Ok(CancelResult::Cancelled(_)) = &result {
                metrics.outcome(OutcomeKind::Cancelled);
                feed.committed();
            }
            // The caller may have gone away; the cancel stands regardless.
            let _ = reply.send(result);
        }
    }
}

/// Writes `batch` (whose leases end at `lease_ends`, in the same order),
/// trying again after each failure for as long as leases hold; a result
/// whose lease ends before the next try is let go (see the module).
async fn write(writer: &Writer, batch: &mut Vec<Completion>, lease_ends: &mut Vec<Instant>) {
    let Writer {
        store,
        feed,
        metrics,
        health,
        in_flight,
        defaults,
        abandon,
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
    let mut pause = FIRST_PAUSE;
    for attempt in 1.. {
        let error = match store.complete(batch, &changes, defaults).await {
            Ok(results) => {
                for (completion, result) in batch.iter().zip(&results) {
                    match result {
                        CompletionResult::Recorded(outcome) => metrics.outcome(outcome.kind),
                        CompletionResult::LeaseLost => tracing::warn!(
                            delivery_id = %completion.delivery_id,
                            "lease lost before the attempt was recorded (expired and taken again, or cancelled); result discarded"
                        ),
                    }
                }
                in_flight.recorded(&leases(batch));
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
            Err(error) => error,
        };
        let abandoned = abandon.is_cancelled();
        tracing::error!(
            %error,
            attempt,
            size = batch.len(),
            "could not record attempt results; {}",
            if abandoned {
                "the shutdown grace has run out"
            } else {
                "they are kept and written again while their leases hold"
            }
        );
        // What the next try would come too late for is let go now.
        let next_try = Instant::now() + pause;
        let_go(writer, batch, lease_ends, abandoned, |ends| {
            abandoned || ends <= next_try
        });
        if batch.is_empty() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep_until(next_try) => {}
            () = abandon.cancelled() => {
                let_go(writer, batch, lease_ends, true, |_| true);
                return;
            }
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Gives up on the results of `batch` whose lease end satisfies `expired`:
/// their rows keep their leases, and are attempted again when those
/// expire.
fn let_go(
    writer: &Writer,
    batch: &mut Vec<Completion>,
    lease_ends: &mut Vec<Instant>,
    shutting_down: bool,
    expired: impl Fn(Instant) -> bool,
) {
    let mut given_up = Vec::new();
    let mut kept = Vec::with_capacity(batch.len());
    let mut kept_ends = Vec::with_capacity(batch.len());
    for (completion, ends) in batch.drain(..).zip(lease_ends.drain(..)) {
        if expired(ends) {
            given_up.push(completion);
        } else {
            kept.push(completion);
            kept_ends.push(ends);
        }
    }
    *batch = kept;
    *lease_ends = kept_ends;
    for completion in &given_up {
        tracing::warn!(
            delivery_id = %completion.delivery_id,
            attempt = completion.attempt_number,
            decision = ?completion.decision,
            "{}; the attempt is made again once its lease expires",
            if shutting_down {
                "shutting down before this attempt's result could be recorded"
            } else {
                "the lease ran out before this attempt's result could be recorded"
            }
        );
    }
    if !given_up.is_empty() {
        // Their leases count as in flight again until they expire.
        writer.in_flight.recorded(&leases(&given_up));
    }
}

/// Each completion's destination and lease, for the claim hints.
fn leases(batch: &[Completion]) -> Vec<(DestinationRef, Lease)> {
    batch
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
        .collect()
}
