//! Complete: persist a batch of attempt results in one transaction, with
//! a fixed number of statements however large the batch: one `UPDATE`
//! for every delivery, one multi-row `INSERT` of attempts, one of outcomes.
//!
//! Per delivery: the state change, the attempt row and the outcome row are
//! written together, and only if the row still carries the lease token the
//! attempt was made under. A stale completion (lease expired, row re-claimed)
//! changes nothing and is reported as [`CompletionResult::LeaseLost`].
//!
//! Outcomes are written last: writing them takes the feed's lock
//! ([`Store::lock_feed`]), which is then held only for the outcome insert
//! and the commit, so several batches can update rows and insert attempts
//! at once. Every transaction locks its rows before the feed, never after,
//! so two of them cannot wait on each other.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait, Value};
use uuid::Uuid;

use super::{
    Store, StoreError, millis,
    records::{Completion, CompletionResult, OutcomeRecord},
};
use crate::domain::Decision;

/// Moves each row on, if we still hold its lease. Terminal rows lose their
/// due time (so they leave the due index) and get a finish time. A row
/// whose request was never sent gets the claim's count back. `{rows}` is
/// one `($n, ...)` of eight values per completion, in the order of the
/// column list.
///
/// The lease token alone fences: only a claim sets it, on a pending row,
/// and every change out of pending (completion, cancel, release) clears it.
/// The statement deliberately says nothing of `state`: a `state =
/// 'pending'` here lets the planner read every pending row through the due
/// index and hash-join them, which it prefers whenever its statistics lag a
/// growing backlog (the usual case for a queue). Measured on a 60k
/// backlog: every batch scanned the whole backlog instead of probing the
/// primary key once per row.
const UPDATE_DELIVERIES: &str = "\
WITH done (d_id, d_token, d_state, d_delay, d_status, d_error, d_terminal, d_sent) AS ( \
    VALUES {rows} \
) \
UPDATE deliveries SET \
    state = done.d_state, \
    next_attempt_at_ms = CASE WHEN done.d_delay IS NULL THEN NULL ELSE {now} + done.d_delay END, \
    lease_token = NULL, \
    attempt_count = CASE WHEN done.d_sent THEN attempt_count ELSE attempt_count - 1 END, \
    last_status_code = done.d_status, \
    last_error = done.d_error, \
    updated_at_ms = {now}, \
    finished_at_ms = CASE WHEN done.d_terminal THEN {now} ELSE NULL END \
FROM done \
WHERE id = done.d_id AND lease_token = done.d_token \
RETURNING id, next_attempt_at_ms, updated_at_ms, host";

const INSERT_ATTEMPTS: &str = "\
INSERT INTO attempts (delivery_id, number, started_at_ms, duration_us, status_code, error_kind, \
    error_message, response_excerpt) \
VALUES {rows}";

/// Appends to the outcome feed, with each delivery's host for filters.
const INSERT_OUTCOMES: &str = "\
INSERT INTO outcomes (tenant_id, delivery_id, host, kind, attempt_number, status_code, error_kind, \
    error_message, next_attempt_at_ms, created_at_ms) \
VALUES {rows} \
RETURNING sequence, delivery_id";

/// `($first, ..., $first+width-1)` for each of `count` rows, comma-separated.
fn placeholders(
    count: usize,
    width: usize,
    first: usize,
    row: impl Fn(&[String]) -> String,
) -> String {
    (0..count)
        .map(|i| {
            let names: Vec<String> = (0..width)
                .map(|j| format!("${}", first + i * width + j))
                .collect();
            row(&names)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Indices of `batch` in rounds in which no delivery appears twice.
fn rounds(batch: &[Completion]) -> Vec<Vec<usize>> {
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    let mut seen: HashMap<Uuid, usize> = HashMap::with_capacity(batch.len());
    for (i, completion) in batch.iter().enumerate() {
        let round = seen.entry(completion.delivery_id).or_insert(0);
        if rounds.len() <= *round {
            rounds.push(Vec::new());
        }
        rounds[*round].push(i);
        *round += 1;
    }
    rounds
}

/// What the fenced update reports of a row it changed.
struct UpdatedRow {
    /// When the next attempt is due; `None` once finished.
    next_attempt_at_ms: Option<i64>,
    /// The database's "now" at the update, Unix ms.
    now_ms: i64,
    /// The delivery's URL host, for the outcome.
    host: String,
}

fn tuple(names: &[String]) -> String {
    format!("({})", names.join(", "))
}

impl Store {
    /// Persists `batch` in one transaction; the results are in batch order.
    /// If the transaction fails nothing is written and every row keeps its
    /// lease, to be attempted again when the lease expires (so a 2xx whose
    /// recording failed is re-sent, never dead-lettered).
    pub async fn complete(
        &self,
        batch: &[Completion],
    ) -> Result<Vec<CompletionResult>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let _turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        // A delivery appears at most once per round (a stale completion and
        // a fresh one for the same delivery go in different rounds), so each
        // round's rows match its completions by delivery id.
        let mut rounds_written = Vec::new();
        for round in rounds(batch) {
            let completions: Vec<&Completion> = round.iter().map(|&i| &batch[i]).collect();
            let updated = self.complete_round(&txn, &completions).await?;
            let written: Vec<(usize, OutcomeRecord)> = round
                .into_iter()
                .filter_map(|i| {
                    let row = updated.get(&batch[i].delivery_id)?;
                    Some((i, outcome_of(&batch[i], row)))
                })
                .collect();
            rounds_written.push(written);
        }
        let mut results = vec![CompletionResult::LeaseLost; batch.len()];
        for written in rounds_written {
            let (positions, outcomes): (Vec<usize>, Vec<OutcomeRecord>) =
                written.into_iter().unzip();
            let recorded = self.record_outcomes(&txn, outcomes).await?;
            for (i, outcome) in positions.into_iter().zip(recorded) {
                results[i] = CompletionResult::Recorded(outcome);
            }
        }
        txn.commit().await?;
        Ok(results)
    }

    /// Writes the state changes and attempts of completions of distinct
    /// deliveries; returns the rows changed, by delivery (absent: the lease
    /// was lost).
    async fn complete_round(
        &self,
        txn: &DatabaseTransaction,
        round: &[&Completion],
    ) -> Result<HashMap<Uuid, UpdatedRow>, StoreError> {
        let updated = self.update_deliveries(txn, round).await?;
        let written: Vec<&Completion> = round
            .iter()
            .copied()
            .filter(|completion| updated.contains_key(&completion.delivery_id))
            .collect();
        self.insert_attempts(txn, &written).await?;
        Ok(updated)
    }

    /// The fenced state change of every completion; returns the rows changed.
    async fn update_deliveries(
        &self,
        txn: &DatabaseTransaction,
        batch: &[&Completion],
    ) -> Result<HashMap<Uuid, UpdatedRow>, StoreError> {
        let mut values: Vec<Value> = Vec::with_capacity(batch.len() * 8);
        for completion in batch {
            let attempt = completion.attempt.as_ref();
            let delay_ms = match completion.decision {
                Decision::Retry { delay } => Some(millis(delay)),
                Decision::Succeeded | Decision::DeadLetter => None,
            };
            values.extend([
                completion.delivery_id.into(),
                completion.lease_token.into(),
                completion.decision.state().as_str().into(),
                delay_ms.into(),
                attempt.and_then(|a| a.status_code).map(i32::from).into(),
                completion.error_message().map(str::to_owned).into(),
                delay_ms.is_none().into(),
                attempt.is_some().into(),
            ]);
        }
        let sql = UPDATE_DELIVERIES.replace("{rows}", &placeholders(batch.len(), 8, 1, tuple));
        let rows = txn.query_all_raw(self.statement(&sql, values)).await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get_by_index::<Uuid>(0)?,
                    UpdatedRow {
                        next_attempt_at_ms: row.try_get_by_index(1)?,
                        now_ms: row.try_get_by_index(2)?,
                        host: row.try_get_by_index(3)?,
                    },
                ))
            })
            .collect()
    }

    /// The attempt rows of the completions that made one.
    async fn insert_attempts(
        &self,
        txn: &DatabaseTransaction,
        written: &[&Completion],
    ) -> Result<(), StoreError> {
        let mut values: Vec<Value> = Vec::new();
        let mut count = 0;
        for completion in written {
            let Some(attempt) = &completion.attempt else {
                continue;
            };
            let excerpt =
                (!attempt.response_excerpt.is_empty()).then(|| attempt.response_excerpt.to_vec());
            values.extend([
                completion.delivery_id.into(),
                i32::try_from(attempt.number).unwrap_or(i32::MAX).into(),
                attempt.started_at_ms.into(),
                attempt.duration_us.into(),
                attempt.status_code.map(i32::from).into(),
                attempt.error_kind.map(|kind| kind.as_str()).into(),
                attempt.error_message.clone().into(),
                excerpt.into(),
            ]);
            count += 1;
        }
        if count == 0 {
            return Ok(());
        }
        let sql = INSERT_ATTEMPTS.replace("{rows}", &placeholders(count, 8, 1, tuple));
        txn.execute_raw(self.statement(&sql, values)).await?;
        Ok(())
    }

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
    async fn record_outcomes(
        &self,
        txn: &DatabaseTransaction,
        mut outcomes: Vec<OutcomeRecord>,
    ) -> Result<Vec<OutcomeRecord>, StoreError> {
        if outcomes.is_empty() {
            return Ok(outcomes);
        }
        self.lock_feed(txn).await?;
        let mut values: Vec<Value> = Vec::with_capacity(outcomes.len() * 10);
        for outcome in &outcomes {
            values.extend([
                outcome.tenant_id.clone().into(),
                outcome.delivery_id.into(),
                outcome.host.clone().into(),
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
        let sql = INSERT_OUTCOMES.replace("{rows}", &placeholders(outcomes.len(), 10, 1, tuple));
        let returned = txn.query_all_raw(self.statement(&sql, values)).await?;
        let mut assigned: HashMap<Uuid, i64> = HashMap::with_capacity(returned.len());
        for row in &returned {
            assigned.insert(row.try_get_by_index(1)?, row.try_get_by_index(0)?);
        }
        for outcome in &mut outcomes {
            outcome.sequence = assigned.remove(&outcome.delivery_id).ok_or_else(|| {
                StoreError::Corrupt(format!("no sequence came back for {}", outcome.delivery_id))
            })?;
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

/// The outcome a written completion records.
fn outcome_of(completion: &Completion, row: &UpdatedRow) -> OutcomeRecord {
    let attempt = completion.attempt.as_ref();
    OutcomeRecord {
        sequence: 0,
        tenant_id: completion.tenant_id.clone(),
        delivery_id: completion.delivery_id,
        host: row.host.clone(),
        kind: completion.decision.outcome_kind(),
        attempt_number: completion.attempt_number,
        status_code: attempt.and_then(|a| a.status_code),
        error_kind: attempt.and_then(|a| a.error_kind),
        error_message: completion.error_message().map(str::to_owned),
        next_attempt_at_ms: row.next_attempt_at_ms,
        created_at_ms: row.now_ms,
    }
}
