//! The outcome feed behind `WatchOutcomes`.
//!
//! Consumes outcomes the completer has committed ([`OutcomeFeed::publish`]);
//! produces, per watcher, every outcome of its tenant after a cursor, once
//! and in sequence order. Storage is the source of truth; the in-process
//! broadcast only carries the tail. A watcher subscribes to the broadcast
//! *before* it reads storage, so nothing committed in between is missed,
//! and skips live outcomes it already read. A watcher that falls behind the
//! broadcast's ring buffer goes back to storage from its cursor instead of
//! being dropped, so memory stays bounded by the ring and one small channel
//! per watcher, however slow the watchers are.
//!
//! Trade-off accepted for now: the live tail carries this replica's
//! outcomes, committed in order by its single completer; other replicas'
//! outcomes reach a watcher only when it next reads storage.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError, records::OutcomeRecord};

/// Outcomes read from storage per query while catching up.
const REPLAY_PAGE: u64 = 500;
/// Outcomes buffered per watcher before the stream pushes back.
const WATCHER_BUFFER: usize = 64;

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// Only outcomes recorded from now on.
    Now,
    /// Every outcome with a sequence above this one, then live ones.
    After(i64),
}

/// Publishes committed outcomes to live watchers; cheap to clone.
#[derive(Clone, Debug)]
pub struct OutcomeFeed {
    store: Store,
    live: broadcast::Sender<Arc<OutcomeRecord>>,
    shutdown: CancellationToken,
}

impl OutcomeFeed {
    /// A feed over `store` whose live ring holds `capacity` outcomes. Watch
    /// streams end when `shutdown` is cancelled.
    pub fn new(store: Store, capacity: usize, shutdown: CancellationToken) -> Self {
        let (live, _) = broadcast::channel(capacity);
        Self {
            store,
            live,
            shutdown,
        }
    }

    /// Hands committed outcomes, in commit order, to the live watchers.
    pub fn publish(&self, outcomes: impl IntoIterator<Item = OutcomeRecord>) {
        for outcome in outcomes {
            // No watcher listening is not an error: storage has the outcome.
            let _ = self.live.send(Arc::new(outcome));
        }
    }

    /// Streams `tenant_id`'s outcomes from `cursor` on. [`Cursor::Now`] is
    /// resolved before this returns, so every outcome recorded after the
    /// call is streamed. The stream ends on shutdown, or with an error if
    /// storage fails.
    pub async fn watch(
        &self,
        tenant_id: String,
        cursor: Cursor,
    ) -> Result<mpsc::Receiver<Result<OutcomeRecord, StoreError>>, StoreError> {
        // Subscribe before reading storage: whatever commits in between is
        // in the ring, and the cursor filters out what storage already gave.
        let live = self.live.subscribe();
        let after = match cursor {
            Cursor::After(sequence) => sequence,
            Cursor::Now => self.store.latest_sequence().await?,
        };
        let (tx, rx) = mpsc::channel(WATCHER_BUFFER);
        let watcher = Watcher {
            store: self.store.clone(),
            live,
            tenant_id,
            tx,
        };
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = watcher.run(after) => {}
            }
        });
        Ok(rx)
    }
}

/// One watcher's task state.
struct Watcher {
    store: Store,
    live: broadcast::Receiver<Arc<OutcomeRecord>>,
    tenant_id: String,
    tx: mpsc::Sender<Result<OutcomeRecord, StoreError>>,
}

impl Watcher {
    async fn run(mut self, mut last: i64) {
        loop {
            last = match self.catch_up(last).await {
                Ok(Some(sequence)) => sequence,
                Ok(None) => return,
                Err(error) => return self.fail(error).await,
            };
            match self.tail(&mut last).await {
                Tail::Lagged => continue,
                Tail::Ended => return,
            }
        }
    }

    /// Sends stored outcomes after `last`; returns the new cursor, or
    /// `None` if the client went away.
    async fn catch_up(&mut self, mut last: i64) -> Result<Option<i64>, StoreError> {
        loop {
            let page = self
                .store
                .outcomes_after(&self.tenant_id, last, REPLAY_PAGE)
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

    /// Forwards live outcomes until the client leaves, the feed closes, or
    /// this watcher falls behind the ring.
    async fn tail(&mut self, last: &mut i64) -> Tail {
        loop {
            match self.live.recv().await {
                Ok(outcome) => {
                    if outcome.tenant_id != self.tenant_id || outcome.sequence <= *last {
                        continue;
                    }
                    *last = outcome.sequence;
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

    async fn fail(self, error: StoreError) {
        let _ = self.tx.send(Err(error)).await;
    }
}

/// Why live tailing stopped.
enum Tail {
    /// The watcher fell behind the ring: read storage again.
    Lagged,
    /// The client left or the feed closed.
    Ended,
}
