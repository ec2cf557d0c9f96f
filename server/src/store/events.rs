//! Reading events: one with its deliveries, and a tenant's events newest
//! first, by type and time.

use sea_orm::{ConnectionTrait, Value};
use uuid::Uuid;

use super::{
    Store, StoreError,
    publish::{EventRecord, event_record},
    status_code, unsigned,
};
use crate::domain::DeliveryState;

/// Most deliveries [`Store::get_event`] returns with an event.
pub const MAX_EVENT_DELIVERIES: u64 = 1_000;

/// One delivery of an event, as `GetEvent` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDelivery {
    /// The delivery.
    pub id: Uuid,
    /// The endpoint it goes to.
    pub endpoint_id: Uuid,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempt_count: u32,
    /// The last attempt's status code, if it got a response.
    pub last_status_code: Option<u16>,
    /// When it was made, Unix ms (a replay's is later than the event's).
    pub created_at_ms: i64,
}

/// Which events a listing shows: newest first, before `before` (the last
/// row of the previous page), of one type, within a time range.
#[derive(Debug, Clone, Default)]
pub struct EventPage {
    /// `(created_at_ms, id)` of the previous page's last event.
    pub before: Option<(i64, Uuid)>,
    /// Only this type.
    pub event_type: Option<String>,
    /// Only events published at or after this, Unix ms.
    pub created_after_ms: Option<i64>,
    /// Only events published before this, Unix ms.
    pub created_before_ms: Option<i64>,
    /// Most events to return.
    pub limit: u64,
}

impl Store {
    /// `tenant_id`'s event `id` with its first [`MAX_EVENT_DELIVERIES`]
    /// deliveries, oldest first, and whether there are more.
    pub async fn get_event(
        &self,
        tenant_id: &str,
        id: Uuid,
    ) -> Result<Option<(EventRecord, Vec<EventDelivery>, bool)>, StoreError> {
        let sql = "SELECT id, endpoint_id, state, attempt_count, last_status_code, created_at_ms \
            FROM deliveries WHERE event_id = $1 AND tenant_id = $2 ORDER BY id LIMIT $3";
        let limit = i64::try_from(MAX_EVENT_DELIVERIES + 1).unwrap_or(i64::MAX);
        let read = self
            .on_read_pool(async |txn| {
                let Some(event) = self.event_in(txn, tenant_id, id).await? else {
                    return Ok(None);
                };
                let values = vec![id.into(), tenant_id.into(), limit.into()];
                let rows = txn.query_all_raw(self.statement(sql, values)).await?;
                Ok(Some((event, rows)))
            })
            .await?;
        let Some((event, rows)) = read else {
            return Ok(None);
        };
        let mut deliveries = rows
            .iter()
            .map(|row| {
                Ok(EventDelivery {
                    id: row.try_get_by_index(0)?,
                    endpoint_id: row.try_get_by_index(1)?,
                    state: row.try_get_by_index::<String>(2)?.parse()?,
                    attempt_count: unsigned(row.try_get_by_index(3)?, "attempt_count")?,
                    last_status_code: status_code(row.try_get_by_index(4)?)?,
                    created_at_ms: row.try_get_by_index(5)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let more = deliveries.len() as u64 > MAX_EVENT_DELIVERIES;
        deliveries.truncate(usize::try_from(MAX_EVENT_DELIVERIES).unwrap_or(usize::MAX));
        Ok(Some((event, deliveries, more)))
    }

    /// `tenant_id`'s events as `page` selects them, newest first.
    pub async fn list_events(
        &self,
        tenant_id: &str,
        page: &EventPage,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let mut values: Vec<Value> = vec![tenant_id.into()];
        let mut filter = String::new();
        let mut add = |condition: &str, value: Value| {
            values.push(value);
            filter.push_str(&format!(" AND {condition}${}", values.len()));
        };
        if let Some(event_type) = &page.event_type {
            add("event_type = ", event_type.clone().into());
        }
        if let Some(after) = page.created_after_ms {
            add("created_at_ms >= ", after.into());
        }
        if let Some(before) = page.created_before_ms {
            add("created_at_ms < ", before.into());
        }
        if let Some((at, id)) = page.before {
            values.push(at.into());
            values.push(id.into());
            filter.push_str(&format!(
                " AND (created_at_ms, id) < (${}, ${})",
                values.len() - 1,
                values.len()
            ));
        }
        values.push(i64::try_from(page.limit).unwrap_or(i64::MAX).into());
        let sql = format!(
            "SELECT id, event_type, payload, content_type, idempotency_key, created_at_ms \
             FROM events WHERE tenant_id = $1{filter} \
             ORDER BY created_at_ms DESC, id DESC LIMIT ${}",
            values.len()
        );
        let rows = self
            .on_read_pool(async |txn| Ok(txn.query_all_raw(self.statement(&sql, values)).await?))
            .await?;
        rows.iter().map(event_record).collect()
    }
}
