//! Enqueue: multi-row inserts, up to [`ROWS_PER_STATEMENT`] deliveries per
//! statement, with their destinations.
//!
//! Each group of enqueues, in one transaction (on PostgreSQL, one
//! statement for up to [`ROWS_PER_STATEMENT`]): makes sure every
//! destination has a row, wakes the destinations parked with nothing due,
//! and inserts the deliveries, except those bound for a disabled
//! destination, which are refused.
//!
//! Idempotency rides on a unique index of (tenant, idempotency key) that
//! holds keyed deliveries only: when two enqueues with the same key race,
//! the database lets one insert win and the other finds the winner's row.
//! A hash of the request tells "the same request again" (answer the
//! existing id) from "a different request under a used key" (refuse). Ids
//! are made here, so a row whose id comes back was created; one that does
//! not was skipped for its key, or for its destination.

use std::collections::{BTreeMap, HashSet};

use sea_orm::{ConnectionTrait, TransactionTrait, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    Dialect, Store, StoreError,
    destinations::{NewDestination, Wake},
    records::{DestinationRef, Enqueued, NewDelivery},
};

/// Deliveries per `INSERT` (19 values each, well under either backend's
/// limit on bound values).
const ROWS_PER_STATEMENT: usize = 500;

/// The columns of a delivery row, in [`row`]'s order.
const COLUMNS: &str = "id, tenant_id, url, destination, host, method, headers, body, content_type, \
    idempotency_key, request_hash, state, attempt_count, max_attempts, attempt_budget, \
    deadline_at_ms, next_attempt_at_ms, created_at_ms, updated_at_ms, traceparent, tracestate, \
    event_id, event_type, endpoint_id";

/// Inserts the rows of `{rows}` whose destination is not disabled.
const INSERT: &str = "\
WITH v ({columns}) AS (VALUES {rows}) \
INSERT INTO deliveries ({columns}) \
SELECT * FROM v \
WHERE NOT EXISTS ( \
    SELECT 1 FROM destinations d \
    WHERE d.tenant_id = v.tenant_id AND d.destination = v.destination AND d.state = 'disabled' \
) \
ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
RETURNING id";

const FIND_BY_KEY: &str = "\
SELECT id, request_hash FROM deliveries WHERE tenant_id = $1 AND idempotency_key = $2";

/// Why a destination is disabled, if it is.
const DISABLED: &str = "\
SELECT state_reason FROM destinations \
WHERE tenant_id = $1 AND destination = $2 AND state = 'disabled'";

/// The values of one row of [`INSERT`], from placeholder `$first` on, in
/// [`row_values`]' order: due at its not-before time, or now.
fn row(first: usize) -> String {
    let n = |i: usize| format!("${}", first + i);
    format!(
        "({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, 'pending', 0, {}, {}, {}, \
         COALESCE({}, {{now}}), {{now}}, {{now}}, {}, {}, {}, {}, {})",
        n(0),
        n(1),
        n(2),
        n(3),
        n(4),
        n(5),
        n(6),
        n(7),
        n(8),
        n(9),
        n(10),
        n(11),
        n(11),
        n(12),
        n(13),
        n(14),
        n(15),
        n(16),
        n(17),
        n(18)
    )
}

impl Store {
    /// Inserts `deliveries` with one commit for them all, each due at once
    /// or at its not-before time. Each gets its own result: with an
    /// idempotency key already used by the same request, the existing
    /// delivery with `created = false`; under a key used for a different
    /// request, or to a disabled destination, an error that refuses only
    /// that item. A database failure fails the whole batch, and nothing of
    /// it is stored.
    pub async fn enqueue_batch(
        &self,
        deliveries: &[NewDelivery],
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        let _turn = self.write_turn().await;
        if deliveries.len() <= ROWS_PER_STATEMENT && self.dialect == Dialect::Postgres {
            // One statement, atomic on its own: no BEGIN and COMMIT.
            return self.insert_all(&self.db, deliveries).await;
        }
        let txn = self.db.begin().await?;
        let results = self.insert_all(&txn, deliveries).await?;
        txn.commit().await?;
        Ok(results)
    }

    /// `deliveries` through `db`, a statement per [`ROWS_PER_STATEMENT`];
    /// results in order.
    pub(super) async fn insert_all(
        &self,
        db: &impl ConnectionTrait,
        deliveries: &[NewDelivery],
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        let mut results = Vec::with_capacity(deliveries.len());
        for chunk in deliveries.chunks(ROWS_PER_STATEMENT) {
            let (destinations, wakes) = destinations_of(chunk);
            let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 19);
            let mut rows = Vec::with_capacity(chunk.len());
            let mut made = Vec::with_capacity(chunk.len());
            for delivery in chunk {
                let id = Uuid::now_v7();
                let hash = request_hash(delivery);
                rows.push(row(values.len() + 1));
                values.extend(row_values(delivery, id, &hash)?);
                made.push((id, hash));
            }
            let insert = INSERT
                .replace("{columns}", COLUMNS)
                .replace("{rows}", &rows.join(", "));
            let created: HashSet<Uuid> = match self.dialect {
                Dialect::Postgres => {
                    let (sql, values) =
                        self.with_destinations(&insert, values, &destinations, &wakes);
                    db.query_all_raw(self.statement(&sql, values)).await?
                }
                Dialect::Sqlite => {
                    self.ensure_destinations(db, &destinations).await?;
                    self.wake(db, &wakes).await?;
                    db.query_all_raw(self.statement(&insert, values)).await?
                }
            }
            .iter()
            .map(|row| row.try_get_by_index(0))
            .collect::<Result<_, _>>()?;
            for (delivery, (id, hash)) in chunk.iter().zip(made) {
                if created.contains(&id) {
                    results.push(Ok(Enqueued { id, created: true }));
                    continue;
                }
                match self.not_created(db, delivery, &hash).await {
                    Err(StoreError::Database(error)) => return Err(error.into()),
                    other => results.push(other),
                }
            }
        }
        Ok(results)
    }

    /// Why `delivery` was not inserted: its destination is disabled, or its
    /// idempotency key is taken (by the same request, which answers the
    /// existing delivery, or by another, a conflict).
    async fn not_created(
        &self,
        db: &impl ConnectionTrait,
        delivery: &NewDelivery,
        hash: &str,
    ) -> Result<Enqueued, StoreError> {
        let destination = delivery.destination_ref();
        let disabled = self.statement(
            DISABLED,
            vec![
                destination.tenant_id.clone().into(),
                destination.destination.clone().into(),
            ],
        );
        if let Some(row) = db.query_one_raw(disabled).await? {
            return Err(StoreError::DestinationDisabled {
                destination: destination.destination,
                reason: row.try_get_by_index(0)?,
            });
        }
        // Otherwise only an idempotency key can make the insert a no-op.
        let Some(key) = &delivery.idempotency_key else {
            return Err(StoreError::Corrupt(
                "insert without idempotency key was skipped".into(),
            ));
        };
        let find = self.statement(
            FIND_BY_KEY,
            vec![delivery.tenant_id.clone().into(), key.clone().into()],
        );
        let row = db.query_one_raw(find).await?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "idempotency key {key:?} conflicted but no row holds it"
            ))
        })?;
        let existing: Uuid = row.try_get_by_index(0)?;
        let existing_hash: String = row.try_get_by_index(1)?;
        if existing_hash == hash {
            Ok(Enqueued {
                id: existing,
                created: false,
            })
        } else {
            Err(StoreError::IdempotencyConflict {
                key: key.clone(),
                existing,
            })
        }
    }
}

/// The distinct destinations of `deliveries`, and the wake-up each needs:
/// its earliest due time among them.
fn destinations_of(deliveries: &[NewDelivery]) -> (Vec<NewDestination>, Vec<Wake>) {
    let mut earliest: BTreeMap<DestinationRef, (String, Option<i64>)> = BTreeMap::new();
    for delivery in deliveries {
        let entry = earliest
            .entry(delivery.destination_ref())
            .or_insert_with(|| (delivery.destination.host.clone(), delivery.not_before_ms));
        // `None` (due now) is the earliest of all.
        entry.1 = match (entry.1, delivery.not_before_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            _ => None,
        };
    }
    let wakes = earliest
        .iter()
        .map(|(destination, (_, at_ms))| Wake {
            destination: destination.clone(),
            at_ms: *at_ms,
            after: std::time::Duration::ZERO,
        })
        .collect();
    let destinations = earliest
        .into_iter()
        .map(|(destination, (host, due_ms))| NewDestination {
            destination,
            host,
            due_ms,
        })
        .collect();
    (destinations, wakes)
}

/// The nineteen bound values of one row, numbered as [`row`] places them.
fn row_values(delivery: &NewDelivery, id: Uuid, hash: &str) -> Result<[Value; 19], StoreError> {
    let event = delivery.event.as_ref();
    let request = &delivery.request;
    let trace = delivery.trace.as_ref();
    let headers = serde_json::to_string(&request.headers)
        .map_err(|error| StoreError::Corrupt(format!("headers do not serialize: {error}")))?;
    Ok([
        id.into(),
        delivery.tenant_id.clone().into(),
        request.url.clone().into(),
        delivery.destination.key.clone().into(),
        delivery.destination.host.clone().into(),
        request.method.as_str().into(),
        headers.into(),
        request.body.to_vec().into(),
        request.content_type.clone().into(),
        delivery.idempotency_key.clone().into(),
        hash.to_owned().into(),
        i32::try_from(delivery.max_attempts)
            .unwrap_or(i32::MAX)
            .into(),
        delivery.deadline_ms.into(),
        delivery.not_before_ms.into(),
        trace.map(|trace| trace.traceparent.clone()).into(),
        trace.and_then(|trace| trace.tracestate.clone()).into(),
        event.map(|event| event.event_id).into(),
        event.map(|event| event.event_type.clone()).into(),
        event.map(|event| event.endpoint_id).into(),
    ])
}

/// SHA-256 over every field that defines the request as the caller sent
/// it, length-prefixed so that no two different requests share an
/// encoding. A `max_attempts` the caller left to the server's default is
/// left out (the fixed-size fields after it keep the encoding unambiguous),
/// so replicas with different defaults agree; one the caller chose is
/// hashed as it always was, so keys stored before still match.
fn request_hash(delivery: &NewDelivery) -> String {
    fn field(hasher: &mut Sha256, bytes: &[u8]) {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    }
    let request = &delivery.request;
    let mut hasher = Sha256::new();
    field(&mut hasher, request.url.as_bytes());
    field(&mut hasher, request.method.as_str().as_bytes());
    hasher.update((request.headers.len() as u64).to_be_bytes());
    for (name, value) in &request.headers {
        field(&mut hasher, name.as_bytes());
        field(&mut hasher, value.as_bytes());
    }
    field(
        &mut hasher,
        request
            .content_type
            .as_deref()
            .unwrap_or_default()
            .as_bytes(),
    );
    hasher.update([u8::from(request.content_type.is_some())]);
    field(&mut hasher, &request.body);
    if delivery.max_attempts_chosen {
        hasher.update(delivery.max_attempts.to_be_bytes());
    }
    hasher.update(delivery.not_before_ms.unwrap_or(i64::MIN).to_be_bytes());
    hasher.update(delivery.deadline_ms.unwrap_or(i64::MIN).to_be_bytes());
    format!("{:x}", hasher.finalize())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::domain::{Destination, HttpMethod, HttpRequest};

    fn delivery() -> NewDelivery {
        NewDelivery {
            tenant_id: "default".into(),
            request: HttpRequest {
                url: "http://127.0.0.1:9/hook".into(),
                method: HttpMethod::Post,
                headers: vec![("x-a".into(), "1".into())],
                body: Bytes::from_static(b"{}"),
                content_type: Some("application/json".into()),
            },
            destination: Destination::of(&"http://127.0.0.1:9/hook".parse().unwrap()).unwrap(),
            idempotency_key: Some("k".into()),
            max_attempts: 3,
            max_attempts_chosen: true,
            not_before_ms: None,
            deadline_ms: None,
            trace: None,
            event: None,
        }
    }

    #[test]
    fn hash_tells_requests_apart() {
        let base = request_hash(&delivery());
        assert_eq!(base, request_hash(&delivery()));
        let mut other = delivery();
        other.request.body = Bytes::from_static(b"{ }");
        assert_ne!(base, request_hash(&other));
        let mut other = delivery();
        other.request.headers = vec![("x-a1".into(), String::new())];
        assert_ne!(
            base,
            request_hash(&other),
            "length prefixes keep fields apart"
        );
        let mut other = delivery();
        other.request.content_type = None;
        assert_ne!(base, request_hash(&other));
        let mut other = delivery();
        other.max_attempts = 4;
        assert_ne!(base, request_hash(&other), "a chosen max_attempts counts");
    }

    #[test]
    fn hash_leaves_out_a_default_max_attempts() {
        let defaulted = |max_attempts| NewDelivery {
            max_attempts,
            max_attempts_chosen: false,
            ..delivery()
        };
        assert_eq!(request_hash(&defaulted(3)), request_hash(&defaulted(20)));
        assert_ne!(
            request_hash(&defaulted(3)),
            request_hash(&delivery()),
            "left to the default is not the same request as chosen"
        );
    }
}
