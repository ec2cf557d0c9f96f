//! Operator actions: cancel a pending delivery, redrive dead letters.

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, ExprTrait, PaginatorTrait, QueryFilter,
    QuerySelect, TransactionTrait, Value, sea_query::Expr,
};
use uuid::Uuid;

use super::{
    Store, StoreError,
    entity::deliveries,
    records::{CancelResult, OutcomeRecord, RedriveSelection},
    unsigned,
};
use crate::domain::{DeliveryState, OutcomeKind};

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
    /// Cancels `tenant_id`'s pending delivery `id` and records the outcome.
    pub async fn cancel(&self, tenant_id: &str, id: Uuid) -> Result<CancelResult, StoreError> {
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
        };
        let outcome = self.record_outcome(&txn, outcome).await?;
        txn.commit().await?;
        Ok(CancelResult::Cancelled(outcome))
    }

    /// Makes the selected dead letters of `tenant_id` pending again, due
    /// now, each with a fresh attempt budget (its attempt count and history
    /// stay; any deadline is lifted). With `dry_run`, only counts them.
    pub async fn redrive(
        &self,
        tenant_id: &str,
        selection: &RedriveSelection,
        dry_run: bool,
    ) -> Result<u64, StoreError> {
        let condition = redrive_condition(tenant_id, selection);
        if dry_run {
            let count = deliveries::Entity::find()
                .filter(condition)
                .count(&self.db)
                .await?;
            return Ok(count);
        }
        let now = Expr::cust(self.dialect.now_ms());
        let _turn = self.write_turn().await;
        let result = deliveries::Entity::update_many()
            .col_expr(
                deliveries::Column::State,
                Expr::value(DeliveryState::Pending.as_str()),
            )
            .col_expr(
                deliveries::Column::MaxAttempts,
                Expr::col(deliveries::Column::AttemptCount)
                    .add(Expr::col(deliveries::Column::AttemptBudget)),
            )
            .col_expr(
                deliveries::Column::DeadlineAtMs,
                Expr::value(Option::<i64>::None),
            )
            .col_expr(deliveries::Column::NextAttemptAtMs, now.clone())
            .col_expr(
                deliveries::Column::FinishedAtMs,
                Expr::value(Option::<i64>::None),
            )
            .col_expr(deliveries::Column::UpdatedAtMs, now)
            .filter(condition)
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected)
    }
}

fn redrive_condition(tenant_id: &str, selection: &RedriveSelection) -> Condition {
    let base = Condition::all()
        .add(deliveries::Column::TenantId.eq(tenant_id))
        .add(deliveries::Column::State.eq(DeliveryState::DeadLettered.as_str()));
    match selection {
        RedriveSelection::Ids(ids) => base.add(deliveries::Column::Id.is_in(ids.iter().copied())),
        RedriveSelection::Filter {
            after_ms,
            before_ms,
            host,
        } => base
            .add_option(after_ms.map(|ms| deliveries::Column::FinishedAtMs.gte(ms)))
            .add_option(before_ms.map(|ms| deliveries::Column::FinishedAtMs.lt(ms)))
            .add_option(
                host.as_ref()
                    .map(|host| deliveries::Column::Host.eq(host.as_str())),
            ),
    }
}
