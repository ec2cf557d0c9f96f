//! Retention: outcomes older than the window are deleted, a batch at a
//! time, and the feed remembers how far, so that a watcher asking to resume
//! from before that gets OUT_OF_RANGE instead of a silent gap.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// Rows deleted per transaction: short locks, steady progress.
const BATCH: u64 = 1000;
/// Longest pause between prunes.
const MAX_PERIOD: Duration = Duration::from_secs(60);

/// Prunes outcomes older than `window`; every replica may run one.
pub struct Retention {
    /// The store to prune.
    pub store: Store,
    /// How long outcomes are kept.
    pub window: Duration,
}

impl Retention {
    /// Prunes now and then every `window / 10` (at most a minute) until
    /// `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let period = (self.window / 10).clamp(Duration::from_millis(100), MAX_PERIOD);
        loop {
            let cutoff = SystemTime::now()
                .checked_sub(self.window)
                .and_then(|cutoff| cutoff.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |since| {
                    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
                });
            match self.store.prune_outcomes(cutoff, BATCH).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "pruned outcomes past the retention window"),
                Err(error) => tracing::warn!(%error, "pruning old outcomes failed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
        }
    }
}
