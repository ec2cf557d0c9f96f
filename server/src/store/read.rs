//! Reads for the API: one delivery with its attempts, and the listings
//! (dead letters, deliveries). Not on the hot path, so they go through the
//! SeaORM entities.
//!
//! A listing pages by keyset: `(time, id) < (X, Y)`, a row-value
//! comparison both databases read as a range of an index on
//! `(tenant, [state | host,] time, id)` (the spelled-out `time < X OR
//! (time = X AND id < Y)` is read as neither).
//!
//! Every read the API makes (these, the audit and destination listings,
//! the backlog) runs on the store's read pool, apart from the connections
//! enqueues and the scheduler use, so a dashboard listing hard cannot take
//! them away; and on PostgreSQL in a read-only transaction with a
//! statement timeout ([`LISTING_TIMEOUT`]), so one that would scan too
//! much gives its connection back to the other readers.
//!
//! A listing streams its rows to a caller's `take`, which says when the
//! page is full (by rows or by bytes), so at most one row past the page is
//! ever read into memory; the basic view does not read bodies and headers
//! at all.

use std::time::Duration;

use futures::TryStreamExt;
use sea_orm::{
    AccessMode, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait,
    ExprTrait, Iterable, Order, QueryFilter, QueryOrder, QuerySelect, QueryTrait, RuntimeErr,
    Select, SelectModel, Selector, StreamTrait, TransactionTrait, sea_query::Expr,
};
use uuid::Uuid;

use super::{
    Store, StoreError,
    entity::{attempts, deliveries},
    http_request,
    records::{AttemptRecord, DeliveryFilter, DeliveryRecord, DeliveryView, EventOrigin},
    status_code, unsigned,
};
use crate::domain::DeliveryState;

/// Longest a statement of a read for the API may run on PostgreSQL.
pub const LISTING_TIMEOUT: Duration = Duration::from_secs(5);

/// PostgreSQL's `query_canceled`, which a statement timeout raises.
const QUERY_CANCELED: &str = "57014";

/// Where a page starts: just past the last delivery of the previous page,
/// by the listing's (time, id) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCursor {
    /// The time the listing orders by (finish time for dead letters,
    /// creation time for deliveries), Unix ms.
    pub at_ms: i64,
    /// Id of the last delivery of the previous page.
    pub id: Uuid,
}

impl Store {
    /// A transaction on the read pool for a read the API makes: read-only
    /// with a statement timeout of [`LISTING_TIMEOUT`] on PostgreSQL. Map
    /// its statements' errors with [`timed_out`].
    ///
    /// A pooled connection a database outage broke fails its `BEGIN` and
    /// leaves the pool; the read then begins on the next one, up to every
    /// connection of the pool and one more, so the first reads after an
    /// outage answer instead of failing one per broken connection.
    pub(super) async fn read_only(&self) -> Result<DatabaseTransaction, StoreError> {
        let mut tries = self.options.read_connections + 1;
        let txn = loop {
            let begun = match self.dialect {
                super::Dialect::Sqlite => self.reads.begin().await,
                super::Dialect::Postgres => {
                    self.reads
                        .begin_with_config(None, Some(AccessMode::ReadOnly))
                        .await
                }
            };
            match begun.map_err(StoreError::from) {
                Ok(txn) => break txn,
                Err(error) if tries > 1 && error.is_unavailable() => tries -= 1,
                Err(error) => return Err(error),
            }
        };
        if self.dialect != super::Dialect::Postgres {
            return Ok(txn);
        }
        txn.execute_unprepared(&format!(
            "SET LOCAL statement_timeout = {}",
            LISTING_TIMEOUT.as_millis()
        ))
        .await?;
        Ok(txn)
    }

    /// Runs `read` in a transaction of [`Store::read_only`], its database
    /// errors mapped by [`timed_out`], and ends the transaction.
    pub(super) async fn on_read_pool<T>(
        &self,
        read: impl AsyncFnOnce(&DatabaseTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.read_only().await?;
        let value = read(&txn).await.map_err(|error| match error {
            StoreError::Database(error) => timed_out(error),
            other => other,
        })?;
        txn.commit().await?;
        Ok(value)
    }

    /// One delivery of `tenant_id` with its attempts, oldest first.
    pub async fn get_delivery(
        &self,
        tenant_id: &str,
        id: Uuid,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let txn = self.read_only().await?;
        let Some(model) = deliveries::Entity::find_by_id(id)
            .filter(deliveries::Column::TenantId.eq(tenant_id))
            .one(&txn)
            .await
            .map_err(timed_out)?
        else {
            return Ok(None);
        };
        let attempts = attempts::Entity::find()
            .filter(attempts::Column::DeliveryId.eq(id))
            .order_by_asc(attempts::Column::Number)
            .all(&txn)
            .await
            .map_err(timed_out)?
            .into_iter()
            .map(attempt_record)
            .collect::<Result<Vec<_>, _>>()?;
        txn.commit().await?;
        let mut delivery = delivery_record(model)?;
        delivery.attempts = attempts;
        Ok(Some(delivery))
    }

    /// Up to `limit` dead letters of `tenant_id` after `cursor`, in the
    /// order they were dead-lettered, each handed to `take` (see
    /// [`Store::list_deliveries`]). The (finish time, id) order is total,
    /// so paging returns every dead letter exactly once.
    pub async fn list_dead_letters(
        &self,
        tenant_id: &str,
        cursor: Option<PageCursor>,
        limit: u64,
        view: DeliveryView,
        take: impl FnMut(DeliveryRecord) -> bool,
    ) -> Result<(), StoreError> {
        let condition = Condition::all()
            .add(deliveries::Column::TenantId.eq(tenant_id))
            .add(deliveries::Column::State.eq(DeliveryState::DeadLettered.as_str()));
        let order = (deliveries::Column::FinishedAtMs, Order::Asc);
        self.page(page_query(condition, order, cursor, limit), view, take)
            .await
    }

    /// Up to `limit` of `tenant_id`'s deliveries matching `filter`, newest
    /// first, starting past `cursor`, read in `view` and handed one by one
    /// to `take`, which answers whether to go on (a page full by bytes
    /// leaves the delivery it cannot hold out and stops).
    pub async fn list_deliveries(
        &self,
        tenant_id: &str,
        filter: &DeliveryFilter,
        cursor: Option<PageCursor>,
        limit: u64,
        view: DeliveryView,
        take: impl FnMut(DeliveryRecord) -> bool,
    ) -> Result<(), StoreError> {
        let (condition, order) = deliveries_listing(tenant_id, filter);
        self.page(page_query(condition, order, cursor, limit), view, take)
            .await
    }

    /// PostgreSQL's plan (`EXPLAIN`) for [`Store::list_deliveries`] with
    /// these arguments, to check which index a listing reads; `None` on
    /// SQLite.
    pub async fn explain_list_deliveries(
        &self,
        tenant_id: &str,
        filter: &DeliveryFilter,
        cursor: Option<PageCursor>,
        limit: u64,
    ) -> Result<Option<String>, StoreError> {
        if self.dialect != super::Dialect::Postgres {
            return Ok(None);
        }
        let (condition, order) = deliveries_listing(tenant_id, filter);
        let mut statement = page_query(condition, order, cursor, limit).build(self.backend());
        statement.sql = format!("EXPLAIN {}", statement.sql);
        let lines = self
            .db
            .query_all_raw(statement)
            .await?
            .iter()
            .map(|row| row.try_get_by_index::<String>(0))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(lines.join("\n")))
    }

    /// Streams the rows of `query`, in `view`, to `take` until it says
    /// stop.
    async fn page(
        &self,
        query: Select<deliveries::Entity>,
        view: DeliveryView,
        mut take: impl FnMut(DeliveryRecord) -> bool,
    ) -> Result<(), StoreError> {
        let query = in_view(query, view);
        let txn = self.read_only().await?;
        stream_to(query, &txn, &mut take).await?;
        txn.commit().await?;
        Ok(())
    }
}

/// Hands the rows of `query` to `take`, read from `db` as they come, until
/// it says stop.
async fn stream_to(
    query: Selector<SelectModel<deliveries::Model>>,
    db: &(impl ConnectionTrait + StreamTrait),
    take: &mut impl FnMut(DeliveryRecord) -> bool,
) -> Result<(), StoreError> {
    let mut rows = query.stream(db).await.map_err(timed_out)?;
    while let Some(model) = rows.try_next().await.map_err(timed_out)? {
        if !take(delivery_record(model)?) {
            break;
        }
    }
    Ok(())
}

/// `query` reading what `view` needs: the basic view reads an empty body
/// and no headers instead of the stored ones.
fn in_view(
    query: Select<deliveries::Entity>,
    view: DeliveryView,
) -> Selector<SelectModel<deliveries::Model>> {
    match view {
        DeliveryView::Full => query.into_model(),
        DeliveryView::Basic => query
            .select_only()
            .columns(deliveries::Column::iter().filter(|column| {
                !matches!(
                    column,
                    deliveries::Column::Body | deliveries::Column::Headers
                )
            }))
            .column_as(Expr::val(Vec::<u8>::new()), "body")
            .column_as(Expr::val("[]"), "headers")
            .into_model(),
    }
}

/// The condition and order of `tenant_id`'s deliveries matching `filter`,
/// newest first.
fn deliveries_listing(
    tenant_id: &str,
    filter: &DeliveryFilter,
) -> (Condition, (deliveries::Column, Order)) {
    let condition = Condition::all()
        .add(deliveries::Column::TenantId.eq(tenant_id))
        .add_option(
            filter
                .state
                .map(|state| deliveries::Column::State.eq(state.as_str())),
        )
        .add_option(
            filter
                .host
                .as_ref()
                .map(|host| deliveries::Column::Host.eq(host.as_str())),
        )
        .add_option(
            filter
                .created_after_ms
                .map(|ms| deliveries::Column::CreatedAtMs.gte(ms)),
        )
        .add_option(
            filter
                .created_before_ms
                .map(|ms| deliveries::Column::CreatedAtMs.lt(ms)),
        )
        .add_option(
            filter
                .idempotency_key
                .as_ref()
                .map(|key| deliveries::Column::IdempotencyKey.eq(key.as_str())),
        );
    (condition, (deliveries::Column::CreatedAtMs, Order::Desc))
}

/// The query for one page: `condition`, past `cursor` by the row value
/// `(at, id)` in `order`, at most `limit` rows.
fn page_query(
    condition: Condition,
    (at, order): (deliveries::Column, Order),
    cursor: Option<PageCursor>,
    limit: u64,
) -> Select<deliveries::Entity> {
    let id = deliveries::Column::Id;
    let past = cursor.map(|cursor| {
        let row = Expr::tuple([Expr::col(at), Expr::col(id)]);
        let position = Expr::tuple([Expr::val(cursor.at_ms), Expr::val(cursor.id)]);
        match order {
            Order::Desc => row.lt(position),
            _ => row.gt(position),
        }
    });
    deliveries::Entity::find()
        .filter(condition.add_option(past))
        .order_by(at, order.clone())
        .order_by(id, order)
        .limit(limit)
}

/// A statement PostgreSQL cancelled at [`LISTING_TIMEOUT`], as
/// [`StoreError::ListingTimedOut`].
pub(super) fn timed_out(error: DbErr) -> StoreError {
    let cancelled = match &error {
        DbErr::Query(RuntimeErr::SqlxError(sqlx)) | DbErr::Exec(RuntimeErr::SqlxError(sqlx)) => {
            sqlx.as_database_error()
                .and_then(|database| database.code())
                .is_some_and(|code| code == QUERY_CANCELED)
        }
        _ => false,
    };
    if cancelled {
        StoreError::ListingTimedOut(LISTING_TIMEOUT)
    } else {
        StoreError::Database(error)
    }
}

fn delivery_record(model: deliveries::Model) -> Result<DeliveryRecord, StoreError> {
    Ok(DeliveryRecord {
        id: model.id,
        request: http_request(
            model.method,
            model.url,
            &model.headers,
            model.body,
            model.content_type,
        )?,
        idempotency_key: model.idempotency_key,
        state: model.state.parse()?,
        attempt_count: unsigned(model.attempt_count, "attempt_count")?,
        max_attempts: unsigned(model.max_attempts, "max_attempts")?,
        next_attempt_at_ms: model.next_attempt_at_ms,
        last_status_code: status_code(model.last_status_code)?,
        last_error: model.last_error,
        created_at_ms: model.created_at_ms,
        updated_at_ms: model.updated_at_ms,
        finished_at_ms: model.finished_at_ms,
        deadline_at_ms: model.deadline_at_ms,
        event: match (model.event_id, model.event_type, model.endpoint_id) {
            (Some(event_id), Some(event_type), Some(endpoint_id)) => Some(EventOrigin {
                event_id,
                event_type,
                endpoint_id,
            }),
            _ => None,
        },
        attempts: Vec::new(),
    })
}

fn attempt_record(model: attempts::Model) -> Result<AttemptRecord, StoreError> {
    Ok(AttemptRecord {
        number: unsigned(model.number, "number")?,
        started_at_ms: model.started_at_ms,
        duration_us: model.duration_us,
        status_code: status_code(model.status_code)?,
        error_kind: model.error_kind.map(|kind| kind.parse()).transpose()?,
        error_message: model.error_message,
        response_excerpt: model.response_excerpt.unwrap_or_default().into(),
    })
}
