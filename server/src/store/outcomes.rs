//! Outcome replay: the recorded outcomes after a sequence, for a watcher
//! catching up before it tails the live feed.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{Store, StoreError, entity::outcomes, records::OutcomeRecord, status_code, unsigned};

impl Store {
    /// Up to `limit` outcomes of `tenant_id` with a sequence above `after`,
    /// in sequence order.
    pub async fn outcomes_after(
        &self,
        tenant_id: &str,
        after: i64,
        limit: u64,
    ) -> Result<Vec<OutcomeRecord>, StoreError> {
        outcomes::Entity::find()
            .filter(outcomes::Column::TenantId.eq(tenant_id))
            .filter(outcomes::Column::Sequence.gt(after))
            .order_by_asc(outcomes::Column::Sequence)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(outcome_record)
            .collect()
    }
}

fn outcome_record(model: outcomes::Model) -> Result<OutcomeRecord, StoreError> {
    Ok(OutcomeRecord {
        sequence: model.sequence,
        tenant_id: model.tenant_id,
        delivery_id: model.delivery_id,
        kind: model.kind.parse()?,
        attempt_number: unsigned(model.attempt_number, "attempt_number")?,
        status_code: status_code(model.status_code)?,
        error_kind: model.error_kind.map(|kind| kind.parse()).transpose()?,
        error_message: model.error_message,
        next_attempt_at_ms: model.next_attempt_at_ms,
        created_at_ms: model.created_at_ms,
    })
}

impl Store {
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
}
