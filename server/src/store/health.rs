//! Destination health in storage: the per-minute attempt counts behind the
//! recent success ratio and latency, the last success and failure, how
//! long a destination has failed without a success, and the disabling of
//! one that failed for too long. Written by each replica every few
//! seconds from what it saw, not on every attempt.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait, Value};

use super::{
    Dialect, Store, StoreError,
    destinations::pairs,
    records::{DestinationRef, OutcomeRecord},
    sql::{placeholders, tuple},
};
use crate::{destinations::health::Snapshot, domain::OutcomeKind};

/// Length of one stats bucket.
pub const BUCKET: Duration = Duration::from_secs(60);

/// How long stats buckets are kept: the recent window is five minutes.
pub const STATS_KEPT: Duration = Duration::from_secs(3600);

/// Deletes stats buckets older than `$1` ms.
const PRUNE_STATS: &str = "DELETE FROM destination_stats WHERE bucket_ms < {now} - $1";

/// Adds a replica's counts to the current minute's bucket.
const ADD_STATS: &str = "\
INSERT INTO destination_stats (tenant_id, destination, bucket_ms, attempts, successes, duration_us) \
VALUES {rows} \
ON CONFLICT (tenant_id, destination, bucket_ms) DO UPDATE SET \
    attempts = destination_stats.attempts + excluded.attempts, \
    successes = destination_stats.successes + excluded.successes, \
    duration_us = destination_stats.duration_us + excluded.duration_us";

/// Locks the destinations to update, in key order (PostgreSQL).
const LOCK: &str = "\
SELECT 1 FROM destinations WHERE (tenant_id, destination) IN (VALUES {pairs}) \
ORDER BY tenant_id, destination FOR UPDATE";

/// Records last success and failure (the later of stored and seen), the
/// failing-since time (cleared by a success, else the earliest) and the
/// replica's streak. A replica's failing-since may predate the last change
/// of state (an operator enabled the destination since): it counts from
/// that change, so an enabled destination is not disabled again at once.
const UPDATE_HEALTH: &str = "\
WITH seen (s_tenant, s_destination, s_success, s_failure, s_succeeded, s_failing, s_streak) \
    AS (VALUES {rows}) \
UPDATE destinations SET \
    last_success_at_ms = CASE WHEN seen.s_success > COALESCE(last_success_at_ms, 0) \
        THEN seen.s_success ELSE last_success_at_ms END, \
    last_failure_at_ms = CASE WHEN seen.s_failure > COALESCE(last_failure_at_ms, 0) \
        THEN seen.s_failure ELSE last_failure_at_ms END, \
    failing_since_ms = CASE WHEN seen.s_succeeded THEN seen.s_failing \
        WHEN failing_since_ms IS NOT NULL THEN failing_since_ms \
        WHEN seen.s_failing < state_changed_at_ms THEN state_changed_at_ms \
        ELSE seen.s_failing END, \
    consecutive_failures = seen.s_streak \
FROM seen \
WHERE destinations.tenant_id = seen.s_tenant AND destinations.destination = seen.s_destination";

/// Disables active destinations failing without a success since before
/// `$1` ms ago; `$2` says why.
const DISABLE: &str = "\
UPDATE destinations SET state = 'disabled', state_reason = $2, state_changed_at_ms = {now}, \
    next_due_at_ms = NULL, idle = FALSE, updated_at_ms = {now} \
WHERE state = 'active' AND failing_since_ms IS NOT NULL AND failing_since_ms <= {now} - $1 \
RETURNING tenant_id, destination, host, failing_since_ms, {now}";

impl Store {
    /// Writes what `snapshots` saw, then disables the destinations that
    /// failed without a success for longer than `disable_after` (never
    /// when `None`); returns the disabling events, recorded in the feed.
    pub async fn flush_health(
        &self,
        snapshots: &[(DestinationRef, Snapshot)],
        disable_after: Option<Duration>,
    ) -> Result<Vec<OutcomeRecord>, StoreError> {
        let _turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        if !snapshots.is_empty() {
            self.add_stats(&txn, snapshots).await?;
            self.update_health(&txn, snapshots).await?;
        }
        let mut events = Vec::new();
        if let Some(after) = disable_after {
            events = self.disable_failing(&txn, after).await?;
        }
        let events = self.record_outcomes(&txn, events).await?;
        txn.commit().await?;
        Ok(events)
    }

    /// Deletes stats buckets older than [`STATS_KEPT`]; returns how many.
    pub async fn prune_destination_stats(&self) -> Result<u64, StoreError> {
        let _turn = self.write_turn().await;
        let values: Vec<Value> = vec![super::millis(STATS_KEPT).into()];
        let deleted = self
            .db
            .execute_raw(self.statement(PRUNE_STATS, values))
            .await?;
        Ok(deleted.rows_affected())
    }

    async fn add_stats(
        &self,
        txn: &DatabaseTransaction,
        snapshots: &[(DestinationRef, Snapshot)],
    ) -> Result<(), StoreError> {
        let counted: Vec<&(DestinationRef, Snapshot)> = snapshots
            .iter()
            .filter(|(_, snapshot)| snapshot.attempts > 0)
            .collect();
        if counted.is_empty() {
            return Ok(());
        }
        let bucket = super::millis(BUCKET);
        let mut values: Vec<Value> = Vec::with_capacity(counted.len() * 6);
        for (destination, snapshot) in &counted {
            values.extend([
                destination.tenant_id.clone().into(),
                destination.destination.clone().into(),
                bucket.into(),
                i64::try_from(snapshot.attempts).unwrap_or(i64::MAX).into(),
                i64::try_from(snapshot.successes).unwrap_or(i64::MAX).into(),
                i64::try_from(snapshot.duration_us)
                    .unwrap_or(i64::MAX)
                    .into(),
            ]);
        }
        // The bucket is the minute of the database's now.
        let rows = placeholders(counted.len(), 6, 1, |names| {
            format!(
                "({}, {}, ({{now}} / {b}) * {b}, {}, {}, {})",
                names[0],
                names[1],
                names[3],
                names[4],
                names[5],
                b = names[2]
            )
        });
        let sql = ADD_STATS.replace("{rows}", &rows);
        txn.execute_raw(self.statement(&sql, values)).await?;
        Ok(())
    }

    async fn update_health(
        &self,
        txn: &DatabaseTransaction,
        snapshots: &[(DestinationRef, Snapshot)],
    ) -> Result<(), StoreError> {
        let mut sorted: Vec<&(DestinationRef, Snapshot)> = snapshots.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        if self.dialect == Dialect::Postgres {
            let refs: Vec<&DestinationRef> = sorted.iter().map(|(d, _)| d).collect();
            let (rows, values) = pairs(&refs, 1);
            txn.execute_raw(self.statement(&LOCK.replace("{pairs}", &rows), values))
                .await?;
        }
        let mut values: Vec<Value> = Vec::with_capacity(sorted.len() * 7);
        for (destination, snapshot) in &sorted {
            values.extend([
                destination.tenant_id.clone().into(),
                destination.destination.clone().into(),
                snapshot.last_success_ms.into(),
                snapshot.last_failure_ms.into(),
                snapshot.succeeded.into(),
                snapshot.failing_since_ms.into(),
                i32::try_from(snapshot.streak).unwrap_or(i32::MAX).into(),
            ]);
        }
        let sql = UPDATE_HEALTH.replace("{rows}", &placeholders(sorted.len(), 7, 1, tuple));
        txn.execute_raw(self.statement(&sql, values)).await?;
        Ok(())
    }

    async fn disable_failing(
        &self,
        txn: &DatabaseTransaction,
        after: Duration,
    ) -> Result<Vec<OutcomeRecord>, StoreError> {
        let window = humantime::format_duration(after).to_string();
        let reason = format!("it failed without a single success for longer than {window}");
        let values: Vec<Value> = vec![super::millis(after).into(), reason.clone().into()];
        let rows = txn.query_all_raw(self.statement(DISABLE, values)).await?;
        rows.iter()
            .map(|row| {
                let since: i64 = row.try_get_by_index(3)?;
                let now_ms: i64 = row.try_get_by_index(4)?;
                let failing = humantime::format_duration(Duration::from_secs(
                    u64::try_from((now_ms - since) / 1_000).unwrap_or(0),
                ));
                Ok(OutcomeRecord {
                    sequence: 0,
                    tenant_id: row.try_get_by_index(0)?,
                    delivery_id: None,
                    host: row.try_get_by_index(2)?,
                    destination: Some(row.try_get_by_index(1)?),
                    kind: OutcomeKind::DestinationDisabled,
                    attempt_number: 0,
                    status_code: None,
                    error_kind: None,
                    error_message: Some(format!(
                        "disabled: {reason} (failing for {failing}); its pending deliveries are dead-lettered"
                    )),
                    next_attempt_at_ms: None,
                    created_at_ms: now_ms,
                    endpoint_id: None,
                    event_type: None,
                })
            })
            .collect()
    }
}
