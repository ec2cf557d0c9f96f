//! The idempotency index holds only deliveries that carry a key. A keyless
//! delivery (most of them) then costs one index entry fewer on insert and on
//! every non-HOT update (a claim, a completion), and the index stays the
//! size of the keyed deliveries rather than of the whole table.
//!
//! On PostgreSQL the new index is built `CONCURRENTLY` before the old one is
//! dropped, so replicas still running keep enqueueing while a large table
//! is indexed, and at every moment one unique index guards the keys (the
//! enqueue's `ON CONFLICT ... WHERE idempotency_key IS NOT NULL` is served
//! by either). SQLite swaps the two in one transaction.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

/// Replaces `deliveries_idempotency_key_idx` with the partial
/// `deliveries_keyed_idempotency_idx`.
#[derive(DeriveMigrationName)]
pub struct Migration;

/// The index over every delivery, before this migration.
const EVERY_DELIVERY: &str = "deliveries_idempotency_key_idx";

/// The index over keyed deliveries, after it.
const KEYED: &str = "deliveries_keyed_idempotency_idx";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        swap(
            manager,
            KEYED,
            "WHERE idempotency_key IS NOT NULL",
            EVERY_DELIVERY,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        swap(manager, EVERY_DELIVERY, "", KEYED).await
    }

    fn use_transaction(&self) -> Option<bool> {
        // PostgreSQL cannot build an index concurrently inside a
        // transaction; SQLite takes one of its own in `swap`.
        Some(false)
    }
}

/// Creates the unique index `new` on (tenant, key) with `predicate`, then
/// drops `old`.
async fn swap(
    manager: &SchemaManager<'_>,
    new: &str,
    predicate: &str,
    old: &str,
) -> Result<(), DbErr> {
    if manager.get_database_backend() == DbBackend::Postgres {
        let db = manager.get_connection();
        let definition = format!("ON deliveries (tenant_id, idempotency_key) {predicate}");
        crate::concurrent_index::create_unique_concurrently(db, new, &definition).await?;
        crate::concurrent_index::drop_concurrently(db, old).await?;
        return Ok(());
    }
    let txn = manager.begin().await?;
    let db = txn.get_connection();
    db.execute_unprepared(&format!(
        "CREATE UNIQUE INDEX IF NOT EXISTS {new} \
         ON deliveries (tenant_id, idempotency_key) {predicate}"
    ))
    .await?;
    db.execute_unprepared(&format!("DROP INDEX IF EXISTS {old}"))
        .await?;
    txn.commit().await
}
