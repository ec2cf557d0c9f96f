//! The outcome feed behind `WatchOutcomes` (invariant I6).
//!
//! Storage is the source of truth, and it is gap-free: outcome-writing
//! transactions are serialized (see `Store::lock_feed`), so visible outcome
//! sequences always form a prefix and reading `sequence > n` in order never
//! misses one that commits later.
//!
//! On each replica one [`tailer`] reads that prefix as it grows and fans it
//! out through a bounded ring. It is woken by this replica's completer, by
//! other replicas' commits (`NOTIFY` on PostgreSQL) and by a slow poll.
//! Each stream has a [`watcher`]: it subscribes to the ring *before* it
//! reads storage from its cursor, then forwards ring outcomes above the
//! last one it sent, so nothing is lost or repeated at the switch. A
//! watcher that falls behind the ring reads storage again instead of being
//! dropped; server memory is the ring plus a small channel per watcher,
//! however slow or numerous the watchers are. The janitor
//! (`crate::janitor`) prunes old outcomes and records how far, so a cursor
//! from before that is refused.

mod tailer;
mod watcher;

use std::{sync::Arc, time::Duration};

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::{
    signal::Signal,
    store::{
        Channel, Store, StoreError,
        records::{OutcomeFilter, OutcomeRecord},
    },
};

/// Outcomes buffered per watcher before its stream pushes back.
const WATCHER_BUFFER: usize = 64;
/// Outcomes read from storage per query while replaying.
const REPLAY_PAGE: u64 = 500;

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// Only outcomes recorded from now on.
    Now,
    /// Every retained outcome, then live ones.
    Oldest,
    /// Every outcome with a sequence above this one, then live ones.
    After(i64),
}

/// Why a watch cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The cursor points before what retention kept.
    #[error(
        "after_sequence {after} is older than the oldest retained outcome: outcomes up to \
         {pruned_through} were pruned; resume with after_sequence {pruned_through} or later \
         (from_oldest does), or widen the retention window"
    )]
    OutOfRange {
        /// The cursor asked for.
        after: i64,
        /// The highest pruned sequence.
        pruned_through: i64,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An open watch: where it starts, and the outcomes after that.
#[derive(Debug)]
pub struct Watch {
    /// The sequence the stream starts after: the cursor as resolved, so
    /// for [`Cursor::Now`] the newest outcome recorded at the call. A
    /// client that reconnects before its first outcome resumes from here.
    pub after: i64,
    /// The outcomes, in sequence order; an error ends the stream.
    pub outcomes: mpsc::Receiver<Result<OutcomeRecord, WatchError>>,
}

/// The feed of one replica; cheap to clone.
#[derive(Clone, Debug)]
pub struct OutcomeFeed {
    store: Store,
    live: broadcast::Sender<Arc<OutcomeRecord>>,
    committed: Signal,
    shutdown: CancellationToken,
}

impl OutcomeFeed {
    /// Starts the tailer over `store` with a ring of `capacity` outcomes and
    /// a safety-net `poll`. Watch streams end when `shutdown` is cancelled.
    ///
    /// The tailer's starting point is read before this returns: a watch
    /// opened afterwards finds everything up to it in storage and
    /// everything after it in the ring. (Read later, an outcome committed
    /// in between could be in neither.)
    pub async fn start(
        store: Store,
        capacity: usize,
        poll: Duration,
        shutdown: CancellationToken,
    ) -> Result<Self, StoreError> {
        let head = store.latest_sequence().await?;
        let (live, _) = broadcast::channel(capacity);
        let committed = Signal::start(&store, Channel::Outcomes, &shutdown).await;
        let tail = tailer::Tailer {
            store: store.clone(),
            live: live.clone(),
            committed: committed.clone(),
            poll,
        };
        tokio::spawn(tail.run(head, shutdown.clone()));
        Ok(Self {
            store,
            live,
            committed,
            shutdown,
        })
    }

    /// Outcomes were committed (by this replica): tailers here and on the
    /// other replicas read them.
    pub fn committed(&self) {
        self.committed.raise();
    }

    /// Streams `tenant_id`'s outcomes passing `filter`, from `cursor` on.
    /// The cursor is resolved before this returns, so [`Cursor::Now`]
    /// means every outcome recorded after the call, and [`Watch::after`]
    /// says where that was. The stream ends on shutdown, or with an error
    /// if storage fails or retention overtakes a watcher replaying from
    /// storage ([`WatchError::OutOfRange`]).
    pub async fn watch(
        &self,
        tenant_id: String,
        filter: OutcomeFilter,
        cursor: Cursor,
    ) -> Result<Watch, WatchError> {
        // Subscribe before reading storage: whatever the tailer fans out
        // from here on is in the ring, and the cursor filters out what the
        // storage read already gave.
        let live = self.live.subscribe();
        let (after, first) = match cursor {
            Cursor::Now => (self.store.latest_sequence().await?, None),
            Cursor::Oldest => {
                let mut after = self.store.pruned_through().await?;
                loop {
                    match replay_page(&self.store, &tenant_id, &filter, after).await {
                        Ok(page) => break (after, Some(page)),
                        // Retention moved on since: the oldest is newer now.
                        Err(WatchError::OutOfRange { pruned_through, .. }) => {
                            after = pruned_through;
                        }
                        Err(error) => return Err(error),
                    }
                }
            }
            Cursor::After(after) => (
                after,
                Some(replay_page(&self.store, &tenant_id, &filter, after).await?),
            ),
        };
        let (tx, rx) = mpsc::channel(WATCHER_BUFFER);
        let watcher = watcher::Watcher {
            store: self.store.clone(),
            live,
            tenant_id,
            filter,
            tx,
        };
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = watcher.run(after, first) => {}
            }
        });
        Ok(Watch {
            after,
            outcomes: rx,
        })
    }
}

/// The next replay page of `tenant_id`'s outcomes after `after`, or
/// [`WatchError::OutOfRange`] if retention has pruned past `after`: the
/// page is read first and the horizon checked after it, so a prune that
/// committed before the read, and took outcomes the page would have held,
/// is always seen (a prune deletes and raises the horizon in one
/// transaction). Checked the other way round, a prune in between would
/// skip outcomes silently.
async fn replay_page(
    store: &Store,
    tenant_id: &str,
    filter: &OutcomeFilter,
    after: i64,
) -> Result<Vec<OutcomeRecord>, WatchError> {
    let page = store
        .outcomes_after(tenant_id, filter, after, REPLAY_PAGE)
        .await?;
    let pruned_through = store.pruned_through().await?;
    if after < pruned_through {
        return Err(WatchError::OutOfRange {
            after,
            pruned_through,
        });
    }
    Ok(page)
}
