//! Completer: the one writer of attempt results. Consumes [`Completion`]s
//! from every executor, writes them in batches (one transaction per batch,
//! as many as are waiting, up to [`MAX_BATCH`]), then publishes the
//! committed outcomes to the feed in commit order.
//!
//! Its inbound channel is bounded: when the database falls behind,
//! executors wait to hand over results, and the claimer (out of permits)
//! stops claiming. A batch that cannot be written is retried a few times;
//! after that its rows keep their leases and are attempted again once the
//! leases expire (a 2xx is re-sent, never dead-lettered: invariant I4).

use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use crate::{
    outcomes::OutcomeFeed,
    store::{
        Store,
        records::{Completion, CompletionResult},
    },
};

/// Most completions written in one transaction.
pub const MAX_BATCH: usize = 128;
/// Tries per batch before its rows are left to lease expiry.
const WRITE_TRIES: u32 = 3;

/// Runs until every sender is dropped and the channel is drained.
pub async fn run(
    store: Store,
    feed: OutcomeFeed,
    wake: std::sync::Arc<Notify>,
    mut inbox: mpsc::Receiver<Completion>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while inbox.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if let Some(results) = write(&store, &batch).await {
            let retries = batch
                .iter()
                .any(|c| matches!(c.decision, crate::domain::Decision::Retry { .. }));
            feed.publish(results.into_iter().filter_map(|result| match result {
                CompletionResult::Recorded(outcome) => Some(outcome),
                CompletionResult::LeaseLost => None,
            }));
            if retries {
                // A retry may now be due sooner than the claimer's timer.
                wake.notify_one();
            }
        }
        batch.clear();
    }
}

async fn write(store: &Store, batch: &[Completion]) -> Option<Vec<CompletionResult>> {
    for attempt in 1..=WRITE_TRIES {
        match store.complete(batch).await {
            Ok(results) => {
                for (completion, result) in batch.iter().zip(&results) {
                    if *result == CompletionResult::LeaseLost {
                        tracing::warn!(
                            delivery_id = %completion.delivery_id,
                            "lease lost before the attempt was recorded; result discarded"
                        );
                    }
                }
                return Some(results);
            }
            Err(error) => {
                tracing::error!(%error, attempt, size = batch.len(), "could not record attempt results");
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            }
        }
    }
    tracing::error!(
        size = batch.len(),
        "giving up on recording this batch; its deliveries will be attempted again when their leases expire"
    );
    None
}
