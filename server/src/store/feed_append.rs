//! Appending to the outcome feed, for every writer of outcomes (attempt
//! results, cancellations, destination events, stranded rows): the feed's
//! lock, which keeps visible sequences a prefix (invariant I6), and the
//! outcome insert.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DatabaseTransaction, Value};
use uuid::Uuid;

use super::{
    Store, StoreError,
    records::OutcomeRecord,
    sql::{placeholders, tuple},
};

/// Appends to the outcome feed, with each delivery's host and destination
/// for filters, and its endpoint and event type from its row. A
/// destination's event has the nil delivery id.
const INSERT_OUTCOMES: &str = "\
WITH v (tenant_id, delivery_id, host, destination, kind, attempt_number, status_code, \
    error_kind, error_message, next_attempt_at_ms, created_at_ms) AS (VALUES {rows}) \
INSERT INTO outcomes (tenant_id, delivery_id, host, destination, kind, attempt_number, status_code, \
    error_kind, error_message, next_attempt_at_ms, created_at_ms, endpoint_id, event_type) \
SELECT v.tenant_id, v.delivery_id, v.host, v.destination, v.kind, v.attempt_number, \
    v.status_code, v.error_kind, v.error_message, v.next_attempt_at_ms, v.created_at_ms, \
    d.endpoint_id, d.event_type \
FROM v LEFT JOIN deliveries d ON d.id = v.delivery_id \
RETURNING sequence, delivery_id, kind, destination, endpoint_id, event_type";

/// What the insert gives each outcome: its sequence, and its delivery's
/// endpoint and event type.
type Assigned = (i64, Option<Uuid>, Option<String>);

impl Store {
    /// Appends `outcome` to the feed inside `txn`; returns it with its sequence.
    pub(super) async fn record_outcome(
        &self,
        txn: &DatabaseTransaction,
        outcome: OutcomeRecord,
    ) -> Result<OutcomeRecord, StoreError> {
        self.record_outcomes(txn, vec![outcome])
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("outcome insert returned no sequence".into()))
    }

    /// Appends `outcomes` (of distinct deliveries) to the feed inside `txn`,
    /// in one statement, after taking the feed's lock; returns them, in
    /// order, with their sequences.
    pub(super) async fn record_outcomes(
        &self,
        txn: &DatabaseTransaction,
        mut outcomes: Vec<OutcomeRecord>,
    ) -> Result<Vec<OutcomeRecord>, StoreError> {
        if outcomes.is_empty() {
            return Ok(outcomes);
        }
        self.lock_feed(txn).await?;
        let mut values: Vec<Value> = Vec::with_capacity(outcomes.len() * 11);
        for outcome in &outcomes {
            values.extend([
                outcome.tenant_id.clone().into(),
                outcome.delivery_id.unwrap_or(Uuid::nil()).into(),
                outcome.host.clone().into(),
                outcome.destination.clone().into(),
                outcome.kind.as_str().into(),
                i32::try_from(outcome.attempt_number)
                    .unwrap_or(i32::MAX)
                    .into(),
                outcome.status_code.map(i32::from).into(),
                outcome.error_kind.map(|kind| kind.as_str()).into(),
                outcome.error_message.clone().into(),
                outcome.next_attempt_at_ms.into(),
                outcome.created_at_ms.into(),
            ]);
        }
        let sql = INSERT_OUTCOMES.replace("{rows}", &placeholders(outcomes.len(), 11, 1, tuple));
        let returned = txn.query_all_raw(self.statement(&sql, values)).await?;
        // A delivery has one outcome per statement, a destination one event.
        let mut assigned: HashMap<(Uuid, String, Option<String>), Assigned> =
            HashMap::with_capacity(returned.len());
        for row in &returned {
            let key = (
                row.try_get_by_index(1)?,
                row.try_get_by_index(2)?,
                row.try_get_by_index(3)?,
            );
            let assignment = (
                row.try_get_by_index(0)?,
                row.try_get_by_index(4)?,
                row.try_get_by_index(5)?,
            );
            assigned.insert(key, assignment);
        }
        for outcome in &mut outcomes {
            let key = (
                outcome.delivery_id.unwrap_or(Uuid::nil()),
                outcome.kind.as_str().to_owned(),
                outcome.destination.clone(),
            );
            let (sequence, endpoint_id, event_type) = assigned
                .remove(&key)
                .ok_or_else(|| StoreError::Corrupt(format!("no sequence came back for {key:?}")))?;
            outcome.sequence = sequence;
            outcome.endpoint_id = endpoint_id;
            outcome.event_type = event_type;
        }
        Ok(outcomes)
    }

    /// Serializes the transactions that write outcomes, from before their
    /// first insert until they commit, so outcome sequences become visible
    /// in sequence order and a reader of `sequence > n` never skips one
    /// that commits later (invariant I6). PostgreSQL allocates sequence
    /// values at insert but shows rows at commit, so without this two
    /// replicas' transactions could commit 11 before 10. SQLite has one
    /// writer at a time already. The lock is per transaction, taken just
    /// before the outcomes are inserted (after the rows they describe are
    /// locked), and completions are batched, so it costs one short
    /// serialized section per batch: the outcome insert and the commit.
    async fn lock_feed(&self, txn: &DatabaseTransaction) -> Result<(), StoreError> {
        if self.dialect == super::Dialect::Postgres {
            txn.execute_unprepared("SELECT pg_advisory_xact_lock(7255001)")
                .await?;
        }
        Ok(())
    }
}
