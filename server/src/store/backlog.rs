//! The counts behind the backlog gauges.

use sea_orm::ConnectionTrait;

use super::{Store, StoreError};

/// What is waiting, across every tenant and replica.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Pending and due now, not leased (or with an expired lease).
    pub due: i64,
    /// Pending, not leased, waiting for a retry.
    pub scheduled_retries: i64,
    /// Dead-lettered and kept.
    pub dead_letters: i64,
}

/// One pass over the pending and dead-lettered rows (both partially
/// indexed); finished rows of other states are not read.
const BACKLOG: &str = "\
SELECT \
    CAST(COALESCE(SUM(CASE WHEN state = 'pending' AND next_attempt_at_ms <= {now} \
        THEN 1 ELSE 0 END), 0) AS BIGINT), \
    CAST(COALESCE(SUM(CASE WHEN state = 'pending' AND next_attempt_at_ms > {now} \
        AND lease_token IS NULL AND attempt_count > 0 THEN 1 ELSE 0 END), 0) AS BIGINT), \
    CAST(COALESCE(SUM(CASE WHEN state = 'dead_lettered' THEN 1 ELSE 0 END), 0) AS BIGINT) \
FROM deliveries WHERE state IN ('pending', 'dead_lettered')";

impl Store {
    /// Counts what is waiting, for the gauges.
    pub async fn backlog(&self) -> Result<Backlog, StoreError> {
        let row = self
            .db
            .query_one_raw(self.statement(BACKLOG, vec![]))
            .await?
            .ok_or_else(|| StoreError::Corrupt("the backlog query returned no row".into()))?;
        Ok(Backlog {
            due: row.try_get_by_index(0)?,
            scheduled_retries: row.try_get_by_index(1)?,
            dead_letters: row.try_get_by_index(2)?,
        })
    }
}
