//! The janitor keeps the database from growing without end: outcomes older
//! than their window leave the feed, destinations' stats older than an
//! hour go, and finished deliveries (with their attempts) are deleted after
//! the window of their state, and audit events after theirs. An event goes
//! once none of its deliveries is left and it is older than the succeeded
//! window (so one that reached no endpoint is kept that long). Pending
//! work is never touched. Everything goes in small batches, each its own short
//! statement, so no lock is held for long; every replica may run one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use crate::{
    domain::{DeliveryState, unix_ms},
    store::{Store, StoreError},
};

/// Rows deleted per statement: short locks, steady progress.
const BATCH: u64 = 500;
/// Longest pause between rounds.
const MAX_PERIOD: Duration = Duration::from_secs(60);
/// Shortest pause between rounds.
const MIN_PERIOD: Duration = Duration::from_millis(100);

/// How long each kind of record is kept.
#[derive(Debug, Clone, Copy)]
pub struct RetentionWindows {
    /// Outcomes, for `WatchOutcomes` replays.
    pub outcomes: Duration,
    /// Succeeded deliveries, from when they succeeded.
    pub succeeded: Duration,
    /// Dead-lettered deliveries, from when they were dead-lettered.
    pub dead_lettered: Duration,
    /// Cancelled deliveries, from when they were cancelled.
    pub cancelled: Duration,
    /// Audit events, from when they were recorded.
    pub audit: Duration,
}

impl RetentionWindows {
    /// A tenth of the shortest window, between 100 ms and a minute: no
    /// record outlives its window by much.
    fn period(&self) -> Duration {
        let shortest = [
            self.outcomes,
            self.succeeded,
            self.dead_lettered,
            self.cancelled,
            self.audit,
        ]
        .into_iter()
        .min()
        .unwrap_or(MAX_PERIOD);
        (shortest / 10).clamp(MIN_PERIOD, MAX_PERIOD)
    }
}

/// Deletes what is past its window, now and then, until shutdown.
pub struct Janitor {
    /// The store to clean.
    pub store: Store,
    /// How long things are kept.
    pub windows: RetentionWindows,
}

impl Janitor {
    /// Runs a round now and then one every period until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            self.round().await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.windows.period()) => {}
            }
        }
    }

    /// One round: every kind of record past its window, batch by batch.
    pub async fn round(&self) {
        match self
            .store
            .prune_outcomes(cutoff_ms(self.windows.outcomes), BATCH)
            .await
        {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "pruned outcomes past the retention window"),
            Err(error) => tracing::warn!(%error, "pruning old outcomes failed"),
        }
        match self
            .store
            .prune_audit_events(cutoff_ms(self.windows.audit), BATCH)
            .await
        {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "pruned audit events past the audit retention"),
            Err(error) => tracing::warn!(%error, "pruning old audit events failed"),
        }
        if let Err(error) = self.store.prune_destination_stats().await {
            tracing::warn!(%error, "pruning old destination stats failed");
        }
        for (state, window) in [
            (DeliveryState::Succeeded, self.windows.succeeded),
            (DeliveryState::DeadLettered, self.windows.dead_lettered),
            (DeliveryState::Cancelled, self.windows.cancelled),
        ] {
            match self.delete_finished(state, window).await {
                Ok(0) => {}
                Ok(deleted) => {
                    tracing::info!(deleted, %state, "deleted finished deliveries past their retention window");
                }
                Err(error) => tracing::warn!(%error, %state, "deleting old deliveries failed"),
            }
        }
        match self.prune_events().await {
            Ok(0) => {}
            Ok(deleted) => {
                tracing::info!(deleted, "deleted events none of whose deliveries is left")
            }
            Err(error) => tracing::warn!(%error, "deleting old events failed"),
        }
    }

    async fn prune_events(&self) -> Result<u64, StoreError> {
        let cutoff = cutoff_ms(self.windows.succeeded);
        in_batches(|| self.store.prune_events(cutoff, BATCH)).await
    }

    async fn delete_finished(
        &self,
        state: DeliveryState,
        window: Duration,
    ) -> Result<u64, StoreError> {
        in_batches(|| self.store.delete_finished(state, window, BATCH)).await
    }
}

/// Runs `batch` (which deletes at most [`BATCH`] rows) until it deletes
/// fewer; how many it deleted in all.
async fn in_batches<F, Batch>(mut batch: F) -> Result<u64, StoreError>
where
    F: FnMut() -> Batch,
    Batch: Future<Output = Result<u64, StoreError>>,
{
    let mut deleted = 0;
    loop {
        let removed = batch().await?;
        deleted += removed;
        if removed < BATCH {
            return Ok(deleted);
        }
    }
}

/// Unix ms `window` ago.
fn cutoff_ms(window: Duration) -> i64 {
    unix_ms(SystemTime::now().checked_sub(window).unwrap_or(UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_follow_the_shortest_window() {
        let day = Duration::from_secs(24 * 3600);
        let windows = RetentionWindows {
            outcomes: 7 * day,
            succeeded: 7 * day,
            dead_lettered: 30 * day,
            cancelled: 30 * day,
            audit: 90 * day,
        };
        assert_eq!(windows.period(), MAX_PERIOD);
        let short = RetentionWindows {
            succeeded: Duration::from_secs(5),
            ..windows
        };
        assert_eq!(short.period(), Duration::from_millis(500));
        let tiny = RetentionWindows {
            succeeded: Duration::ZERO,
            ..windows
        };
        assert_eq!(tiny.period(), MIN_PERIOD);
    }
}
