//! Publishing: an event and one delivery per subscribed endpoint, in one
//! transaction; and sending events again (replay, recovery).
//!
//! Each group of publishes, in one transaction: inserts the events
//! (idempotency rides on a unique index of (tenant, idempotency key) of
//! keyed events, as for deliveries), finds each new event's subscribers
//! (the tenant's enabled endpoints whose subscription matches its type),
//! and inserts their deliveries through the enqueue's own statement, which
//! makes sure each destination has a row and wakes it. An endpoint whose
//! destination is disabled gets no delivery, and the answer says so.
//!
//! A repeated publish (same key, same request) answers the event's first
//! delivery to each endpoint, whatever replays added since.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use sea_orm::{ConnectionTrait, DatabaseTransaction, QueryResult, TransactionTrait, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    Actor, AuditKind, Store, StoreError,
    endpoints::subscribed,
    records::{EventOrigin, NewDelivery},
};
use crate::domain::{Destination, HttpMethod, HttpRequest, TraceContext};

/// Events per `INSERT` (8 values each).
const EVENTS_PER_STATEMENT: usize = 500;

/// Events recovered per transaction.
const RECOVER_BATCH: i64 = 500;

/// An event to publish.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Owning tenant.
    pub tenant_id: String,
    /// Its type, checked.
    pub event_type: String,
    /// The payload, sent byte for byte as each delivery's body.
    pub payload: Bytes,
    /// The payload's content type.
    pub content_type: Option<String>,
    /// Caller's idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// Most attempts each delivery makes.
    pub max_attempts: u32,
    /// The caller's trace context, forwarded on every attempt.
    pub trace: Option<TraceContext>,
}

/// One endpoint's delivery of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointDelivery {
    /// The endpoint.
    pub endpoint_id: Uuid,
    /// Its delivery of the event.
    pub delivery_id: Uuid,
}

/// An endpoint an event matched that got no delivery, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The endpoint.
    pub endpoint_id: Uuid,
    /// Why, for people.
    pub reason: String,
}

/// What a publish stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The event's id.
    pub event_id: Uuid,
    /// False when an earlier publish with the same key stored it.
    pub created: bool,
    /// One delivery per subscribed endpoint, by endpoint id.
    pub deliveries: Vec<EndpointDelivery>,
    /// Subscribed endpoints that got none (their destination disabled).
    pub skipped: Vec<Skipped>,
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// Its id.
    pub id: Uuid,
    /// Its type.
    pub event_type: String,
    /// The payload.
    pub payload: Bytes,
    /// The payload's content type.
    pub content_type: Option<String>,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
    /// When it was published, Unix ms.
    pub created_at_ms: i64,
}

/// A subscriber as fan-out reads it.
#[derive(Debug, Clone)]
struct Subscriber {
    id: Uuid,
    url: String,
    destination: Destination,
    headers: Vec<(String, String)>,
}

const EVENT_COLUMNS: &str = "id, tenant_id, event_type, payload, content_type, idempotency_key, request_hash, created_at_ms";

const INSERT_EVENTS: &str = "\
INSERT INTO events ({columns}) VALUES {rows} \
ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
RETURNING id";

const EVENT_BY_KEY: &str = "\
SELECT id, request_hash FROM events WHERE tenant_id = $1 AND idempotency_key = $2";

const EVENT_DELIVERIES: &str = "\
SELECT endpoint_id, id FROM deliveries WHERE event_id = $1 ORDER BY id";

/// The tenant's enabled endpoints subscribed to type `$2`.
fn subscribers_sql() -> String {
    format!(
        "SELECT e.id, e.url, e.destination, e.host, e.headers FROM endpoints e \
         WHERE e.tenant_id = $1 AND e.enabled AND {} ORDER BY e.id",
        subscribed(2)
    )
}

/// Events with a dead-lettered delivery to endpoint `$2` made at `$3` or
/// later, and no delivery to it that is pending or succeeded.
const FAILED_EVENTS: &str = "\
SELECT DISTINCT d.event_id FROM deliveries d \
WHERE d.tenant_id = $1 AND d.endpoint_id = $2 AND d.state = 'dead_lettered' \
    AND d.created_at_ms >= $3 AND d.event_id IS NOT NULL \
    AND NOT EXISTS ( \
        SELECT 1 FROM deliveries x \
        WHERE x.endpoint_id = d.endpoint_id AND x.event_id = d.event_id \
            AND x.state IN ('pending', 'succeeded')) \
ORDER BY d.event_id {limit}";

impl Store {
    /// Stores `events` and their deliveries with one commit for them all.
    /// Each gets its own result: with an idempotency key already used by
    /// the same request, the existing event with `created = false`; under
    /// a key used for a different request, an error that refuses only
    /// that event. A database failure fails the whole group.
    pub async fn publish_batch(
        &self,
        events: &[NewEvent],
    ) -> Result<Vec<Result<Published, StoreError>>, StoreError> {
        let _turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        let mut results = Vec::with_capacity(events.len());
        for chunk in events.chunks(EVENTS_PER_STATEMENT) {
            results.extend(self.publish_chunk(&txn, chunk).await?);
        }
        txn.commit().await?;
        Ok(results)
    }

    async fn publish_chunk(
        &self,
        txn: &DatabaseTransaction,
        events: &[NewEvent],
    ) -> Result<Vec<Result<Published, StoreError>>, StoreError> {
        let mut values: Vec<Value> = Vec::with_capacity(events.len() * 8);
        let mut rows = Vec::with_capacity(events.len());
        let mut made = Vec::with_capacity(events.len());
        for event in events {
            let id = Uuid::now_v7();
            let hash = request_hash(event);
            let first = values.len() + 1;
            rows.push(format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, {{now}})",
                first,
                first + 1,
                first + 2,
                first + 3,
                first + 4,
                first + 5,
                first + 6
            ));
            values.extend([
                id.into(),
                event.tenant_id.clone().into(),
                event.event_type.clone().into(),
                event.payload.to_vec().into(),
                event.content_type.clone().into(),
                event.idempotency_key.clone().into(),
                hash.clone().into(),
            ]);
            made.push((id, hash));
        }
        let sql = INSERT_EVENTS
            .replace("{columns}", EVENT_COLUMNS)
            .replace("{rows}", &rows.join(", "));
        let created: HashSet<Uuid> = txn
            .query_all_raw(self.statement(&sql, values))
            .await?
            .iter()
            .map(|row| row.try_get_by_index(0))
            .collect::<Result<_, _>>()?;
        // Fan-out of the new events: their subscribers, per tenant and type.
        let mut subscribers: HashMap<(&str, &str), Vec<Subscriber>> = HashMap::new();
        let mut deliveries = Vec::new();
        let mut owners = Vec::new();
        for (position, (event, (id, _))) in events.iter().zip(&made).enumerate() {
            if !created.contains(id) {
                continue;
            }
            let key = (event.tenant_id.as_str(), event.event_type.as_str());
            let found = match subscribers.entry(key) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    entry.insert(self.subscribers(txn, key.0, key.1).await?)
                }
            };
            for subscriber in found.iter() {
                deliveries.push(delivery_of(event, *id, subscriber));
                owners.push((position, subscriber.id));
            }
        }
        let mut published: BTreeMap<usize, Published> = BTreeMap::new();
        let inserted = self.insert_all(txn, &deliveries).await?;
        for ((position, endpoint_id), result) in owners.into_iter().zip(inserted) {
            let entry = published.entry(position).or_insert_with(|| Published {
                event_id: made[position].0,
                created: true,
                deliveries: Vec::new(),
                skipped: Vec::new(),
            });
            match result {
                Ok(enqueued) => entry.deliveries.push(EndpointDelivery {
                    endpoint_id,
                    delivery_id: enqueued.id,
                }),
                Err(StoreError::Database(error)) => return Err(error.into()),
                Err(refused) => entry.skipped.push(Skipped {
                    endpoint_id,
                    reason: refused.to_string(),
                }),
            }
        }
        let mut results = Vec::with_capacity(events.len());
        for (position, (event, (id, hash))) in events.iter().zip(made).enumerate() {
            if created.contains(&id) {
                results.push(Ok(published.remove(&position).unwrap_or(Published {
                    event_id: id,
                    created: true,
                    deliveries: Vec::new(),
                    skipped: Vec::new(),
                })));
                continue;
            }
            match self.existing_event(txn, event, &hash).await {
                Err(StoreError::Database(error)) => return Err(error.into()),
                other => results.push(other),
            }
        }
        Ok(results)
    }

    /// The event `event`'s key already names: the same request answers it
    /// with its first delivery to each endpoint; another is a conflict.
    async fn existing_event(
        &self,
        txn: &DatabaseTransaction,
        event: &NewEvent,
        hash: &str,
    ) -> Result<Published, StoreError> {
        let Some(key) = &event.idempotency_key else {
            return Err(StoreError::Corrupt(
                "an event without idempotency key was not inserted".into(),
            ));
        };
        let find = self.statement(
            EVENT_BY_KEY,
            vec![event.tenant_id.clone().into(), key.clone().into()],
        );
        let row = txn.query_one_raw(find).await?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "idempotency key {key:?} conflicted but no event holds it"
            ))
        })?;
        let existing: Uuid = row.try_get_by_index(0)?;
        let existing_hash: String = row.try_get_by_index(1)?;
        if existing_hash != hash {
            return Err(StoreError::IdempotencyConflict {
                key: key.clone(),
                existing,
            });
        }
        let rows = txn
            .query_all_raw(self.statement(EVENT_DELIVERIES, vec![existing.into()]))
            .await?;
        let mut seen = HashSet::new();
        let mut deliveries = Vec::new();
        for row in &rows {
            let endpoint_id: Uuid = row.try_get_by_index(0)?;
            if seen.insert(endpoint_id) {
                deliveries.push(EndpointDelivery {
                    endpoint_id,
                    delivery_id: row.try_get_by_index(1)?,
                });
            }
        }
        deliveries.sort_by_key(|delivery| delivery.endpoint_id);
        Ok(Published {
            event_id: existing,
            created: false,
            deliveries,
            skipped: Vec::new(),
        })
    }

    /// `tenant_id`'s enabled endpoints subscribed to `event_type`.
    async fn subscribers(
        &self,
        db: &impl ConnectionTrait,
        tenant_id: &str,
        event_type: &str,
    ) -> Result<Vec<Subscriber>, StoreError> {
        let rows = db
            .query_all_raw(self.statement(
                &subscribers_sql(),
                vec![tenant_id.into(), event_type.into()],
            ))
            .await?;
        rows.iter().map(subscriber).collect()
    }

    /// Sends `actor`'s tenant's event `event_id` again: to `endpoint_id`
    /// (whatever it subscribes to, if it is enabled or not), or to every
    /// endpoint subscribed to it now. Each gets a new delivery (a new
    /// `webhook-id`). `None` if there is no such event or endpoint.
    pub async fn replay_event(
        &self,
        actor: &Actor,
        event_id: Uuid,
        endpoint_id: Option<Uuid>,
        max_attempts: u32,
    ) -> Result<Option<Published>, StoreError> {
        let tenant_id = actor.tenant_id.as_str();
        let _turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        let Some(event) = self.event_in(&txn, tenant_id, event_id).await? else {
            txn.rollback().await?;
            return Ok(None);
        };
        let subscribers = match endpoint_id {
            Some(id) => {
                let sql = "SELECT e.id, e.url, e.destination, e.host, e.headers FROM endpoints e \
                    WHERE e.tenant_id = $1 AND e.id = $2";
                let rows = txn
                    .query_all_raw(self.statement(sql, vec![tenant_id.into(), id.into()]))
                    .await?;
                if rows.is_empty() {
                    txn.rollback().await?;
                    return Ok(None);
                }
                rows.iter().map(subscriber).collect::<Result<_, _>>()?
            }
            None => self.subscribers(&txn, tenant_id, &event.event_type).await?,
        };
        let published = self
            .send_again(&txn, tenant_id, &event, &subscribers, max_attempts)
            .await?;
        let details = serde_json::json!({
            "event_id": event_id.to_string(),
            "endpoint_id": endpoint_id.map(|id| id.to_string()),
            "deliveries": published.deliveries.len(),
        });
        self.record_audit(&txn, actor, AuditKind::EventReplayed, details)
            .await?;
        txn.commit().await?;
        Ok(Some(published))
    }

    /// Sends endpoint `endpoint_id` again every event whose delivery to it
    /// made since `since_ms` was dead-lettered and that it has not received
    /// since, each as a new delivery to its URL as it is now; a transaction
    /// per [`RECOVER_BATCH`] events. With `dry_run`, only counts them.
    /// `None` if there is no such endpoint.
    pub async fn recover_endpoint(
        &self,
        actor: &Actor,
        endpoint_id: Uuid,
        since_ms: i64,
        dry_run: bool,
        max_attempts: u32,
    ) -> Result<Option<u64>, StoreError> {
        let tenant_id = actor.tenant_id.as_str();
        let select = "SELECT e.id, e.url, e.destination, e.host, e.headers FROM endpoints e \
            WHERE e.tenant_id = $1 AND e.id = $2";
        let rows = self
            .db
            .query_all_raw(self.statement(select, vec![tenant_id.into(), endpoint_id.into()]))
            .await?;
        let Some(endpoint) = rows.first().map(subscriber).transpose()? else {
            return Ok(None);
        };
        let key: Vec<Value> = vec![tenant_id.into(), endpoint_id.into(), since_ms.into()];
        if dry_run {
            let sql = format!(
                "SELECT CAST(count(*) AS BIGINT) FROM ({}) failed",
                FAILED_EVENTS.replace("{limit}", "")
            );
            let row = self
                .db
                .query_one_raw(self.statement(&sql, key))
                .await?
                .ok_or_else(|| StoreError::Corrupt("a count returned no row".into()))?;
            let count: i64 = row.try_get_by_index(0)?;
            return Ok(Some(u64::try_from(count).unwrap_or(0)));
        }
        let mut recovered = 0u64;
        loop {
            let turn = self.write_turn().await;
            let txn = self.db.begin().await?;
            let mut values = key.clone();
            values.push(RECOVER_BATCH.into());
            let sql = FAILED_EVENTS.replace("{limit}", "LIMIT $4");
            let ids: Vec<Uuid> = txn
                .query_all_raw(self.statement(&sql, values))
                .await?
                .iter()
                .map(|row| row.try_get_by_index(0))
                .collect::<Result<_, _>>()?;
            let mut sent = 0u64;
            for id in &ids {
                if let Some(event) = self.event_in(&txn, tenant_id, *id).await? {
                    let published = self
                        .send_again(
                            &txn,
                            tenant_id,
                            &event,
                            std::slice::from_ref(&endpoint),
                            max_attempts,
                        )
                        .await?;
                    sent += published.deliveries.len() as u64;
                }
            }
            let details = serde_json::json!({
                "endpoint_id": endpoint_id.to_string(),
                "since_ms": since_ms,
                "deliveries": sent,
            });
            if sent > 0 {
                self.record_audit(&txn, actor, AuditKind::EndpointRecovered, details)
                    .await?;
            }
            txn.commit().await?;
            drop(turn);
            recovered += sent;
            // A batch whose events all went to a disabled destination sends
            // nothing and would be found again: stop there too.
            if i64::try_from(ids.len()).unwrap_or(i64::MAX) < RECOVER_BATCH || sent == 0 {
                return Ok(Some(recovered));
            }
        }
    }

    /// New deliveries of `event` to `subscribers`.
    async fn send_again(
        &self,
        txn: &DatabaseTransaction,
        tenant_id: &str,
        event: &EventRecord,
        subscribers: &[Subscriber],
        max_attempts: u32,
    ) -> Result<Published, StoreError> {
        let new = NewEvent {
            tenant_id: tenant_id.to_owned(),
            event_type: event.event_type.clone(),
            payload: event.payload.clone(),
            content_type: event.content_type.clone(),
            idempotency_key: None,
            max_attempts,
            trace: None,
        };
        let deliveries: Vec<NewDelivery> = subscribers
            .iter()
            .map(|subscriber| delivery_of(&new, event.id, subscriber))
            .collect();
        let mut published = Published {
            event_id: event.id,
            created: true,
            deliveries: Vec::new(),
            skipped: Vec::new(),
        };
        let inserted = self.insert_all(txn, &deliveries).await?;
        for (subscriber, result) in subscribers.iter().zip(inserted) {
            match result {
                Ok(enqueued) => published.deliveries.push(EndpointDelivery {
                    endpoint_id: subscriber.id,
                    delivery_id: enqueued.id,
                }),
                Err(StoreError::Database(error)) => return Err(error.into()),
                Err(refused) => published.skipped.push(Skipped {
                    endpoint_id: subscriber.id,
                    reason: refused.to_string(),
                }),
            }
        }
        Ok(published)
    }

    /// `tenant_id`'s event `id`, through `db`.
    pub(super) async fn event_in(
        &self,
        db: &impl ConnectionTrait,
        tenant_id: &str,
        id: Uuid,
    ) -> Result<Option<EventRecord>, StoreError> {
        let sql = "SELECT id, event_type, payload, content_type, idempotency_key, created_at_ms \
            FROM events WHERE tenant_id = $1 AND id = $2";
        db.query_one_raw(self.statement(sql, vec![tenant_id.into(), id.into()]))
            .await?
            .as_ref()
            .map(event_record)
            .transpose()
    }
}

/// A row of `id, event_type, payload, content_type, idempotency_key,
/// created_at_ms`.
pub(super) fn event_record(row: &QueryResult) -> Result<EventRecord, StoreError> {
    let payload: Vec<u8> = row.try_get_by_index(2)?;
    Ok(EventRecord {
        id: row.try_get_by_index(0)?,
        event_type: row.try_get_by_index(1)?,
        payload: payload.into(),
        content_type: row.try_get_by_index(3)?,
        idempotency_key: row.try_get_by_index(4)?,
        created_at_ms: row.try_get_by_index(5)?,
    })
}

/// A row of `id, url, destination, host, headers`.
fn subscriber(row: &QueryResult) -> Result<Subscriber, StoreError> {
    let headers: String = row.try_get_by_index(4)?;
    Ok(Subscriber {
        id: row.try_get_by_index(0)?,
        url: row.try_get_by_index(1)?,
        destination: Destination {
            key: row.try_get_by_index(2)?,
            host: row.try_get_by_index(3)?,
        },
        headers: serde_json::from_str(&headers)
            .map_err(|error| StoreError::Corrupt(format!("endpoint headers: {error}")))?,
    })
}

/// The delivery of `event` (stored as `event_id`) to `subscriber`.
fn delivery_of(event: &NewEvent, event_id: Uuid, subscriber: &Subscriber) -> NewDelivery {
    NewDelivery {
        tenant_id: event.tenant_id.clone(),
        request: HttpRequest {
            method: HttpMethod::Post,
            url: subscriber.url.clone(),
            headers: subscriber.headers.clone(),
            body: event.payload.clone(),
            content_type: event.content_type.clone(),
        },
        destination: subscriber.destination.clone(),
        idempotency_key: None,
        max_attempts: event.max_attempts,
        max_attempts_chosen: false,
        not_before_ms: None,
        deadline_ms: None,
        trace: event.trace.clone(),
        event: Some(EventOrigin {
            event_id,
            event_type: event.event_type.clone(),
            endpoint_id: subscriber.id,
        }),
    }
}

/// SHA-256 over what defines a publish as the caller sent it,
/// length-prefixed so that no two different requests share an encoding.
fn request_hash(event: &NewEvent) -> String {
    fn field(hasher: &mut Sha256, bytes: &[u8]) {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    }
    let mut hasher = Sha256::new();
    field(&mut hasher, event.event_type.as_bytes());
    field(
        &mut hasher,
        event.content_type.as_deref().unwrap_or_default().as_bytes(),
    );
    hasher.update([u8::from(event.content_type.is_some())]);
    field(&mut hasher, &event.payload);
    format!("{:x}", hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> NewEvent {
        NewEvent {
            tenant_id: "default".into(),
            event_type: "order.created".into(),
            payload: Bytes::from_static(b"{}"),
            content_type: Some("application/json".into()),
            idempotency_key: Some("k".into()),
            max_attempts: 5,
            trace: None,
        }
    }

    #[test]
    fn hash_tells_publishes_apart() {
        let base = request_hash(&event());
        assert_eq!(base, request_hash(&event()));
        let mut other = event();
        other.event_type = "order.created2".into();
        assert_ne!(base, request_hash(&other));
        let mut other = event();
        other.payload = Bytes::from_static(b"{ }");
        assert_ne!(base, request_hash(&other));
        let mut other = event();
        other.content_type = None;
        assert_ne!(base, request_hash(&other));
        let mut other = event();
        other.max_attempts = 9;
        assert_eq!(
            base,
            request_hash(&other),
            "the server's default attempts are not the caller's request"
        );
    }
}
