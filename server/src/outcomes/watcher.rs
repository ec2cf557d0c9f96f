//! One stream's watcher: catch up from storage, then forward the ring.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

use crate::store::{
    Store, StoreError,
    records::{OutcomeFilter, OutcomeRecord},
};

/// Outcomes read from storage per query while catching up.
const REPLAY_PAGE: u64 = 500;

/// One watcher's task state.
pub(super) struct Watcher {
    pub(super) store: Store,
    pub(super) live: broadcast::Receiver<Arc<OutcomeRecord>>,
    pub(super) tenant_id: String,
    pub(super) filter: OutcomeFilter,
    pub(super) tx: mpsc::Sender<Result<OutcomeRecord, StoreError>>,
}

/// Why forwarding the ring stopped.
enum Tail {
    /// The watcher fell behind the ring: read storage again.
    Lagged,
    /// The client left or the feed closed.
    Ended,
}

impl Watcher {
    /// Sends every matching outcome after `last`, then live ones.
    pub(super) async fn run(mut self, mut last: i64) {
        loop {
            last = match self.catch_up(last).await {
                Ok(Some(sequence)) => sequence,
                Ok(None) => return,
                Err(error) => {
                    let _ = self.tx.send(Err(error)).await;
                    return;
                }
            };
            match self.tail(&mut last).await {
                Tail::Lagged => continue,
                Tail::Ended => return,
            }
        }
    }

    /// Sends stored outcomes after `last`; returns the new cursor, or `None`
    /// if the client went away.
    async fn catch_up(&mut self, mut last: i64) -> Result<Option<i64>, StoreError> {
        loop {
            let page = self
                .store
                .outcomes_after(&self.tenant_id, &self.filter, last, REPLAY_PAGE)
                .await?;
            let full = page.len() as u64 == REPLAY_PAGE;
            for outcome in page {
                last = outcome.sequence;
                if self.tx.send(Ok(outcome)).await.is_err() {
                    return Ok(None);
                }
            }
            if !full {
                return Ok(Some(last));
            }
        }
    }

    /// Forwards ring outcomes until the client leaves, the feed closes, or
    /// this watcher falls behind the ring.
    async fn tail(&mut self, last: &mut i64) -> Tail {
        loop {
            match self.live.recv().await {
                Ok(outcome) => {
                    if outcome.sequence <= *last {
                        continue;
                    }
                    // The ring is the gap-free prefix of every tenant's
                    // outcomes, so the cursor may advance past others'.
                    *last = outcome.sequence;
                    if outcome.tenant_id != self.tenant_id || !self.filter.matches(&outcome) {
                        continue;
                    }
                    if self
                        .tx
                        .send(Ok(OutcomeRecord::clone(&outcome)))
                        .await
                        .is_err()
                    {
                        return Tail::Ended;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => return Tail::Lagged,
                Err(broadcast::error::RecvError::Closed) => return Tail::Ended,
            }
        }
    }
}
