//! Indexes for the filtered delivery listings: a tenant's deliveries in one
//! state, or to one host, newest first. `ListDeliveries` pages them by the
//! row value `(created_at_ms, id)`, which each index serves as a range, so
//! a page costs its own rows however many the tenant has retained (without
//! them, a filter read every row of the tenant through
//! `deliveries_created_idx`).
//!
//! On PostgreSQL they are built `CONCURRENTLY`, outside a transaction, so
//! enqueues and claims go on during the build; on SQLite in one
//! transaction.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

/// Adds the state and host listing indexes.
#[derive(DeriveMigrationName)]
pub struct Migration;

/// Index names and definitions.
const INDEXES: [(&str, &str); 2] = [
    (
        "deliveries_state_created_idx",
        "ON deliveries (tenant_id, state, created_at_ms, id)",
    ),
    (
        "deliveries_host_created_idx",
        "ON deliveries (tenant_id, host, created_at_ms, id)",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            let txn = manager.begin().await?;
            for (name, definition) in INDEXES {
                txn.get_connection()
                    .execute_unprepared(&format!("CREATE INDEX IF NOT EXISTS {name} {definition}"))
                    .await?;
            }
            return txn.commit().await;
        }
        for (name, definition) in INDEXES {
            crate::concurrent_index::create_concurrently(
                manager.get_connection(),
                name,
                definition,
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, _) in INDEXES {
            manager
                .get_connection()
                .execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        // PostgreSQL cannot build an index concurrently inside a
        // transaction; SQLite takes one of its own in `up`.
        Some(false)
    }
}
