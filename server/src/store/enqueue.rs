//! Enqueue: one `INSERT ... ON CONFLICT DO NOTHING` per delivery.
//!
//! Idempotency rides on the unique index (tenant, idempotency key): when two
//! enqueues with the same key race, the database lets one insert win and the
//! other finds the winner's row. A hash of the request tells "the same
//! request again" (answer the existing id) from "a different request under a
//! used key" (refuse).

use sea_orm::{ConnectionTrait, TransactionTrait, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    Store, StoreError,
    records::{Enqueued, NewDelivery},
};

const INSERT: &str = "\
INSERT INTO deliveries (id, tenant_id, url, destination, host, method, headers, body, content_type, \
    idempotency_key, request_hash, state, attempt_count, max_attempts, attempt_budget, deadline_at_ms, \
    next_attempt_at_ms, created_at_ms, updated_at_ms, traceparent, tracestate) \
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', 0, $12, $12, $13, \
    COALESCE($14, {now}), {now}, {now}, $15, $16) \
ON CONFLICT (tenant_id, idempotency_key) DO NOTHING";

const FIND_BY_KEY: &str = "\
SELECT id, request_hash FROM deliveries WHERE tenant_id = $1 AND idempotency_key = $2";

impl Store {
    /// Inserts a delivery, due at once or at its not-before time. With an
    /// idempotency key already used by the same request, returns the
    /// existing delivery with `created = false`.
    pub async fn enqueue(&self, delivery: &NewDelivery) -> Result<Enqueued, StoreError> {
        self.insert(&self.db, delivery).await
    }

    /// Inserts `deliveries` in one transaction: one commit for them all.
    /// Each gets its own result (an idempotency conflict refuses only its
    /// item); a database failure fails the whole batch, and nothing of it
    /// is stored.
    pub async fn enqueue_batch(
        &self,
        deliveries: &[NewDelivery],
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        let txn = self.db.begin().await?;
        let mut results = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match self.insert(&txn, delivery).await {
                Err(StoreError::Database(error)) => return Err(error.into()),
                result => results.push(result),
            }
        }
        txn.commit().await?;
        Ok(results)
    }

    /// One delivery on `db` (the pool, or a batch's transaction).
    async fn insert(
        &self,
        db: &impl ConnectionTrait,
        delivery: &NewDelivery,
    ) -> Result<Enqueued, StoreError> {
        let id = Uuid::now_v7();
        let hash = request_hash(delivery);
        let request = &delivery.request;
        let trace = delivery.trace.as_ref();
        let headers = serde_json::to_string(&request.headers)
            .map_err(|error| StoreError::Corrupt(format!("headers do not serialize: {error}")))?;
        let values: Vec<Value> = vec![
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
            hash.clone().into(),
            i32::try_from(delivery.max_attempts)
                .unwrap_or(i32::MAX)
                .into(),
            delivery.deadline_ms.into(),
            delivery.not_before_ms.into(),
            trace.map(|trace| trace.traceparent.clone()).into(),
            trace.and_then(|trace| trace.tracestate.clone()).into(),
        ];
        let insert = self.statement(INSERT, values);
        let inserted = db.execute_raw(insert).await?.rows_affected();
        if inserted == 1 {
            return Ok(Enqueued { id, created: true });
        }
        // Only an idempotency key can make the insert a no-op.
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

/// SHA-256 over every field that defines the request, length-prefixed so
/// that no two different requests share an encoding.
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
    hasher.update(delivery.max_attempts.to_be_bytes());
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
            not_before_ms: None,
            deadline_ms: None,
            trace: None,
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
    }
}
