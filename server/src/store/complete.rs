//! Complete: persist a batch of attempt results in one transaction.
//!
//! Per delivery: the state change, the attempt row and the outcome row are
//! written together, and only if the row still carries the lease token the
//! attempt was made under. A stale completion (lease expired, row re-claimed)
//! changes nothing and is reported as [`CompletionResult::LeaseLost`].

use sea_orm::{ConnectionTrait, DatabaseTransaction, Statement, TransactionTrait, Value};

use super::{
    Store, StoreError, millis,
    records::{Completion, CompletionResult, OutcomeRecord},
};
use crate::domain::Decision;

/// Moves the row on, if we still hold its lease. Terminal rows lose their
/// due time (so they leave the due index) and get a finish time.
const UPDATE_DELIVERY: &str = "\
UPDATE deliveries SET \
    state = $3, \
    next_attempt_at_ms = CASE WHEN $4 IS NULL THEN NULL ELSE {now} + $4 END, \
    lease_token = NULL, \
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

const INSERT_OUTCOME: &str = "\
INSERT INTO outcomes (tenant_id, delivery_id, kind, attempt_number, status_code, error_kind, \
    error_message, next_attempt_at_ms, created_at_ms) \
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
RETURNING sequence";

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
        let attempt = &completion.attempt;
        let status_code = attempt.status_code.map(i32::from);
        let error_kind = attempt.error_kind.map(|kind| kind.as_str());
        let delay_ms = match completion.decision {
            Decision::Retry { delay } => Some(millis(delay)),
            Decision::Succeeded | Decision::DeadLetter => None,
        };
        let terminal = delay_ms.is_none();
        let update: Vec<Value> = vec![
            completion.delivery_id.into(),
            completion.lease_token.into(),
            completion.decision.state().as_str().into(),
            delay_ms.into(),
            status_code.into(),
            attempt.error_message.clone().into(),
            terminal.into(),
        ];
        let Some(row) = txn
            .query_one_raw(self.statement(UPDATE_DELIVERY, update))
            .await?
        else {
            return Ok(CompletionResult::LeaseLost);
        };
        let next_attempt_at_ms: Option<i64> = row.try_get_by_index(0)?;
        let now_ms: i64 = row.try_get_by_index(1)?;

        let number = i32::try_from(attempt.number).unwrap_or(i32::MAX);
        let excerpt =
            (!attempt.response_excerpt.is_empty()).then(|| attempt.response_excerpt.to_vec());
        let insert_attempt: Vec<Value> = vec![
            completion.delivery_id.into(),
            number.into(),
            attempt.started_at_ms.into(),
            attempt.duration_us.into(),
            status_code.into(),
            error_kind.into(),
            attempt.error_message.clone().into(),
            excerpt.into(),
        ];
        txn.execute_raw(self.statement(INSERT_ATTEMPT, insert_attempt))
            .await?;

        let kind = completion.decision.outcome_kind();
        let insert_outcome: Vec<Value> = vec![
            completion.tenant_id.clone().into(),
            completion.delivery_id.into(),
            kind.as_str().into(),
            number.into(),
            status_code.into(),
            error_kind.into(),
            attempt.error_message.clone().into(),
            next_attempt_at_ms.into(),
            now_ms.into(),
        ];
        let sequence_row = txn
            .query_one_raw(self.statement(INSERT_OUTCOME, insert_outcome))
            .await?
            .ok_or_else(|| StoreError::Corrupt("outcome insert returned no sequence".into()))?;
        Ok(CompletionResult::Recorded(OutcomeRecord {
            sequence: sequence_row.try_get_by_index(0)?,
            tenant_id: completion.tenant_id.clone(),
            delivery_id: completion.delivery_id,
            kind,
            attempt_number: attempt.number,
            status_code: attempt.status_code,
            error_kind: attempt.error_kind,
            error_message: attempt.error_message.clone(),
            next_attempt_at_ms,
            created_at_ms: now_ms,
        }))
    }

    fn statement(&self, template: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(self.backend(), self.dialect.sql(template), values)
    }
}
