//! The counts behind the backlog gauges.

use sea_orm::ConnectionTrait;

use super::{Store, StoreError};

/// What is waiting and under way, across every replica.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Pending and due now, not leased (or with an expired lease).
    pub due: i64,
    /// Pending, not leased, waiting for a retry.
    pub scheduled_retries: i64,
    /// Pending and leased: an attempt under way.
    pub in_flight: i64,
    /// Dead-lettered and kept.
    pub dead_letters: i64,
}

/// One pass over the pending and dead-lettered rows (both partially
/// indexed); finished rows of other states are not read. `{tenant}` is
/// empty, or narrows the rows to one tenant's.
const BACKLOG: &str = "\
SELECT \
    CAST(COALESCE(SUM(CASE WHEN state = 'pending' AND next_attempt_at_ms <= {now} \
        THEN 1 ELSE 0 END), 0) AS BIGINT), \
    CAST(COALESCE(SUM(CASE WHEN state = 'pending' AND next_attempt_at_ms > {now} \
        AND lease_token IS NULL AND attempt_count > 0 THEN 1 ELSE 0 END), 0) AS BIGINT), \
    CAST(COALESCE(SUM(CASE WHEN state = 'pending' AND next_attempt_at_ms > {now} \
        AND lease_token IS NOT NULL THEN 1 ELSE 0 END), 0) AS BIGINT), \
    CAST(COALESCE(SUM(CASE WHEN state = 'dead_lettered' THEN 1 ELSE 0 END), 0) AS BIGINT) \
FROM deliveries WHERE state IN ('pending', 'dead_lettered'){tenant}";

/// Destinations not taking deliveries, by state, and deliveries held by
/// rate limits, across every replica.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DestinationGauges {
    /// Circuit open, cool-off not over.
    pub open: i64,
    /// Circuit open, cool-off over: a probe may go.
    pub half_open: i64,
    /// Paused by an operator.
    pub paused: i64,
    /// Disabled.
    pub disabled: i64,
    /// Pending rows due now at destinations waiting for their rate limit.
    pub rate_limited_due: i64,
}

/// Counts destinations by state (a small table, read whole).
const DESTINATION_STATES: &str = "\
SELECT \
    CAST(COALESCE(SUM(CASE WHEN state = 'active' AND circuit_open_until_ms > {now} \
        THEN 1 ELSE 0 END), 0) AS BIGINT), \
    CAST(COALESCE(SUM(CASE WHEN state = 'active' AND circuit_open_until_ms <= {now} \
        THEN 1 ELSE 0 END), 0) AS BIGINT), \
    CAST(COALESCE(SUM(CASE WHEN state = 'paused' THEN 1 ELSE 0 END), 0) AS BIGINT), \
    CAST(COALESCE(SUM(CASE WHEN state = 'disabled' THEN 1 ELSE 0 END), 0) AS BIGINT) \
FROM destinations";

/// Due rows at destinations parked for their rate limit: active, closed,
/// not held, with a limiter state and a next look in the future.
const RATE_LIMITED: &str = "\
SELECT CAST(COUNT(*) AS BIGINT) FROM destinations d \
JOIN deliveries x ON x.tenant_id = d.tenant_id AND x.destination = d.destination \
WHERE d.state = 'active' AND d.circuit_open_until_ms IS NULL \
    AND (d.hold_until_ms IS NULL OR d.hold_until_ms <= {now}) \
    AND d.rate_tat_us IS NOT NULL AND d.next_due_at_ms > {now} AND NOT d.idle \
    AND x.state = 'pending' AND x.next_attempt_at_ms <= {now}";

impl Store {
    /// Counts destinations by state and what rate limits hold back.
    pub async fn destination_gauges(&self) -> Result<DestinationGauges, StoreError> {
        let row = self
            .db
            .query_one_raw(self.statement(DESTINATION_STATES, vec![]))
            .await?
            .ok_or_else(|| StoreError::Corrupt("the destinations count returned no row".into()))?;
        let limited = self
            .db
            .query_one_raw(self.statement(RATE_LIMITED, vec![]))
            .await?
            .ok_or_else(|| StoreError::Corrupt("the rate-limited count returned no row".into()))?;
        Ok(DestinationGauges {
            open: row.try_get_by_index(0)?,
            half_open: row.try_get_by_index(1)?,
            paused: row.try_get_by_index(2)?,
            disabled: row.try_get_by_index(3)?,
            rate_limited_due: limited.try_get_by_index(0)?,
        })
    }

    /// Counts what is waiting across every tenant, for the gauges.
    pub async fn backlog(&self) -> Result<Backlog, StoreError> {
        self.count_backlog("", vec![]).await
    }

    /// Counts what is waiting for `tenant_id`.
    pub async fn tenant_backlog(&self, tenant_id: &str) -> Result<Backlog, StoreError> {
        self.count_backlog(" AND tenant_id = $1", vec![tenant_id.into()])
            .await
    }

    /// Runs [`BACKLOG`] narrowed by `tenant` (SQL) with `values`.
    async fn count_backlog(
        &self,
        tenant: &str,
        values: Vec<sea_orm::Value>,
    ) -> Result<Backlog, StoreError> {
        let txn = self.read_only().await?;
        let row = txn
            .query_one_raw(self.statement(&BACKLOG.replace("{tenant}", tenant), values))
            .await
            .map_err(super::read::timed_out)?;
        txn.commit().await?;
        let row =
            row.ok_or_else(|| StoreError::Corrupt("the backlog query returned no row".into()))?;
        Ok(Backlog {
            due: row.try_get_by_index(0)?,
            scheduled_retries: row.try_get_by_index(1)?,
            in_flight: row.try_get_by_index(2)?,
            dead_letters: row.try_get_by_index(3)?,
        })
    }
}
