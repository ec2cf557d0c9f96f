//! An index for the host-filtered delivery listing: a tenant's deliveries
//! to one host, newest first. `ListDeliveries` pages them by the row value
//! `(created_at_ms, id)`, which the index serves as a range, so a page
//! costs its own rows however many the tenant has retained (without it,
//! the filter read every row of the tenant through
//! `deliveries_created_idx`).
//!
//! The state filter has no index of its own: one on `(tenant_id, state,
//! created_at_ms, id)` drew PostgreSQL's plans for claims, which also say
//! `tenant_id = $ AND state = 'pending'`, away from the destination's due
//! index, and a backlog of 20,000 over 100 destinations drained at
//! 1,300-1,600 deliveries/s instead of 6,800-7,800/s
//! (`herald-bench burn-down --count 20000 --db postgres`). A state listing
//! reads the tenant's rows newest first and stops at a full page.
//!
//! On PostgreSQL they are built `CONCURRENTLY`, outside a transaction, so
//! enqueues and claims go on during the build; on SQLite in one
//! transaction.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

/// Adds the host listing index.
#[derive(DeriveMigrationName)]
pub struct Migration;

/// Index names and definitions.
const INDEXES: [(&str, &str); 1] = [(
    "deliveries_host_created_idx",
    "ON deliveries (tenant_id, host, created_at_ms, id)",
)];

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
