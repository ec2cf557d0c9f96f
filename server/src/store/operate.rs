//! Operator actions: cancel a pending delivery (redrives are in
//! [`super::redrive`]).

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, TransactionTrait, Value,
};
use uuid::Uuid;

use super::{
    Actor, AuditKind, Store, StoreError,
    entity::deliveries,
    records::{CancelResult, OutcomeRecord},
    unsigned,
};
use crate::domain::OutcomeKind;

/// Ends a pending delivery. Its lease, if any, is cleared, so an attempt in
/// flight finds its lease lost and its result is discarded.
const CANCEL: &str = "\
UPDATE deliveries SET \
    state = 'cancelled', \
    next_attempt_at_ms = NULL, \
    lease_token = NULL, \
    updated_at_ms = {now}, \
    finished_at_ms = {now} \
WHERE id = $1 AND tenant_id = $2 AND state = 'pending' \
RETURNING attempt_count, updated_at_ms, host, destination";

impl Store {
    /// Cancels `actor`'s tenant's pending delivery `id` and records the
    /// outcome and the audit event.
    pub async fn cancel(&self, actor: &Actor, id: Uuid) -> Result<CancelResult, StoreError> {
        let tenant_id = actor.tenant_id.as_str();
        let turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        let values: Vec<Value> = vec![id.into(), tenant_id.into()];
        let Some(row) = txn.query_one_raw(self.statement(CANCEL, values)).await? else {
            txn.rollback().await?;
            drop(turn);
            // Not pending: say whether it is missing or already finished.
            let state = deliveries::Entity::find_by_id(id)
                .filter(deliveries::Column::TenantId.eq(tenant_id))
                .select_only()
                .column(deliveries::Column::State)
                .into_tuple::<String>()
                .one(&self.db)
                .await?;
            return Ok(match state {
                None => CancelResult::NotFound,
                Some(state) => CancelResult::Finished(state.parse()?),
            });
        };
        let outcome = OutcomeRecord {
            sequence: 0,
            tenant_id: tenant_id.to_owned(),
            delivery_id: Some(id),
            host: row.try_get_by_index(2)?,
            destination: row.try_get_by_index(3)?,
            kind: OutcomeKind::Cancelled,
            attempt_number: unsigned(row.try_get_by_index(0)?, "attempt_count")?,
            status_code: None,
            error_kind: None,
            error_message: None,
            next_attempt_at_ms: None,
            created_at_ms: row.try_get_by_index(1)?,
            endpoint_id: None,
            event_type: None,
        };
        let details = serde_json::json!({ "delivery_id": id.to_string() });
        self.record_audit(&txn, actor, AuditKind::DeliveryCancelled, details)
            .await?;
        let outcome = self.record_outcome(&txn, outcome).await?;
        txn.commit().await?;
        Ok(CancelResult::Cancelled(outcome))
    }
}
