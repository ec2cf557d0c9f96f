//! Claim: lease a batch of due deliveries in one statement.
//!
//! A due row is `pending` with `next_attempt_at_ms` in the past. Claiming
//! counts the attempt, stamps a fresh lease token and pushes
//! `next_attempt_at_ms` to the lease's expiry. So a replica that dies
//! mid-attempt needs no rescuer: when its lease runs out the row is simply
//! due again, and the token it held no longer matches (fencing).

use std::time::Duration;

use sea_orm::{ConnectionTrait, QueryResult, Statement, Value};
use uuid::Uuid;

use super::{Store, StoreError, http_request, millis, records::ClaimedDelivery, unsigned};

const CLAIM: &str = "\
WITH due AS MATERIALIZED ( \
    SELECT id FROM deliveries \
    WHERE state = 'pending' AND next_attempt_at_ms <= {now} \
    ORDER BY next_attempt_at_ms \
    LIMIT $3 {skip_locked} \
) \
UPDATE deliveries SET \
    attempt_count = attempt_count + 1, \
    lease_token = $1, \
    next_attempt_at_ms = {now} + $2, \
    updated_at_ms = {now} \
WHERE id IN (SELECT id FROM due) \
RETURNING id, tenant_id, url, method, headers, body, content_type, attempt_count, max_attempts";

const NEXT_DUE: &str = "\
SELECT MIN(next_attempt_at_ms) - {now} FROM deliveries WHERE state = 'pending'";

impl Store {
    /// Leases up to `limit` due deliveries for `lease`, oldest due first.
    /// Concurrent claimers (other replicas) never get the same row.
    pub async fn claim(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let token = Uuid::new_v4();
        let sql = self
            .dialect
            .sql(&CLAIM.replace("{skip_locked}", self.dialect.skip_locked()));
        let values: Vec<Value> = vec![
            token.into(),
            millis(lease).into(),
            i64::try_from(limit).unwrap_or(i64::MAX).into(),
        ];
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(self.backend(), sql, values))
            .await?;
        rows.iter().map(|row| claimed(row, token)).collect()
    }

    /// How long until the earliest pending delivery is due (zero if one is
    /// due now); `None` when nothing is pending.
    pub async fn next_due_in(&self) -> Result<Option<Duration>, StoreError> {
        let sql = Statement::from_string(self.backend(), self.dialect.sql(NEXT_DUE));
        let Some(row) = self.db.query_one_raw(sql).await? else {
            return Ok(None);
        };
        let millis: Option<i64> = row.try_get_by_index(0)?;
        Ok(millis.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))))
    }
}

fn claimed(row: &QueryResult, lease_token: Uuid) -> Result<ClaimedDelivery, StoreError> {
    Ok(ClaimedDelivery {
        id: row.try_get_by_index(0)?,
        tenant_id: row.try_get_by_index(1)?,
        request: http_request(
            row.try_get_by_index(3)?,
            row.try_get_by_index(2)?,
            &row.try_get_by_index::<String>(4)?,
            row.try_get_by_index(5)?,
            row.try_get_by_index(6)?,
        )?,
        attempt_number: unsigned(row.try_get_by_index(7)?, "attempt_count")?,
        max_attempts: unsigned(row.try_get_by_index(8)?, "max_attempts")?,
        lease_token,
    })
}
