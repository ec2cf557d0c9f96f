//! The outcome feed in storage: reads after a sequence (for one watcher, or
//! for the replica's tailer), the retention horizon, and pruning.
//!
//! Because outcome-writing transactions are serialized (`lock_feed`), the
//! visible outcomes are always a prefix of the sequence: reading
//! `sequence > n` in order never skips a row that becomes visible later.

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait, Value,
};

use super::{
    Store, StoreError,
    entity::outcomes,
    records::{OutcomeFilter, OutcomeRecord},
    status_code, unsigned,
};

/// Deletes the oldest outcomes, up to a sequence, a batch at a time.
const PRUNE_BATCH: &str = "\
DELETE FROM outcomes WHERE sequence IN ( \
    SELECT sequence FROM outcomes WHERE sequence <= $1 ORDER BY sequence LIMIT $2 \
)";

/// Raises the recorded horizon to `$1`.
const RAISE_HORIZON: &str = "\
UPDATE feed_state SET pruned_through = $1 WHERE id = 1 AND pruned_through < $1";

impl Store {
    /// Up to `limit` outcomes of `tenant_id` passing `filter`, with a
    /// sequence above `after`, in sequence order: a watcher's replay.
    /// Replays take turns for a few of the pool's connections (see
    /// `Store::replay_reads`), so they never hold all of them.
    pub async fn outcomes_after(
        &self,
        tenant_id: &str,
        filter: &OutcomeFilter,
        after: i64,
        limit: u64,
    ) -> Result<Vec<OutcomeRecord>, StoreError> {
        let kinds: Vec<&str> = filter.kinds.iter().map(|kind| kind.as_str()).collect();
        let condition =
            Condition::all()
                .add(outcomes::Column::TenantId.eq(tenant_id))
                .add(outcomes::Column::Sequence.gt(after))
                .add_option((!filter.delivery_ids.is_empty()).then(|| {
                    outcomes::Column::DeliveryId.is_in(filter.delivery_ids.iter().copied())
                }))
                .add_option((!kinds.is_empty()).then(|| outcomes::Column::Kind.is_in(kinds)))
                .add_option(
                    filter
                        .host
                        .as_ref()
                        .map(|host| outcomes::Column::Host.eq(host.as_str())),
                )
                .add_option(
                    filter
                        .endpoint_id
                        .map(|id| outcomes::Column::EndpointId.eq(id)),
                )
                .add_option(
                    filter
                        .event_type
                        .as_ref()
                        .map(|name| outcomes::Column::EventType.eq(name.as_str())),
                );
        // The semaphore is never closed.
        let _turn = self.replay_reads.acquire().await.ok();
        self.read_outcomes(condition, limit).await
    }

    /// Up to `limit` outcomes of every tenant after `after`, in sequence
    /// order: what the replica's tailer fans out to its watchers.
    pub async fn feed_after(
        &self,
        after: i64,
        limit: u64,
    ) -> Result<Vec<OutcomeRecord>, StoreError> {
        self.read_outcomes(
            Condition::all().add(outcomes::Column::Sequence.gt(after)),
            limit,
        )
        .await
    }

    async fn read_outcomes(
        &self,
        condition: Condition,
        limit: u64,
    ) -> Result<Vec<OutcomeRecord>, StoreError> {
        outcomes::Entity::find()
            .filter(condition)
            .order_by_asc(outcomes::Column::Sequence)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(outcome_record)
            .collect()
    }

    /// The highest outcome sequence recorded so far (0 when none).
    pub async fn latest_sequence(&self) -> Result<i64, StoreError> {
        let latest = outcomes::Entity::find()
            .select_only()
            .column_as(outcomes::Column::Sequence.max(), "latest")
            .into_tuple::<Option<i64>>()
            .one(&self.db)
            .await?;
        Ok(latest.flatten().unwrap_or(0))
    }

    /// The highest sequence retention has deleted: a watch cannot resume
    /// from before it.
    pub async fn pruned_through(&self) -> Result<i64, StoreError> {
        let row = self
            .db
            .query_one_raw(self.statement(
                "SELECT pruned_through FROM feed_state WHERE id = 1",
                Vec::new(),
            ))
            .await?
            .ok_or_else(|| StoreError::Corrupt("feed_state has no row".into()))?;
        Ok(row.try_get_by_index(0)?)
    }

    /// Deletes outcomes recorded before `cutoff_ms`, oldest first, in
    /// transactions of at most `batch` rows (short locks). Only a prefix of
    /// the sequence is deleted, and the horizon is raised with each batch.
    /// Returns how many were deleted.
    pub async fn prune_outcomes(&self, cutoff_ms: i64, batch: u64) -> Result<u64, StoreError> {
        let newest_old = outcomes::Entity::find()
            .select_only()
            .column_as(outcomes::Column::Sequence.max(), "newest")
            .filter(outcomes::Column::CreatedAtMs.lt(cutoff_ms))
            .into_tuple::<Option<i64>>()
            .one(&self.db)
            .await?
            .flatten();
        let Some(through) = newest_old else {
            return Ok(0);
        };
        let mut deleted = 0;
        loop {
            // A turn per batch, so enqueues and completions go in between.
            let turn = self.write_turn().await;
            let txn = self.db.begin().await?;
            let values: Vec<Value> = vec![
                through.into(),
                i64::try_from(batch).unwrap_or(i64::MAX).into(),
            ];
            let removed = txn
                .execute_raw(self.statement(PRUNE_BATCH, values))
                .await?
                .rows_affected();
            txn.execute_raw(self.statement(RAISE_HORIZON, vec![through.into()]))
                .await?;
            txn.commit().await?;
            drop(turn);
            deleted += removed;
            if removed < batch {
                return Ok(deleted);
            }
        }
    }
}

fn outcome_record(model: outcomes::Model) -> Result<OutcomeRecord, StoreError> {
    Ok(OutcomeRecord {
        sequence: model.sequence,
        tenant_id: model.tenant_id,
        // A destination's event carries the nil delivery id.
        delivery_id: (!model.delivery_id.is_nil()).then_some(model.delivery_id),
        host: model.host,
        destination: model.destination,
        kind: model.kind.parse()?,
        attempt_number: unsigned(model.attempt_number, "attempt_number")?,
        status_code: status_code(model.status_code)?,
        error_kind: model.error_kind.map(|kind| kind.parse()).transpose()?,
        error_message: model.error_message,
        next_attempt_at_ms: model.next_attempt_at_ms,
        created_at_ms: model.created_at_ms,
        endpoint_id: model.endpoint_id,
        event_type: model.event_type,
    })
}
