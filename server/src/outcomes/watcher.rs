//! One stream's watcher: catch up from storage, then forward the ring.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

use super::{REPLAY_PAGE, WatchError, replay_page};
use crate::store::{
    Store,
    records::{OutcomeFilter, OutcomeRecord},
};

/// One watcher's task state.
pub(super) struct Watcher {
    pub(super) store: Store,
    pub(super) live: broadcast::Receiver<Arc<OutcomeRecord>>,
    pub(super) tenant_id: String,
    pub(super) filter: OutcomeFilter,
    pub(super) tx: mpsc::Sender<Result<OutcomeRecord, WatchError>>,
}

/// Why forwarding the ring stopped.
enum Tail {
    /// The watcher fell behind the ring: read storage again.
    Lagged,
    /// The client left or the feed closed.
    Ended,
}

impl Watcher {
    /// Sends every matching outcome after `last` (starting with `first`,
    /// the page after it already read, if any), then live ones.
    pub(super) async fn run(mut self, mut last: i64, mut first: Option<Vec<OutcomeRecord>>) {
        loop {
            last = match self.catch_up(last, first.take()).await {
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

    /// Sends stored outcomes after `last`, starting with `first` if given;
    /// returns the new cursor, or `None` if the client went away.
    async fn catch_up(
        &mut self,
        mut last: i64,
        mut first: Option<Vec<OutcomeRecord>>,
    ) -> Result<Option<i64>, WatchError> {
        loop {
            let page = match first.take() {
                Some(page) => page,
                None => replay_page(&self.store, &self.tenant_id, &self.filter, last).await?,
            };
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
