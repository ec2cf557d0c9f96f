//! Complete: persist a batch of attempt results in one transaction, with
//! a fixed number of statements however large the batch: one `UPDATE`
//! for every delivery, one multi-row `INSERT` of attempts, one of outcomes.
//!
//! Before the deliveries, what the batch does to its destinations: a
//! circuit that opens (enough failures in a row), closes (a probe
//! succeeded) or reopens (a probe failed), a receiver's request to hold
//! off, and retries that may come due before an idle destination's next
//! look. Destination rows are locked first and in key order, as every
//! writer does ([`super::destinations`]); a healthy destination's row is
//! not touched at all. Circuit changes join the outcome feed.
//!
//! Per delivery: the state change, the attempt row and the outcome row are
//! written together, and only if the row still carries the lease token the
//! attempt was made under. A stale completion (lease expired, row re-claimed)
//! changes nothing and is reported as [`CompletionResult::LeaseLost`].
//!
//! Outcomes are written last: writing them takes the feed's lock
//! ([`feed_append`](super::feed_append)), which is then held only for the outcome insert
//! and the commit, so several batches can update rows and insert attempts
//! at once. Every transaction locks its rows before the feed, never after,
//! so two of them cannot wait on each other.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait, Value};
use uuid::Uuid;

use super::{
    Store, StoreError,
    destinations::{CANDIDATE_COLUMNS, Wake, candidate, pairs},
    millis,
    records::{Completion, CompletionResult, DestinationRef, OutcomeRecord},
    sql::{placeholders, tuple},
};
use crate::{
    destinations::{
        admission::Candidate,
        breaker::{Circuit, Phase, cooldown},
        policy::Policy,
    },
    domain::{Decision, OutcomeKind},
};

/// What a batch of attempt results does to one destination's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationChange {
    /// The destination.
    pub destination: DestinationRef,
    /// Its circuit's change, if any.
    pub circuit: Option<CircuitChange>,
    /// A receiver asked to hold off this long (429, `Retry-After`).
    pub hold: Option<std::time::Duration>,
}

/// How a batch changes a destination's circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitChange {
    /// This many failures in a row: open it, if closed.
    Trip {
        /// The failures that tripped it.
        failures: u32,
    },
    /// Its probe succeeded: close it.
    Close,
    /// Its probe failed: open it again, for longer.
    Reopen,
    /// Its probe was never sent (the delivery's deadline had passed):
    /// another may go at once.
    ProbeUnsent,
}

/// Reads the destinations a batch changes, locked, in key order.
const LOCK_DESTINATIONS: &str = "\
SELECT {columns}, d.host, {now} FROM destinations d \
WHERE (d.tenant_id, d.destination) IN (VALUES {pairs}) \
ORDER BY d.tenant_id, d.destination {lock}";

/// Writes a destination's new circuit and hold.
const UPDATE_DESTINATIONS: &str = "\
WITH changed (c_tenant, c_destination, c_open_until, c_trips, c_failures, c_hold, c_due, c_idle) \
    AS (VALUES {rows}) \
UPDATE destinations SET \
    circuit_open_until_ms = changed.c_open_until, \
    circuit_trips = changed.c_trips, \
    consecutive_failures = COALESCE(changed.c_failures, destinations.consecutive_failures), \
    hold_until_ms = changed.c_hold, \
    next_due_at_ms = changed.c_due, \
    idle = changed.c_idle, \
    updated_at_ms = {now} \
FROM changed \
WHERE destinations.tenant_id = changed.c_tenant AND destinations.destination = changed.c_destination";

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
RETURNING id, next_attempt_at_ms, updated_at_ms, host, destination";

const INSERT_ATTEMPTS: &str = "\
INSERT INTO attempts (delivery_id, number, started_at_ms, duration_us, status_code, error_kind, \
    error_message, response_excerpt) \
VALUES {rows}";

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
    /// Its destination, for the outcome.
    destination: String,
}

impl Store {
    /// Persists `batch` and what it does to its destinations (`changes`,
    /// resolved over the `defaults` policy) in one transaction; the
    /// results are in batch order. If the transaction fails nothing is
    /// written and every row keeps its lease: the caller may write the
    /// batch again, and a row whose lease expires first is attempted again
    /// as a resend (so a 2xx whose recording failed is re-sent, never
    /// dead-lettered).
    pub async fn complete(
        &self,
        batch: &[Completion],
        changes: &[DestinationChange],
        defaults: &Policy,
    ) -> Result<Vec<CompletionResult>, StoreError> {
        if batch.is_empty() && changes.is_empty() {
            return Ok(Vec::new());
        }
        let _turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        let events = self.change_destinations(&txn, changes, defaults).await?;
        let retries: Vec<Wake> = batch
            .iter()
            .filter_map(|completion| match completion.decision {
                Decision::Retry { delay } => Some(Wake {
                    destination: DestinationRef {
                        tenant_id: completion.tenant_id.clone(),
                        destination: completion.destination.clone(),
                    },
                    at_ms: None,
                    after: delay,
                }),
                Decision::Succeeded | Decision::DeadLetter => None,
            })
            .collect();
        self.wake(&txn, &retries).await?;
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
        let mut events = Some(events);
        for written in rounds_written {
            let (positions, mut outcomes): (Vec<usize>, Vec<OutcomeRecord>) =
                written.into_iter().unzip();
            // The destinations' events go with the first round's outcomes.
            outcomes.extend(events.take().unwrap_or_default());
            let recorded = self.record_outcomes(&txn, outcomes).await?;
            for (i, outcome) in positions.into_iter().zip(recorded) {
                results[i] = CompletionResult::Recorded(outcome);
            }
        }
        if let Some(events) = events.filter(|events| !events.is_empty()) {
            self.record_outcomes(&txn, events).await?;
        }
        txn.commit().await?;
        Ok(results)
    }

    /// Applies `changes` to their destinations, locked in key order;
    /// returns the circuit events to record.
    async fn change_destinations(
        &self,
        txn: &DatabaseTransaction,
        changes: &[DestinationChange],
        defaults: &Policy,
    ) -> Result<Vec<OutcomeRecord>, StoreError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let refs: Vec<&DestinationRef> = changes.iter().map(|change| &change.destination).collect();
        let (rows, values) = pairs(&refs, 1);
        let lock = match self.dialect {
            super::Dialect::Postgres => "FOR UPDATE OF d",
            super::Dialect::Sqlite => "",
        };
        let sql = LOCK_DESTINATIONS
            .replace("{columns}", CANDIDATE_COLUMNS)
            .replace("{pairs}", &rows)
            .replace("{lock}", lock);
        let found = txn.query_all_raw(self.statement(&sql, values)).await?;
        let by_destination: HashMap<&DestinationRef, &DestinationChange> = changes
            .iter()
            .map(|change| (&change.destination, change))
            .collect();
        let mut updates: Vec<(Candidate, Changed)> = Vec::new();
        let mut events = Vec::new();
        for row in &found {
            let current = candidate(row, defaults)?;
            let host: String = row.try_get_by_index(16)?;
            let now_ms: i64 = row.try_get_by_index(17)?;
            let key = DestinationRef {
                tenant_id: current.tenant_id.clone(),
                destination: current.destination.clone(),
            };
            let Some(change) = by_destination.get(&key) else {
                continue;
            };
            let (changed, event) = apply(&current, change, now_ms);
            if let Some((kind, message, next)) = event {
                events.push(OutcomeRecord {
                    sequence: 0,
                    tenant_id: current.tenant_id.clone(),
                    delivery_id: None,
                    host,
                    destination: Some(current.destination.clone()),
                    kind,
                    attempt_number: 0,
                    status_code: None,
                    error_kind: None,
                    error_message: Some(message),
                    next_attempt_at_ms: next,
                    created_at_ms: now_ms,
                    endpoint_id: None,
                    event_type: None,
                });
            }
            if changed.differs(&current) {
                updates.push((current, changed));
            }
        }
        if updates.is_empty() {
            return Ok(events);
        }
        let mut values: Vec<Value> = Vec::with_capacity(updates.len() * 8);
        for (current, changed) in &updates {
            values.extend([
                current.tenant_id.clone().into(),
                current.destination.clone().into(),
                changed.circuit.open_until_ms.into(),
                i32::try_from(changed.circuit.trips)
                    .unwrap_or(i32::MAX)
                    .into(),
                changed
                    .failures
                    .map(|failures| i32::try_from(failures).unwrap_or(i32::MAX))
                    .into(),
                changed.hold_until_ms.into(),
                changed.next_due_at_ms.into(),
                changed.idle.into(),
            ]);
        }
        let sql = UPDATE_DESTINATIONS.replace("{rows}", &placeholders(updates.len(), 8, 1, tuple));
        txn.execute_raw(self.statement(&sql, values)).await?;
        Ok(events)
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
                        destination: row.try_get_by_index(4)?,
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
}

/// The outcome a written completion records.
fn outcome_of(completion: &Completion, row: &UpdatedRow) -> OutcomeRecord {
    let attempt = completion.attempt.as_ref();
    OutcomeRecord {
        sequence: 0,
        tenant_id: completion.tenant_id.clone(),
        delivery_id: Some(completion.delivery_id),
        host: row.host.clone(),
        destination: Some(row.destination.clone()),
        kind: completion.decision.outcome_kind(),
        attempt_number: completion.attempt_number,
        status_code: attempt.and_then(|a| a.status_code),
        error_kind: attempt.and_then(|a| a.error_kind),
        error_message: completion.error_message().map(str::to_owned),
        next_attempt_at_ms: row.next_attempt_at_ms,
        created_at_ms: row.now_ms,
        endpoint_id: None,
        event_type: None,
    }
}

/// A destination's row after a batch's change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Changed {
    circuit: Circuit,
    /// Consecutive failures to record, when they change.
    failures: Option<u32>,
    hold_until_ms: Option<i64>,
    next_due_at_ms: Option<i64>,
    idle: bool,
}

impl Changed {
    fn differs(&self, current: &Candidate) -> bool {
        self.circuit != current.circuit
            || self.hold_until_ms != current.hold_until_ms
            || self.next_due_at_ms != current.next_due_at_ms
            || self.idle != current.idle
    }
}

/// The event a change records: its kind, what happened, and when the
/// circuit is next probed (for an opening).
type Event = (OutcomeKind, String, Option<i64>);

/// `current` after `change` at `now_ms`, and the event it records.
fn apply(current: &Candidate, change: &DestinationChange, now_ms: i64) -> (Changed, Option<Event>) {
    let policy = &current.policy.circuit;
    let mut changed = Changed {
        circuit: current.circuit,
        failures: None,
        hold_until_ms: current.hold_until_ms,
        next_due_at_ms: current.next_due_at_ms,
        idle: current.idle,
    };
    let phase = current.circuit.phase(now_ms);
    let opened = |circuit: Circuit, why: String| {
        let next = circuit.open_until_ms;
        let wait = cooldown(circuit.trips, policy);
        let message = format!(
            "{why}; the next probe goes in {}",
            humantime::format_duration(wait)
        );
        (OutcomeKind::CircuitOpened, message, next)
    };
    let mut event = None;
    match change.circuit {
        Some(CircuitChange::Trip { failures }) if phase == Phase::Closed => {
            changed.circuit = current.circuit.opened(now_ms, policy);
            changed.failures = Some(failures);
            event = Some(opened(
                changed.circuit,
                format!("{failures} consecutive failures opened the circuit"),
            ));
        }
        Some(CircuitChange::Reopen) if phase != Phase::Closed => {
            changed.circuit = current.circuit.opened(now_ms, policy);
            event = Some(opened(changed.circuit, "the probe failed".to_owned()));
        }
        Some(CircuitChange::Close) if phase != Phase::Closed => {
            changed.circuit = Circuit::closed();
            changed.failures = Some(0);
            event = Some((
                OutcomeKind::CircuitClosed,
                "the probe succeeded; deliveries flow again".to_owned(),
                None,
            ));
        }
        Some(CircuitChange::ProbeUnsent) if phase == Phase::HalfOpen => {
            changed.next_due_at_ms = Some(now_ms);
            changed.idle = false;
        }
        _ => {}
    }
    if let Some(hold) = change.hold {
        let until = now_ms.saturating_add(millis(hold));
        changed.hold_until_ms = Some(current.hold_until_ms.map_or(until, |held| held.max(until)));
    }
    // Where the claim looks next: when the circuit or the hold lets
    // anything through, or at once for a closed circuit.
    let blocked_until = [changed.circuit.open_until_ms, changed.hold_until_ms]
        .into_iter()
        .flatten()
        .filter(|until| *until > now_ms)
        .max();
    if let Some(until) = blocked_until {
        if changed.next_due_at_ms.is_some_and(|due| due < until) || !changed.idle {
            changed.next_due_at_ms = Some(until);
            changed.idle = false;
        }
    } else if changed.circuit != current.circuit {
        changed.next_due_at_ms = Some(now_ms);
        changed.idle = false;
    }
    (changed, event)
}
