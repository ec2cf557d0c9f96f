//! Claim: lease a batch of due deliveries in one statement.
//!
//! A due row is `pending` with `next_attempt_at_ms` in the past. Claiming
//! counts the attempt, stamps a fresh lease token and pushes
//! `next_attempt_at_ms` to the lease's expiry. So a replica that dies
//! mid-attempt needs no rescuer: when its lease runs out the row is simply
//! due again, and the token it held no longer matches (fencing).

use std::time::Duration;

use sea_orm::{ConnectionTrait, QueryResult, Value};
use uuid::Uuid;

use crate::domain::TraceContext;

use super::{
    Store, StoreError, http_request, millis,
    records::{ClaimedDelivery, Lease},
    unsigned,
};

const CLAIM: &str = "\
WITH due AS MATERIALIZED ( \
    SELECT id FROM deliveries \
    WHERE state = 'pending' AND next_attempt_at_ms <= {now} {excluded} \
    ORDER BY next_attempt_at_ms \
    LIMIT $3 {skip_locked} \
) \
UPDATE deliveries SET \
    attempt_count = attempt_count + 1, \
    lease_token = $1, \
    next_attempt_at_ms = {now} + $2, \
    updated_at_ms = {now} \
WHERE id IN (SELECT id FROM due) \
RETURNING id, tenant_id, url, method, headers, body, content_type, attempt_count, max_attempts, \
    destination, deadline_at_ms, traceparent, tracestate, created_at_ms";

/// Gives a lease back: the row is due again at once. `$3` says whether the
/// attempt never started, so its count is returned too.
const RELEASE: &str = "\
UPDATE deliveries SET \
    lease_token = NULL, \
    next_attempt_at_ms = {now}, \
    attempt_count = CASE WHEN $3 THEN attempt_count - 1 ELSE attempt_count END, \
    updated_at_ms = {now} \
WHERE id = $1 AND lease_token = $2 AND state = 'pending'";

/// The earliest due time, as "the first row in due order" rather than
/// `MIN(...)`: with statistics that lag a growing backlog, PostgreSQL
/// planned the aggregate as a scan of the whole due index (10-15 ms at
/// 20,000 pending, run every time the claimer goes idle), while this shape
/// stops at the first live entry whatever the statistics say.
const NEXT_DUE: &str = "\
SELECT next_attempt_at_ms - {now} FROM deliveries WHERE state = 'pending' {excluded} \
ORDER BY next_attempt_at_ms LIMIT 1";

impl Store {
    /// Leases up to `limit` due deliveries for `lease`, oldest due first,
    /// skipping those bound for the `excluded` destinations (saturated on
    /// this replica). Concurrent claimers (other replicas) never get the
    /// same row.
    pub async fn claim(
        &self,
        limit: usize,
        lease: Duration,
        excluded: &[String],
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let token = Uuid::new_v4();
        let _turn = self.write_turn().await;
        let mut values: Vec<Value> = vec![
            token.into(),
            millis(lease).into(),
            i64::try_from(limit).unwrap_or(i64::MAX).into(),
        ];
        let (excluded_sql, excluded_values) = not_in_destinations(excluded, values.len() + 1);
        values.extend(excluded_values);
        let sql = CLAIM
            .replace("{skip_locked}", self.dialect.skip_locked())
            .replace("{excluded}", &excluded_sql);
        let rows = self.db.query_all_raw(self.statement(&sql, values)).await?;
        rows.iter().map(|row| claimed(row, token)).collect()
    }

    /// Gives `leases` back so their deliveries are due again at once (on
    /// any replica). With `unstarted`, the claims' attempt counts are
    /// returned as well. A lease that was lost meanwhile is left alone.
    pub async fn release(&self, leases: &[Lease], unstarted: bool) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        for lease in leases {
            let values: Vec<Value> = vec![
                lease.delivery_id.into(),
                lease.token.into(),
                unstarted.into(),
            ];
            self.db.execute_raw(self.statement(RELEASE, values)).await?;
        }
        Ok(())
    }

    /// How long until the earliest pending delivery not bound for an
    /// `excluded` destination is due (zero if one is due now); `None` when
    /// there is none.
    pub async fn next_due_in(&self, excluded: &[String]) -> Result<Option<Duration>, StoreError> {
        let (excluded_sql, values) = not_in_destinations(excluded, 1);
        let sql = NEXT_DUE.replace("{excluded}", &excluded_sql);
        let Some(row) = self.db.query_one_raw(self.statement(&sql, values)).await? else {
            return Ok(None);
        };
        let millis: Option<i64> = row.try_get_by_index(0)?;
        Ok(millis.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))))
    }
}

/// `AND destination NOT IN ($first, ...)` and its values; empty when
/// nothing is excluded.
fn not_in_destinations(excluded: &[String], first: usize) -> (String, Vec<Value>) {
    if excluded.is_empty() {
        return (String::new(), Vec::new());
    }
    let placeholders: Vec<String> = (first..first + excluded.len())
        .map(|n| format!("${n}"))
        .collect();
    let values = excluded
        .iter()
        .map(|key| Value::from(key.clone()))
        .collect();
    (
        format!("AND destination NOT IN ({})", placeholders.join(", ")),
        values,
    )
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
        destination: row.try_get_by_index(9)?,
        deadline_at_ms: row.try_get_by_index(10)?,
        lease_token,
        trace: row
            .try_get_by_index::<Option<String>>(11)?
            .map(|traceparent| TraceContext {
                traceparent,
                tracestate: row.try_get_by_index(12).ok().flatten(),
            }),
        created_at_ms: row.try_get_by_index(13)?,
    })
}
