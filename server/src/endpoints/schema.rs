//! JSON Schemas of event types: [`PayloadSchema`] checks a payload, and
//! [`SchemaCache`] keeps each event type's compiled schema for a moment,
//! so a publish costs no query and no compilation.
//!
//! Schemas resolve no remote references: Herald fetches nothing a tenant
//! names except the deliveries it was asked to make, so a `$ref` to an
//! `http` URL is refused when the event type is stored.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use crate::store::{Store, StoreError};

/// Largest schema, in bytes.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;

/// Cached event types per replica before the cache starts over (a bound
/// against a caller publishing under ever new type names).
const MAX_CACHED: usize = 10_000;

/// A compiled JSON Schema.
pub struct PayloadSchema {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for PayloadSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PayloadSchema")
    }
}

/// Why a schema is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SchemaError(String);

/// Why a payload does not match its event type's schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadRefused {
    /// The payload is not JSON at all.
    #[error("is not JSON ({0}); the event type has a JSON Schema, so its payloads must be JSON")]
    NotJson(String),
    /// The first place where the payload breaks the schema.
    #[error("does not match the event type's schema at {}: {message}", place(path))]
    Mismatch {
        /// JSON Pointer to the failing value (`""` for the whole payload).
        path: String,
        /// What the schema says is wrong there.
        message: String,
    },
}

/// Where in a payload a JSON Pointer points, for people.
fn place(pointer: &str) -> String {
    if pointer.is_empty() {
        "the top level (\"\")".to_owned()
    } else {
        format!("{pointer:?}")
    }
}

impl PayloadSchema {
    /// `text` compiled, if it is a JSON Schema Herald can check with.
    pub fn compile(text: &str) -> Result<Self, SchemaError> {
        if text.len() > MAX_SCHEMA_BYTES {
            return Err(SchemaError(format!(
                "is {} bytes; at most {MAX_SCHEMA_BYTES}",
                text.len()
            )));
        }
        let schema: serde_json::Value = serde_json::from_str(text)
            .map_err(|error| SchemaError(format!("is not JSON: {error}")))?;
        let validator = jsonschema::validator_for(&schema).map_err(|error| {
            SchemaError(format!("is not a JSON Schema Herald can use: {error}"))
        })?;
        Ok(Self { validator })
    }

    /// Whether `payload` is JSON that matches; otherwise the first failing
    /// place.
    pub fn check(&self, payload: &[u8]) -> Result<(), PayloadRefused> {
        let value: serde_json::Value = serde_json::from_slice(payload)
            .map_err(|error| PayloadRefused::NotJson(error.to_string()))?;
        match self.validator.iter_errors(&value).next() {
            None => Ok(()),
            Some(error) => Err(PayloadRefused::Mismatch {
                path: error.instance_path().to_string(),
                message: error.to_string(),
            }),
        }
    }
}

/// One event type's schema as cached: none when the type is not in the
/// catalogue or has no schema.
type Cached = (Option<Arc<PayloadSchema>>, Instant);

/// Each event type's compiled schema, reread once it is `ttl` old, and at
/// once on this replica when the type changes here
/// ([`SchemaCache::forget`]); cheap to clone.
#[derive(Clone)]
pub struct SchemaCache {
    store: Store,
    ttl: Duration,
    cached: Arc<Mutex<HashMap<(String, String), Cached>>>,
}

impl SchemaCache {
    /// A cache over `store` whose entries live `ttl`.
    pub fn new(store: Store, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            cached: Arc::default(),
        }
    }

    /// The schema `tenant_id`'s events of type `name` must match, if any.
    pub async fn schema(
        &self,
        tenant_id: &str,
        name: &str,
    ) -> Result<Option<Arc<PayloadSchema>>, StoreError> {
        let key = (tenant_id.to_owned(), name.to_owned());
        if let Some((schema, read)) = self.lock().get(&key)
            && read.elapsed() < self.ttl
        {
            return Ok(schema.clone());
        }
        let text = self.store.event_type_schema(tenant_id, name).await?;
        let schema = match text {
            Some(text) => match PayloadSchema::compile(&text) {
                Ok(schema) => Some(Arc::new(schema)),
                Err(error) => {
                    // It compiled when it was stored; a newer release may
                    // read it differently. Refusing every publish would
                    // stop the tenant, so it is logged and not enforced.
                    tracing::error!(tenant = tenant_id, event_type = name, %error, "a stored JSON Schema does not compile; payloads of this type go unchecked until it is replaced");
                    None
                }
            },
            None => None,
        };
        let mut cached = self.lock();
        if cached.len() >= MAX_CACHED {
            cached.clear();
        }
        cached.insert(key, (schema.clone(), Instant::now()));
        Ok(schema)
    }

    /// Drops `tenant_id`'s cached schema of `name` (it changed here).
    pub fn forget(&self, tenant_id: &str, name: &str) {
        self.lock().remove(&(tenant_id.to_owned(), name.to_owned()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Cached>> {
        self.cached.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = r#"{
        "type": "object",
        "required": ["id", "lines"],
        "properties": {
            "id": {"type": "string"},
            "lines": {"type": "array", "items": {"type": "object", "required": ["sku"],
                "properties": {"sku": {"type": "string"}}}}
        }
    }"#;

    #[test]
    fn a_matching_payload_passes() {
        let schema = PayloadSchema::compile(ORDER).unwrap();
        schema
            .check(br#"{"id": "o1", "lines": [{"sku": "a"}]}"#)
            .unwrap();
    }

    #[test]
    fn a_mismatch_names_the_first_failing_path() {
        let schema = PayloadSchema::compile(ORDER).unwrap();
        let refused = schema
            .check(br#"{"id": "o1", "lines": [{"sku": "a"}, {"sku": 7}]}"#)
            .unwrap_err();
        match refused {
            PayloadRefused::Mismatch { path, .. } => assert_eq!(path, "/lines/1/sku"),
            other => panic!("{other:?}"),
        }
        let missing = schema.check(br#"{"id": "o1"}"#).unwrap_err();
        assert!(
            missing.to_string().contains("at the top level (\"\")"),
            "{missing}"
        );
        assert!(matches!(
            schema.check(b"not json"),
            Err(PayloadRefused::NotJson(_))
        ));
    }

    #[test]
    fn refuses_what_is_not_a_usable_schema() {
        assert!(PayloadSchema::compile("{").is_err());
        assert!(PayloadSchema::compile(r#"{"type": "no-such-type"}"#).is_err());
        assert!(
            PayloadSchema::compile(r#"{"$ref": "https://example.com/schema.json"}"#).is_err(),
            "remote references are never fetched"
        );
    }
}
