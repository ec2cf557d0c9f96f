//! The tailer: one per replica, it reads the visible prefix of the outcome
//! sequence as it grows and fans it out to this replica's watchers.

use std::{sync::Arc, time::Duration};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::{
    signal::Signal,
    store::{Store, records::OutcomeRecord},
};

/// Outcomes read per query.
const PAGE: u64 = 1000;

/// Reads new outcomes from storage into the ring.
pub(super) struct Tailer {
    pub(super) store: Store,
    pub(super) live: broadcast::Sender<Arc<OutcomeRecord>>,
    pub(super) committed: Signal,
    pub(super) poll: Duration,
}

impl Tailer {
    /// Fans out every outcome after `head` as it becomes visible, until
    /// `shutdown`.
    pub(super) async fn run(self, mut head: i64, shutdown: CancellationToken) {
        loop {
            match self.store.feed_after(head, PAGE).await {
                Ok(page) => {
                    let full = page.len() as u64 == PAGE;
                    for outcome in page {
                        head = outcome.sequence;
                        // No watcher listening is fine: storage has it.
                        let _ = self.live.send(Arc::new(outcome));
                    }
                    if full {
                        continue;
                    }
                }
                Err(error) => tracing::warn!(%error, "outcome tailer cannot read new outcomes"),
            }
            if self.pause(&shutdown).await {
                return;
            }
        }
    }

    /// Waits for a commit signal or the poll. Returns true on shutdown.
    async fn pause(&self, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            () = shutdown.cancelled() => true,
            () = self.committed.raised() => false,
            () = tokio::time::sleep(self.poll) => false,
        }
    }
}
