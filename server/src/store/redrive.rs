//! Redriving dead letters: each is made pending again, due now, with a
//! fresh attempt budget (its attempt count and history stay; any deadline
//! is lifted), and records a `redriven` outcome in the same transaction,
//! which also wakes their destinations if they were parked with nothing due.
//!
//! A redrive goes [`REDRIVE_BATCH`] rows per transaction, so however many
//! dead letters it selects, no transaction holds their rows (or, on SQLite,
//! the only writer) for long, and enqueues and completions interleave with
//! it. A redrive by filter takes only rows dead-lettered before it began:
//! a redriven delivery that is dead-lettered again meanwhile is not taken
//! a second time, so the loop ends.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
    TransactionTrait, Value,
};
use uuid::Uuid;

use super::{
    Actor, AuditKind, Store, StoreError,
    destinations::Wake,
    entity::deliveries,
    records::{DestinationRef, NotRedriven, OutcomeRecord, RedriveReport, RedriveSelection},
    sql::list,
    unsigned,
};
use crate::domain::{DeliveryState, OutcomeKind};

/// Dead letters redriven per transaction.
pub const REDRIVE_BATCH: usize = 500;

/// Makes the dead letters `{pick}` selects (a subquery over `$1`, the
/// tenant) pending again; rows that stopped being dead letters since are
/// left alone.
const REDRIVE: &str = "\
UPDATE deliveries SET state = 'pending', max_attempts = attempt_count + attempt_budget, \
    deadline_at_ms = NULL, next_attempt_at_ms = {now}, finished_at_ms = NULL, updated_at_ms = {now} \
WHERE id IN ({pick}) AND state = 'dead_lettered' \
RETURNING id, host, destination, attempt_count, updated_at_ms";

/// The tenant's dead letters among the ids listed from `$2`.
const PICK_IDS: &str = "\
SELECT id FROM deliveries WHERE tenant_id = $1 AND state = 'dead_lettered' AND id IN {ids}";

/// Up to `$2` of the tenant's dead letters finished before `$3` and
/// matching `{filters}`, oldest first.
const PICK_FILTERED: &str = "\
SELECT id FROM deliveries \
WHERE tenant_id = $1 AND state = 'dead_lettered' AND finished_at_ms < $3 {filters} \
ORDER BY finished_at_ms, id LIMIT $2";

/// A redrive's audit event, until it is recorded.
struct Audit<'a> {
    actor: &'a Actor,
    details: serde_json::Value,
}

/// What a redrive selected, for its audit event.
fn audit_details(selection: &RedriveSelection) -> serde_json::Value {
    match selection {
        RedriveSelection::Ids(ids) => serde_json::json!({
            "ids": ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }),
        RedriveSelection::Filter {
            after_ms,
            before_ms,
            host,
        } => serde_json::json!({
            "finished_after_ms": after_ms,
            "finished_before_ms": before_ms,
            "destination_host": host,
        }),
    }
}

impl Store {
    /// Redrives the dead letters of `actor`'s tenant that `selection` picks,
    /// a batch per transaction, handing each batch's recorded outcomes to
    /// `redriven` once it commits. With `dry_run`, only counts them. Named
    /// ids that are not (or would not be) redriven are reported with why.
    pub async fn redrive(
        &self,
        actor: &Actor,
        selection: &RedriveSelection,
        dry_run: bool,
        mut redriven: impl FnMut(&[OutcomeRecord]),
    ) -> Result<RedriveReport, StoreError> {
        let tenant_id = actor.tenant_id.as_str();
        // Recorded once, with the first batch that redrives anything.
        let mut audit = Some(Audit {
            actor,
            details: audit_details(selection),
        });
        match selection {
            RedriveSelection::Ids(ids) => {
                let mut count = 0;
                let mut done = HashSet::new();
                if !dry_run {
                    for chunk in ids.chunks(REDRIVE_BATCH) {
                        let mut values: Vec<Value> = vec![tenant_id.into()];
                        values.extend(chunk.iter().map(|&id| Value::from(id)));
                        let pick = PICK_IDS.replace("{ids}", &list(chunk.len(), 2));
                        let outcomes = self
                            .redrive_batch(tenant_id, &mut audit, &pick, values)
                            .await?;
                        done.extend(outcomes.iter().filter_map(|outcome| outcome.delivery_id));
                        count += outcomes.len() as u64;
                        redriven(&outcomes);
                    }
                }
                let rest: Vec<Uuid> = ids
                    .iter()
                    .filter(|id| !done.contains(id))
                    .copied()
                    .collect();
                let states = self.states(tenant_id, &rest).await?;
                let mut not_redriven = Vec::new();
                for id in rest {
                    match states.get(&id) {
                        None => not_redriven.push((id, NotRedriven::NotFound)),
                        Some(DeliveryState::DeadLettered) if dry_run => count += 1,
                        Some(&state) => {
                            not_redriven.push((id, NotRedriven::NotDeadLettered(state)))
                        }
                    }
                }
                Ok(RedriveReport {
                    count,
                    not_redriven,
                })
            }
            RedriveSelection::Filter {
                after_ms,
                before_ms,
                host,
            } => {
                if dry_run {
                    let count = deliveries::Entity::find()
                        .filter(filter_condition(
                            tenant_id,
                            *after_ms,
                            *before_ms,
                            host.as_deref(),
                        ))
                        .count(&self.db)
                        .await?;
                    return Ok(RedriveReport {
                        count,
                        not_redriven: Vec::new(),
                    });
                }
                let began = self.now_ms().await?;
                let before = before_ms.map_or(began, |before| before.min(began));
                let mut filters = String::new();
                let mut values: Vec<Value> = vec![
                    tenant_id.into(),
                    i64::try_from(REDRIVE_BATCH).unwrap_or(i64::MAX).into(),
                    before.into(),
                ];
                if let Some(after) = after_ms {
                    values.push((*after).into());
                    filters.push_str(&format!(" AND finished_at_ms >= ${}", values.len()));
                }
                if let Some(host) = host {
                    values.push(host.as_str().into());
                    filters.push_str(&format!(" AND host = ${}", values.len()));
                }
                let pick = PICK_FILTERED.replace("{filters}", &filters);
                let mut count = 0;
                loop {
                    let outcomes = self
                        .redrive_batch(tenant_id, &mut audit, &pick, values.clone())
                        .await?;
                    count += outcomes.len() as u64;
                    redriven(&outcomes);
                    if outcomes.len() < REDRIVE_BATCH {
                        return Ok(RedriveReport {
                            count,
                            not_redriven: Vec::new(),
                        });
                    }
                }
            }
        }
    }

    /// Redrives the dead letters `pick` selects (bound by `values`) in one
    /// transaction, with their outcomes, and `audit`'s event if it is
    /// still to be recorded and this batch redrives anything.
    async fn redrive_batch(
        &self,
        tenant_id: &str,
        audit: &mut Option<Audit<'_>>,
        pick: &str,
        values: Vec<Value>,
    ) -> Result<Vec<OutcomeRecord>, StoreError> {
        let _turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        let sql = REDRIVE.replace("{pick}", pick);
        let rows = txn.query_all_raw(self.statement(&sql, values)).await?;
        if rows.is_empty() {
            txn.rollback().await?;
            return Ok(Vec::new());
        }
        let mut outcomes = Vec::with_capacity(rows.len());
        for row in &rows {
            let at: i64 = row.try_get_by_index(4)?;
            outcomes.push(OutcomeRecord {
                sequence: 0,
                tenant_id: tenant_id.to_owned(),
                delivery_id: Some(row.try_get_by_index::<Uuid>(0)?),
                host: row.try_get_by_index(1)?,
                destination: row.try_get_by_index(2)?,
                kind: OutcomeKind::Redriven,
                attempt_number: unsigned(row.try_get_by_index(3)?, "attempt_count")?,
                status_code: None,
                error_kind: None,
                error_message: None,
                next_attempt_at_ms: Some(at),
                created_at_ms: at,
                endpoint_id: None,
                event_type: None,
            });
        }
        // A destination parked with nothing due would not look at its
        // redriven deliveries until the overlooked-work safety net ran.
        let mut wakes: Vec<Wake> = Vec::new();
        for outcome in &outcomes {
            let Some(destination) = &outcome.destination else {
                continue;
            };
            if wakes
                .iter()
                .all(|wake| &wake.destination.destination != destination)
            {
                wakes.push(Wake {
                    destination: DestinationRef {
                        tenant_id: tenant_id.to_owned(),
                        destination: destination.clone(),
                    },
                    at_ms: outcome.next_attempt_at_ms,
                    after: Duration::ZERO,
                });
            }
        }
        self.wake(&txn, &wakes).await?;
        if let Some(Audit { actor, details }) = audit.take() {
            self.record_audit(&txn, actor, AuditKind::DeadLettersRedriven, details)
                .await?;
        }
        let outcomes = self.record_outcomes(&txn, outcomes).await?;
        txn.commit().await?;
        Ok(outcomes)
    }

    /// The states of those of `ids` that `tenant_id` has.
    async fn states(
        &self,
        tenant_id: &str,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, DeliveryState>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        deliveries::Entity::find()
            .filter(deliveries::Column::TenantId.eq(tenant_id))
            .filter(deliveries::Column::Id.is_in(ids.iter().copied()))
            .select_only()
            .column(deliveries::Column::Id)
            .column(deliveries::Column::State)
            .into_tuple::<(Uuid, String)>()
            .all(&self.db)
            .await?
            .into_iter()
            .map(|(id, state)| Ok((id, state.parse()?)))
            .collect()
    }

    /// The database clock, Unix ms.
    async fn now_ms(&self) -> Result<i64, StoreError> {
        let row = self
            .db
            .query_one_raw(self.statement("SELECT {now}", Vec::new()))
            .await?
            .ok_or_else(|| StoreError::Corrupt("SELECT returned no row".into()))?;
        Ok(row.try_get_by_index(0)?)
    }
}

/// The tenant's dead letters matching a redrive's filters.
fn filter_condition(
    tenant_id: &str,
    after_ms: Option<i64>,
    before_ms: Option<i64>,
    host: Option<&str>,
) -> Condition {
    Condition::all()
        .add(deliveries::Column::TenantId.eq(tenant_id))
        .add(deliveries::Column::State.eq(DeliveryState::DeadLettered.as_str()))
        .add_option(after_ms.map(|ms| deliveries::Column::FinishedAtMs.gte(ms)))
        .add_option(before_ms.map(|ms| deliveries::Column::FinishedAtMs.lt(ms)))
        .add_option(host.map(|host| deliveries::Column::Host.eq(host)))
}
