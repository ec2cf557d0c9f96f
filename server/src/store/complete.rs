//! Complete: persist a batch of attempt results in one transaction.
//!
//! Per delivery: the state change, the attempt row and the outcome row are
//! written together, and only if the row still carries the lease token the
//! attempt was made under. A stale completion (lease expired, row re-claimed)
//! changes nothing and is reported as [`CompletionResult::LeaseLost`].

use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait, Value};

use super::{
    Store, StoreError, millis,
    records::{Completion, CompletionResult, OutcomeRecord},
};
use crate::domain::Decision;

/// Moves the row on, if we still hold its lease. Terminal rows lose their
/// due time (so they leave the due index) and get a finish time. `$8` says
/// whether a request was sent; if not, the claim's count is given back.
const UPDATE_DELIVERY: &str = "\
UPDATE deliveries SET \
    state = $3, \
    next_attempt_at_ms = CASE WHEN $4 IS NULL THEN NULL ELSE {now} + $4 END, \
    lease_token = NULL, \
    attempt_count = CASE WHEN $8 THEN attempt_count ELSE attempt_count - 1 END, \
    last_status_code = $5, \
    last_error = $6, \
    updated_at_ms = {now}, \
    finished_at_ms = CASE WHEN $7 THEN {now} ELSE NULL END \
WHERE id = $1 AND lease_token = $2 AND state = 'pending' \
RETURNING next_attempt_at_ms, updated_at_ms";

const INSERT_ATTEMPT: &str = "\
INSERT INTO attempts (delivery_id, number, started_at_ms, duration_us, status_code, error_kind, \
    error_message, response_excerpt) \
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// Appends to the outcome feed, with the delivery's host for filters.
const INSERT_OUTCOME: &str = "\
INSERT INTO outcomes (tenant_id, delivery_id, host, kind, attempt_number, status_code, error_kind, \
    error_message, next_attempt_at_ms, created_at_ms) \
VALUES ($1, $2, (SELECT host FROM deliveries WHERE id = $2), $3, $4, $5, $6, $7, $8, $9) \
RETURNING sequence, host";

impl Store {
    /// Persists `batch` in one transaction; the results are in batch order.
    /// If the transaction fails nothing is written and every row keeps its
    /// lease, to be attempted again when the lease expires (so a 2xx whose
    /// recording failed is re-sent, never dead-lettered).
    pub async fn complete(
        &self,
        batch: &[Completion],
    ) -> Result<Vec<CompletionResult>, StoreError> {
        let txn = self.db.begin().await?;
        self.lock_feed(&txn).await?;
        let mut results = Vec::with_capacity(batch.len());
        for completion in batch {
            results.push(self.complete_one(&txn, completion).await?);
        }
        txn.commit().await?;
        Ok(results)
    }

    async fn complete_one(
        &self,
        txn: &DatabaseTransaction,
        completion: &Completion,
    ) -> Result<CompletionResult, StoreError> {
        let attempt = completion.attempt.as_ref();
        let status_code = attempt.and_then(|a| a.status_code);
        let error_kind = attempt.and_then(|a| a.error_kind);
        let error_message = completion.error_message().map(str::to_owned);
        let delay_ms = match completion.decision {
            Decision::Retry { delay } => Some(millis(delay)),
            Decision::Succeeded | Decision::DeadLetter => None,
        };
        let update: Vec<Value> = vec![
            completion.delivery_id.into(),
            completion.lease_token.into(),
            completion.decision.state().as_str().into(),
            delay_ms.into(),
            status_code.map(i32::from).into(),
            error_message.clone().into(),
            delay_ms.is_none().into(),
            attempt.is_some().into(),
        ];
        let Some(row) = txn
            .query_one_raw(self.statement(UPDATE_DELIVERY, update))
            .await?
        else {
            return Ok(CompletionResult::LeaseLost);
        };
        let next_attempt_at_ms: Option<i64> = row.try_get_by_index(0)?;
        let now_ms: i64 = row.try_get_by_index(1)?;
        if let Some(attempt) = attempt {
            let excerpt =
                (!attempt.response_excerpt.is_empty()).then(|| attempt.response_excerpt.to_vec());
            let insert_attempt: Vec<Value> = vec![
                completion.delivery_id.into(),
                i32::try_from(attempt.number).unwrap_or(i32::MAX).into(),
                attempt.started_at_ms.into(),
                attempt.duration_us.into(),
                status_code.map(i32::from).into(),
                error_kind.map(|kind| kind.as_str()).into(),
                attempt.error_message.clone().into(),
                excerpt.into(),
            ];
            txn.execute_raw(self.statement(INSERT_ATTEMPT, insert_attempt))
                .await?;
        }
        let outcome = OutcomeRecord {
            sequence: 0,
            tenant_id: completion.tenant_id.clone(),
            delivery_id: completion.delivery_id,
            host: String::new(),
            kind: completion.decision.outcome_kind(),
            attempt_number: completion.attempt_number,
            status_code,
            error_kind,
            error_message,
            next_attempt_at_ms,
            created_at_ms: now_ms,
        };
        Ok(CompletionResult::Recorded(
            self.record_outcome(txn, outcome).await?,
        ))
    }

    /// Appends `outcome` to the feed inside `txn`; returns it with its sequence.
    pub(super) async fn record_outcome(
        &self,
        txn: &DatabaseTransaction,
        mut outcome: OutcomeRecord,
    ) -> Result<OutcomeRecord, StoreError> {
        let values: Vec<Value> = vec![
            outcome.tenant_id.clone().into(),
            outcome.delivery_id.into(),
            outcome.kind.as_str().into(),
            i32::try_from(outcome.attempt_number)
                .unwrap_or(i32::MAX)
                .into(),
            outcome.status_code.map(i32::from).into(),
            outcome.error_kind.map(|kind| kind.as_str()).into(),
            outcome.error_message.clone().into(),
            outcome.next_attempt_at_ms.into(),
            outcome.created_at_ms.into(),
        ];
        let row = txn
            .query_one_raw(self.statement(INSERT_OUTCOME, values))
            .await?
            .ok_or_else(|| StoreError::Corrupt("outcome insert returned no sequence".into()))?;
        outcome.sequence = row.try_get_by_index(0)?;
        outcome.host = row.try_get_by_index(1)?;
        Ok(outcome)
    }

    /// Serializes the transactions that write outcomes, from before their
    /// first insert until they commit, so outcome sequences become visible
    /// in sequence order and a reader of `sequence > n` never skips one
    /// that commits later (invariant I6). PostgreSQL allocates sequence
    /// values at insert but shows rows at commit, so without this two
    /// replicas' transactions could commit 11 before 10. SQLite has one
    /// writer at a time already. The lock is per transaction, taken after
    /// the attempts are done, and completions are batched, so it costs one
    /// short serialized section per batch.
    pub(super) async fn lock_feed(&self, txn: &DatabaseTransaction) -> Result<(), StoreError> {
        if self.dialect == super::Dialect::Postgres {
            txn.execute_unprepared("SELECT pg_advisory_xact_lock(7255001)")
                .await?;
        }
        Ok(())
    }
}
