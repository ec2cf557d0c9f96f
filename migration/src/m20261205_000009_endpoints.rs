//! Endpoints and events: publish once, deliver to every subscriber.
//!
//! - `endpoints`: a tenant's registered receivers, each with its URL (and
//!   the destination it falls under), description, headers to add, its own
//!   sealed signing secret (and the previous one during a rotation's grace
//!   window), whether it takes every event type, and whether it is enabled.
//! - `endpoint_event_types`: what an endpoint subscribes to, one row per
//!   pattern: an exact name, or a prefix (`order.*` is stored as the
//!   prefix `order.`).
//! - `event_types`: the optional catalogue, a name, a description and
//!   optionally a JSON Schema that published payloads must match.
//! - `events`: what was published, idempotent per tenant and key like
//!   deliveries.
//!
//! Deliveries made for an event carry its id, its type and the endpoint's
//! id; outcomes carry the endpoint and the event type too, so the outcome
//! stream filters by them. Every new column is nullable and nothing is
//! dropped or renamed: a replica of the previous release keeps enqueueing
//! and claiming against this schema.
//!
//! On PostgreSQL the new indexes of `deliveries` are built `CONCURRENTLY`,
//! outside a transaction, and every step can run again after a crash.
//! SQLite does it all in one transaction.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

/// Adds endpoints, their subscriptions, event types and events.
#[derive(DeriveMigrationName)]
pub struct Migration;

/// The tables, with `{uuid}` and `{bytes}` the backend's column types.
const TABLES: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS endpoints ( \
        id {uuid} NOT NULL PRIMARY KEY, \
        tenant_id VARCHAR(64) NOT NULL REFERENCES tenants (id), \
        url TEXT NOT NULL, \
        destination TEXT NOT NULL, \
        host TEXT NOT NULL, \
        description TEXT NOT NULL, \
        headers TEXT NOT NULL, \
        all_event_types BOOLEAN NOT NULL, \
        enabled BOOLEAN NOT NULL, \
        signing_secret TEXT NOT NULL, \
        previous_signing_secret TEXT, \
        previous_secret_expires_at_ms BIGINT, \
        created_at_ms BIGINT NOT NULL, \
        updated_at_ms BIGINT NOT NULL \
    )",
    "CREATE TABLE IF NOT EXISTS endpoint_event_types ( \
        endpoint_id {uuid} NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE, \
        tenant_id VARCHAR(64) NOT NULL, \
        pattern TEXT NOT NULL, \
        prefix BOOLEAN NOT NULL, \
        PRIMARY KEY (endpoint_id, pattern) \
    )",
    "CREATE TABLE IF NOT EXISTS event_types ( \
        tenant_id VARCHAR(64) NOT NULL REFERENCES tenants (id), \
        name TEXT NOT NULL, \
        description TEXT NOT NULL, \
        json_schema TEXT, \
        created_at_ms BIGINT NOT NULL, \
        updated_at_ms BIGINT NOT NULL, \
        PRIMARY KEY (tenant_id, name) \
    )",
    "CREATE TABLE IF NOT EXISTS events ( \
        id {uuid} NOT NULL PRIMARY KEY, \
        tenant_id VARCHAR(64) NOT NULL, \
        event_type TEXT NOT NULL, \
        payload {bytes} NOT NULL, \
        content_type TEXT, \
        idempotency_key TEXT, \
        request_hash TEXT NOT NULL, \
        created_at_ms BIGINT NOT NULL \
    )",
];

/// Indexes of the new tables, built with them.
const TABLE_INDEXES: [&str; 6] = [
    // Listing a tenant's endpoints in id order.
    "CREATE INDEX IF NOT EXISTS endpoints_tenant_idx ON endpoints (tenant_id, id)",
    // Fan-out: a tenant's subscriptions by pattern.
    "CREATE INDEX IF NOT EXISTS endpoint_event_types_tenant_idx \
     ON endpoint_event_types (tenant_id, pattern)",
    // Publish's idempotency, keyed events only.
    "CREATE UNIQUE INDEX IF NOT EXISTS events_idempotency_idx ON events (tenant_id, idempotency_key) \
     WHERE idempotency_key IS NOT NULL",
    // Listing a tenant's events newest first, and retention by time.
    "CREATE INDEX IF NOT EXISTS events_created_idx ON events (tenant_id, created_at_ms, id)",
    // Listing a tenant's events of one type newest first.
    "CREATE INDEX IF NOT EXISTS events_type_created_idx \
     ON events (tenant_id, event_type, created_at_ms, id)",
    // Retention: the oldest first, whatever the tenant.
    "CREATE INDEX IF NOT EXISTS events_age_idx ON events (created_at_ms)",
];

/// New nullable columns, with `{uuid}` the backend's type.
const COLUMNS: [(&str, &str, &str); 5] = [
    ("deliveries", "endpoint_id", "{uuid}"),
    ("deliveries", "event_id", "{uuid}"),
    ("deliveries", "event_type", "TEXT"),
    ("outcomes", "endpoint_id", "{uuid}"),
    ("outcomes", "event_type", "TEXT"),
];

/// Index names and definitions on `deliveries`.
const DELIVERY_INDEXES: [(&str, &str); 2] = [
    // An event's deliveries.
    (
        "deliveries_event_idx",
        "ON deliveries (event_id) WHERE event_id IS NOT NULL",
    ),
    // An endpoint's deliveries by state: cancelling the pending ones of a
    // deleted endpoint, finding the failed ones to recover.
    (
        "deliveries_endpoint_state_idx",
        "ON deliveries (endpoint_id, state, created_at_ms) WHERE endpoint_id IS NOT NULL",
    ),
];

/// `sql` with the backend's column types.
fn typed(sql: &str, postgres: bool) -> String {
    let (uuid, bytes) = if postgres {
        ("UUID", "BYTEA")
    } else {
        ("uuid_text", "BLOB")
    };
    sql.replace("{uuid}", uuid).replace("{bytes}", bytes)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let postgres = manager.get_database_backend() == DbBackend::Postgres;
        {
            let txn = manager.begin().await?;
            let db = txn.get_connection();
            for table in TABLES {
                db.execute_unprepared(&typed(table, postgres)).await?;
            }
            for index in TABLE_INDEXES {
                db.execute_unprepared(index).await?;
            }
            for (table, column, kind) in COLUMNS {
                // SQLite has no `ADD COLUMN IF NOT EXISTS`, but runs all of
                // this in one transaction, so a rerun starts from scratch.
                let guard = if postgres { "IF NOT EXISTS " } else { "" };
                db.execute_unprepared(&typed(
                    &format!("ALTER TABLE {table} ADD COLUMN {guard}{column} {kind}"),
                    postgres,
                ))
                .await?;
            }
            if !postgres {
                for (name, definition) in DELIVERY_INDEXES {
                    db.execute_unprepared(&format!(
                        "CREATE INDEX IF NOT EXISTS {name} {definition}"
                    ))
                    .await?;
                }
            }
            txn.commit().await?;
        }
        if postgres {
            for (name, definition) in DELIVERY_INDEXES {
                crate::concurrent_index::create_concurrently(
                    manager.get_connection(),
                    name,
                    definition,
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, _) in DELIVERY_INDEXES {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        for (table, column, _) in COLUMNS {
            db.execute_unprepared(&format!("ALTER TABLE {table} DROP COLUMN {column}"))
                .await?;
        }
        for table in ["events", "event_types", "endpoint_event_types", "endpoints"] {
            db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}"))
                .await?;
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        // PostgreSQL cannot build an index concurrently inside a
        // transaction; both backends take one of their own in `up`.
        Some(false)
    }
}
