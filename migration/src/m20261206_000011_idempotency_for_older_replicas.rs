//! The unique index on (tenant, idempotency key) over every delivery comes
//! back beside the partial one of migration 4.
//!
//! Migration 4 replaced it with an index over keyed deliveries only, but
//! replicas of the release before it insert with
//! `ON CONFLICT (tenant_id, idempotency_key) DO NOTHING`, without the
//! partial index's `WHERE`, which only a full index serves: PostgreSQL
//! answered 42P10 and SQLite "ON CONFLICT clause does not match any
//! PRIMARY KEY or UNIQUE constraint" to every enqueue of such a replica
//! during a rolling upgrade. Migration 4 is applied on existing installs
//! and cannot change, so this one restores the full index (add now); a
//! later release drops it once no replica that predates migration 4 can be
//! running (drop later), recording in `herald_schema_compat` that it
//! requires migration 4. Current inserts say `WHERE idempotency_key IS NOT
//! NULL`, which either index serves.
//!
//! On PostgreSQL the index is built `CONCURRENTLY`, outside a transaction,
//! so enqueues and claims go on during the build; on SQLite in one
//! transaction.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

/// Adds `deliveries_idempotency_key_idx` again.
#[derive(DeriveMigrationName)]
pub struct Migration;

/// The index over every delivery, as the first migration made it.
const EVERY_DELIVERY: &str = "deliveries_idempotency_key_idx";

/// Its definition.
const DEFINITION: &str = "ON deliveries (tenant_id, idempotency_key)";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            return crate::concurrent_index::create_unique_concurrently(
                manager.get_connection(),
                EVERY_DELIVERY,
                DEFINITION,
            )
            .await;
        }
        let txn = manager.begin().await?;
        txn.get_connection()
            .execute_unprepared(&format!(
                "CREATE UNIQUE INDEX IF NOT EXISTS {EVERY_DELIVERY} {DEFINITION}"
            ))
            .await?;
        txn.commit().await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&format!("DROP INDEX IF EXISTS {EVERY_DELIVERY}"))
            .await?;
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        // PostgreSQL cannot build an index concurrently inside a
        // transaction; SQLite takes one of its own in `up`.
        Some(false)
    }
}
