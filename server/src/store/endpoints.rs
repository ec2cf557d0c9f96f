//! Endpoints: a tenant's registered receivers, what they subscribe to and
//! their signing secrets. Deleting one cancels its pending deliveries, with
//! their outcomes, in the same transaction.

use sea_orm::{ConnectionTrait, DatabaseTransaction, QueryResult, TransactionTrait, Value};
use uuid::Uuid;

use super::{
    Actor, AuditKind, Channel, Store, StoreError,
    destinations::{NewDestination, Wake},
    records::{DestinationRef, OutcomeRecord},
    unsigned,
};
use crate::{
    domain::{Destination, OutcomeKind},
    endpoints::{Pattern, Subscription},
    secrets::Sealed,
};

/// Pending deliveries cancelled per statement when an endpoint is deleted.
const CANCEL_BATCH: i64 = 1_000;

/// An endpoint to create.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    /// Its id, made by the caller so the secret can be sealed for it.
    pub id: Uuid,
    /// The URL deliveries go to, checked.
    pub url: String,
    /// The URL's destination.
    pub destination: Destination,
    /// For people.
    pub description: String,
    /// Headers added to every delivery, checked.
    pub headers: Vec<(String, String)>,
    /// The event types it wants.
    pub subscription: Subscription,
    /// Whether publishes reach it.
    pub enabled: bool,
    /// Its signing secret, sealed for it.
    pub secret: Sealed,
}

/// What an update changes; `None` keeps the field.
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    /// A new URL with its destination.
    pub url: Option<(String, Destination)>,
    /// A new description.
    pub description: Option<String>,
    /// New headers to add (replacing the old ones).
    pub headers: Option<Vec<(String, String)>>,
    /// A new subscription.
    pub subscription: Option<Subscription>,
    /// Enabled or disabled.
    pub enabled: Option<bool>,
}

/// One endpoint as stored.
#[derive(Debug, Clone)]
pub struct EndpointRecord {
    /// Its id.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: String,
    /// Where its deliveries go.
    pub url: String,
    /// Its URL's destination (`scheme://host:port`), whose policy and
    /// health its deliveries share.
    pub destination: String,
    /// Its URL's host.
    pub host: String,
    /// For people.
    pub description: String,
    /// Headers added to its deliveries.
    pub headers: Vec<(String, String)>,
    /// What it subscribes to.
    pub subscription: Subscription,
    /// Whether publishes reach it.
    pub enabled: bool,
    /// While a rotation's grace window lasts, when it ends (Unix ms): both
    /// the old and the new secret sign until then.
    pub previous_secret_until_ms: Option<i64>,
    /// When it was created, Unix ms.
    pub created_at_ms: i64,
    /// When it last changed, Unix ms.
    pub updated_at_ms: i64,
}

/// Which endpoints a listing shows: in id order after `after`, at most
/// `limit`, optionally only enabled or disabled ones, or only those an
/// event of a type would reach.
#[derive(Debug, Clone, Default)]
pub struct EndpointPage {
    /// The last id of the previous page.
    pub after: Option<Uuid>,
    /// Most endpoints to return.
    pub limit: u64,
    /// Only enabled (`true`) or disabled (`false`) ones.
    pub enabled: Option<bool>,
    /// Only those subscribed to this event type.
    pub event_type: Option<String>,
}

/// The columns [`endpoint`] reads, on `endpoints e`.
const COLUMNS: &str = "e.id, e.tenant_id, e.url, e.destination, e.description, e.headers, \
    e.all_event_types, e.enabled, \
    CASE WHEN e.previous_secret_expires_at_ms > {now} THEN e.previous_secret_expires_at_ms END, \
    e.created_at_ms, e.updated_at_ms, e.host";

/// An endpoint of tenant `$1` subscribed to the event type `${n}`.
pub(super) fn subscribed(n: usize) -> String {
    format!(
        "(e.all_event_types OR EXISTS ( \
            SELECT 1 FROM endpoint_event_types s \
            WHERE s.endpoint_id = e.id \
                AND (s.pattern = ${n} \
                    OR (s.prefix AND substr(${n}, 1, length(s.pattern)) = s.pattern))))"
    )
}

const INSERT: &str = "\
INSERT INTO endpoints (id, tenant_id, url, destination, host, description, headers, \
    all_event_types, enabled, signing_secret, created_at_ms, updated_at_ms) \
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, {now}, {now})";

const INSERT_PATTERN: &str = "\
INSERT INTO endpoint_event_types (endpoint_id, tenant_id, pattern, prefix) VALUES ($1, $2, $3, $4)";

const DELETE_PATTERNS: &str = "DELETE FROM endpoint_event_types WHERE endpoint_id = $1";

const PATTERNS: &str = "\
SELECT endpoint_id, pattern, prefix FROM endpoint_event_types WHERE endpoint_id IN ({ids})";

const SIGNING_SECRETS: &str = "\
SELECT signing_secret, \
    CASE WHEN previous_secret_expires_at_ms > {now} THEN previous_signing_secret END \
FROM endpoints WHERE tenant_id = $1 AND id = $2";

const ROTATE_SECRET: &str = "\
UPDATE endpoints SET \
    previous_signing_secret = signing_secret, \
    previous_secret_expires_at_ms = {now} + $4, \
    signing_secret = $3, \
    updated_at_ms = {now} \
WHERE tenant_id = $1 AND id = $2";

/// Cancels a batch of a deleted endpoint's pending deliveries; as a
/// single cancel does, it clears their leases, so an attempt in flight
/// finds its lease lost and its result is discarded.
const CANCEL_PENDING: &str = "\
UPDATE deliveries SET \
    state = 'cancelled', \
    next_attempt_at_ms = NULL, \
    lease_token = NULL, \
    updated_at_ms = {now}, \
    finished_at_ms = {now} \
WHERE id IN ( \
    SELECT id FROM deliveries WHERE endpoint_id = $1 AND tenant_id = $2 AND state = 'pending' \
    LIMIT $3 \
) \
RETURNING id, attempt_count, updated_at_ms, host, destination";

impl Store {
    /// Creates `actor`'s tenant's endpoint `new`, making its destination's
    /// row if it has none.
    pub async fn create_endpoint(
        &self,
        actor: &Actor,
        new: &NewEndpoint,
    ) -> Result<EndpointRecord, StoreError> {
        let tenant_id = actor.tenant_id.as_str();
        let _turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        self.ensure_endpoint_destination(&txn, tenant_id, &new.destination)
            .await?;
        let values: Vec<Value> = vec![
            new.id.into(),
            tenant_id.into(),
            new.url.clone().into(),
            new.destination.key.clone().into(),
            new.destination.host.clone().into(),
            new.description.clone().into(),
            headers_json(&new.headers)?.into(),
            new.subscription.is_all().into(),
            new.enabled.into(),
            new.secret.as_stored().into(),
        ];
        txn.execute_raw(self.statement(INSERT, values)).await?;
        self.write_patterns(&txn, tenant_id, new.id, &new.subscription)
            .await?;
        let details = serde_json::json!({ "endpoint_id": new.id.to_string(), "url": new.url });
        self.record_audit(&txn, actor, AuditKind::EndpointCreated, details)
            .await?;
        let record = self
            .endpoint_in(&txn, tenant_id, new.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("an endpoint just created is gone".into()))?;
        txn.commit().await?;
        Ok(record)
    }

    /// `tenant_id`'s endpoint `id`, if it has one.
    pub async fn get_endpoint(
        &self,
        tenant_id: &str,
        id: Uuid,
    ) -> Result<Option<EndpointRecord>, StoreError> {
        self.on_read_pool(async |txn| self.endpoint_in(txn, tenant_id, id).await)
            .await
    }

    /// `tenant_id`'s endpoints as `page` selects them, in id order.
    pub async fn list_endpoints(
        &self,
        tenant_id: &str,
        page: &EndpointPage,
    ) -> Result<Vec<EndpointRecord>, StoreError> {
        let mut values: Vec<Value> = vec![tenant_id.into()];
        let mut filter = String::new();
        if let Some(after) = page.after {
            values.push(after.into());
            filter.push_str(&format!(" AND e.id > ${}", values.len()));
        }
        if let Some(enabled) = page.enabled {
            values.push(enabled.into());
            filter.push_str(&format!(" AND e.enabled = ${}", values.len()));
        }
        if let Some(event_type) = &page.event_type {
            values.push(event_type.clone().into());
            filter.push_str(&format!(" AND {}", subscribed(values.len())));
        }
        values.push(i64::try_from(page.limit).unwrap_or(i64::MAX).into());
        let sql = format!(
            "SELECT {COLUMNS} FROM endpoints e WHERE e.tenant_id = $1{filter} \
             ORDER BY e.id LIMIT ${}",
            values.len()
        );
        self.on_read_pool(async |txn| {
            let rows = txn.query_all_raw(self.statement(&sql, values)).await?;
            self.endpoints_from(txn, &rows).await
        })
        .await
    }

    /// Applies `change` to `actor`'s tenant's endpoint `id`; `None` if it
    /// has none. A new URL or new headers apply to its pending deliveries
    /// too (their next attempt goes to the new URL, with the new headers),
    /// and the new URL's destination is woken for them.
    pub async fn update_endpoint(
        &self,
        actor: &Actor,
        id: Uuid,
        change: &EndpointChange,
    ) -> Result<Option<EndpointRecord>, StoreError> {
        let tenant_id = actor.tenant_id.as_str();
        let _turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        let mut sets = Vec::new();
        let mut values: Vec<Value> = vec![tenant_id.into(), id.into()];
        let mut set = |column: &str, value: Value| {
            values.push(value);
            sets.push(format!("{column} = ${}", values.len()));
        };
        if let Some((url, destination)) = &change.url {
            set("url", url.clone().into());
            set("destination", destination.key.clone().into());
            set("host", destination.host.clone().into());
        }
        if let Some(description) = &change.description {
            set("description", description.clone().into());
        }
        if let Some(headers) = &change.headers {
            set("headers", headers_json(headers)?.into());
        }
        if let Some(subscription) = &change.subscription {
            set("all_event_types", subscription.is_all().into());
        }
        if let Some(enabled) = change.enabled {
            set("enabled", enabled.into());
        }
        sets.push("updated_at_ms = {now}".to_owned());
        let sql = format!(
            "UPDATE endpoints SET {} WHERE tenant_id = $1 AND id = $2",
            sets.join(", ")
        );
        let updated = txn.execute_raw(self.statement(&sql, values)).await?;
        if updated.rows_affected() == 0 {
            txn.rollback().await?;
            return Ok(None);
        }
        if let Some((_, destination)) = &change.url {
            self.ensure_endpoint_destination(&txn, tenant_id, destination)
                .await?;
        }
        self.follow_endpoint(&txn, tenant_id, id, change).await?;
        if let Some(subscription) = &change.subscription {
            txn.execute_raw(self.statement(DELETE_PATTERNS, vec![id.into()]))
                .await?;
            self.write_patterns(&txn, tenant_id, id, subscription)
                .await?;
        }
        let details = serde_json::json!({
            "endpoint_id": id.to_string(),
            "url": change.url.as_ref().map(|(url, _)| url),
            "enabled": change.enabled,
            "event_types": change.subscription.as_ref().map(|s| {
                s.patterns().iter().map(ToString::to_string).collect::<Vec<_>>()
            }),
        });
        self.record_audit(&txn, actor, AuditKind::EndpointUpdated, details)
            .await?;
        let record = self.endpoint_in(&txn, tenant_id, id).await?;
        txn.commit().await?;
        Ok(record)
    }

    /// Gives `id`'s pending deliveries the endpoint's new URL (and
    /// destination) and headers, if they changed. One in flight finishes
    /// at the old URL; its retries go to the new one.
    async fn follow_endpoint(
        &self,
        txn: &DatabaseTransaction,
        tenant_id: &str,
        id: Uuid,
        change: &EndpointChange,
    ) -> Result<(), StoreError> {
        let mut values: Vec<Value> = vec![tenant_id.into(), id.into()];
        let mut sets = Vec::new();
        if let Some((url, destination)) = &change.url {
            for (column, value) in [
                ("url", url.clone()),
                ("destination", destination.key.clone()),
                ("host", destination.host.clone()),
            ] {
                values.push(value.into());
                sets.push(format!("{column} = ${}", values.len()));
            }
        }
        if let Some(headers) = &change.headers {
            values.push(headers_json(headers)?.into());
            sets.push(format!("headers = ${}", values.len()));
        }
        if sets.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE deliveries SET {}, updated_at_ms = {{now}} \
             WHERE tenant_id = $1 AND endpoint_id = $2 AND state = 'pending'",
            sets.join(", ")
        );
        let moved = txn.execute_raw(self.statement(&sql, values)).await?;
        if let Some((_, destination)) = &change.url
            && moved.rows_affected() > 0
        {
            let wake = Wake {
                destination: DestinationRef {
                    tenant_id: tenant_id.to_owned(),
                    destination: destination.key.clone(),
                },
                at_ms: None,
                after: std::time::Duration::ZERO,
            };
            self.wake(txn, &[wake]).await?;
        }
        Ok(())
    }

    /// Deletes `actor`'s tenant's endpoint `id` and cancels its pending
    /// deliveries, each with its CANCELLED outcome, in one transaction;
    /// returns the outcomes, or `None` if there is no such endpoint.
    /// Finished deliveries stay, for their history.
    pub async fn delete_endpoint(
        &self,
        actor: &Actor,
        id: Uuid,
    ) -> Result<Option<Vec<OutcomeRecord>>, StoreError> {
        let tenant_id = actor.tenant_id.as_str();
        let _turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        txn.execute_raw(self.statement(DELETE_PATTERNS, vec![id.into()]))
            .await?;
        let deleted = txn
            .execute_raw(self.statement(
                "DELETE FROM endpoints WHERE tenant_id = $1 AND id = $2",
                vec![tenant_id.into(), id.into()],
            ))
            .await?;
        if deleted.rows_affected() == 0 {
            txn.rollback().await?;
            return Ok(None);
        }
        let mut outcomes = Vec::new();
        loop {
            let values: Vec<Value> = vec![id.into(), tenant_id.into(), CANCEL_BATCH.into()];
            let rows = txn
                .query_all_raw(self.statement(CANCEL_PENDING, values))
                .await?;
            let batch = rows
                .iter()
                .map(|row| cancelled(tenant_id, row))
                .collect::<Result<Vec<_>, _>>()?;
            let done = i64::try_from(batch.len()).unwrap_or(i64::MAX) < CANCEL_BATCH;
            outcomes.extend(self.record_outcomes(&txn, batch).await?);
            if done {
                break;
            }
        }
        let details = serde_json::json!({
            "endpoint_id": id.to_string(),
            "cancelled": outcomes.len(),
        });
        self.record_audit(&txn, actor, AuditKind::EndpointDeleted, details)
            .await?;
        // Replicas drop its cached signing secrets.
        self.announce_in(&txn, Channel::Credentials).await?;
        txn.commit().await?;
        Ok(Some(outcomes))
    }

    /// Replaces `actor`'s tenant's endpoint `id`'s signing secret with
    /// `secret`; the old one keeps signing for `grace_ms`. Every replica is
    /// told. `None` if there is no such endpoint.
    pub async fn rotate_endpoint_secret(
        &self,
        actor: &Actor,
        id: Uuid,
        secret: &Sealed,
        grace_ms: i64,
    ) -> Result<Option<EndpointRecord>, StoreError> {
        let tenant_id = actor.tenant_id.as_str();
        let _turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        let values: Vec<Value> = vec![
            tenant_id.into(),
            id.into(),
            secret.as_stored().into(),
            grace_ms.into(),
        ];
        let rotated = txn
            .execute_raw(self.statement(ROTATE_SECRET, values))
            .await?;
        if rotated.rows_affected() == 0 {
            txn.rollback().await?;
            return Ok(None);
        }
        let details = serde_json::json!({ "endpoint_id": id.to_string(), "grace_ms": grace_ms });
        self.record_audit(&txn, actor, AuditKind::EndpointSecretRotated, details)
            .await?;
        self.announce_in(&txn, Channel::Credentials).await?;
        let record = self.endpoint_in(&txn, tenant_id, id).await?;
        txn.commit().await?;
        Ok(record)
    }

    /// The sealed secrets that sign `tenant_id`'s endpoint `id`'s
    /// deliveries now, current first; `None` if the endpoint is gone.
    pub async fn endpoint_signing_secrets(
        &self,
        tenant_id: &str,
        id: Uuid,
    ) -> Result<Option<Vec<Sealed>>, StoreError> {
        let Some(row) = self
            .db
            .query_one_raw(self.statement(SIGNING_SECRETS, vec![tenant_id.into(), id.into()]))
            .await?
        else {
            return Ok(None);
        };
        let current: String = row.try_get_by_index(0)?;
        let previous: Option<String> = row.try_get_by_index(1)?;
        Ok(Some(
            std::iter::once(current)
                .chain(previous)
                .map(Sealed::from_stored)
                .collect(),
        ))
    }

    /// The endpoint's row, through `db`.
    async fn endpoint_in(
        &self,
        db: &impl ConnectionTrait,
        tenant_id: &str,
        id: Uuid,
    ) -> Result<Option<EndpointRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM endpoints e WHERE e.tenant_id = $1 AND e.id = $2");
        let rows = db
            .query_all_raw(self.statement(&sql, vec![tenant_id.into(), id.into()]))
            .await?;
        Ok(self.endpoints_from(db, &rows).await?.pop())
    }

    /// `rows` of [`COLUMNS`] as records, with their patterns.
    async fn endpoints_from(
        &self,
        db: &impl ConnectionTrait,
        rows: &[QueryResult],
    ) -> Result<Vec<EndpointRecord>, StoreError> {
        let mut records = rows
            .iter()
            .map(endpoint)
            .collect::<Result<Vec<_>, StoreError>>()?;
        let partial: Vec<Uuid> = records
            .iter()
            .filter(|(_, all)| !all)
            .map(|(record, _)| record.id)
            .collect();
        if !partial.is_empty() {
            let ids = (1..=partial.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let values = partial.into_iter().map(Value::from).collect();
            let rows = db
                .query_all_raw(self.statement(&PATTERNS.replace("{ids}", &ids), values))
                .await?;
            let mut patterns: std::collections::HashMap<Uuid, Vec<Pattern>> =
                std::collections::HashMap::new();
            for row in &rows {
                patterns
                    .entry(row.try_get_by_index(0)?)
                    .or_default()
                    .push(Pattern::from_stored(
                        row.try_get_by_index(1)?,
                        row.try_get_by_index(2)?,
                    ));
            }
            for (record, all) in &mut records {
                if !*all {
                    record.subscription = Subscription::from_patterns(
                        patterns.remove(&record.id).unwrap_or_default(),
                    );
                }
            }
        }
        Ok(records.into_iter().map(|(record, _)| record).collect())
    }

    /// Stores `subscription`'s patterns for endpoint `id`.
    async fn write_patterns(
        &self,
        txn: &DatabaseTransaction,
        tenant_id: &str,
        id: Uuid,
        subscription: &Subscription,
    ) -> Result<(), StoreError> {
        for pattern in subscription.patterns() {
            let (text, prefix) = pattern.stored();
            let values: Vec<Value> = vec![id.into(), tenant_id.into(), text.into(), prefix.into()];
            txn.execute_raw(self.statement(INSERT_PATTERN, values))
                .await?;
        }
        Ok(())
    }

    /// Makes the row of an endpoint's destination, so its policy can be set
    /// and its health shown before its first delivery.
    async fn ensure_endpoint_destination(
        &self,
        txn: &DatabaseTransaction,
        tenant_id: &str,
        destination: &Destination,
    ) -> Result<(), StoreError> {
        let new = NewDestination {
            destination: DestinationRef {
                tenant_id: tenant_id.to_owned(),
                destination: destination.key.clone(),
            },
            host: destination.host.clone(),
            due_ms: None,
        };
        self.ensure_destinations(txn, &[new]).await
    }
}

/// Headers as stored: JSON pairs, as a delivery's.
pub(super) fn headers_json(headers: &[(String, String)]) -> Result<String, StoreError> {
    serde_json::to_string(headers)
        .map_err(|error| StoreError::Corrupt(format!("headers do not serialize: {error}")))
}

/// One row of [`COLUMNS`], and whether it takes every event type (its
/// patterns are read next when it does not).
fn endpoint(row: &QueryResult) -> Result<(EndpointRecord, bool), StoreError> {
    let headers: String = row.try_get_by_index(5)?;
    let all: bool = row.try_get_by_index(6)?;
    Ok((
        EndpointRecord {
            id: row.try_get_by_index(0)?,
            tenant_id: row.try_get_by_index(1)?,
            url: row.try_get_by_index(2)?,
            destination: row.try_get_by_index(3)?,
            description: row.try_get_by_index(4)?,
            headers: serde_json::from_str(&headers)
                .map_err(|error| StoreError::Corrupt(format!("endpoint headers: {error}")))?,
            subscription: Subscription::all(),
            enabled: row.try_get_by_index(7)?,
            previous_secret_until_ms: row.try_get_by_index(8)?,
            created_at_ms: row.try_get_by_index(9)?,
            updated_at_ms: row.try_get_by_index(10)?,
            host: row.try_get_by_index(11)?,
        },
        all,
    ))
}

/// The CANCELLED outcome of one row of [`CANCEL_PENDING`].
fn cancelled(tenant_id: &str, row: &QueryResult) -> Result<OutcomeRecord, StoreError> {
    Ok(OutcomeRecord {
        sequence: 0,
        tenant_id: tenant_id.to_owned(),
        delivery_id: Some(row.try_get_by_index(0)?),
        host: row.try_get_by_index(3)?,
        destination: row.try_get_by_index(4)?,
        kind: OutcomeKind::Cancelled,
        attempt_number: unsigned(row.try_get_by_index(1)?, "attempt_count")?,
        status_code: None,
        error_kind: None,
        error_message: Some("its endpoint was deleted".into()),
        next_attempt_at_ms: None,
        created_at_ms: row.try_get_by_index(2)?,
        endpoint_id: None,
        event_type: None,
    })
}
