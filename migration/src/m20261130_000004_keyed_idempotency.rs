//! The idempotency index holds only deliveries that carry a key. A keyless
//! delivery (most of them) then costs one index entry fewer on insert and on
//! every non-HOT update (a claim, a completion), and the index stays the
//! size of the keyed deliveries rather than of the whole table.

use sea_orm_migration::prelude::*;

/// Rebuilds `deliveries_idempotency_key_idx` as a partial unique index.
#[derive(DeriveMigrationName)]
pub struct Migration;

/// The index's name, the same before and after.
const INDEX: &str = "deliveries_idempotency_key_idx";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_index(manager).await?;
        // The same SQL works on SQLite and PostgreSQL; an upsert names the
        // predicate (`ON CONFLICT (...) WHERE idempotency_key IS NOT NULL`)
        // to use it.
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE UNIQUE INDEX {INDEX} ON deliveries (tenant_id, idempotency_key) \
                 WHERE idempotency_key IS NOT NULL"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_index(manager).await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(Deliveries::Table)
                    .col(Deliveries::TenantId)
                    .col(Deliveries::IdempotencyKey)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        // The drop and the create on one connection, all or nothing: never
        // a moment without the index, on SQLite too.
        Some(true)
    }
}

async fn drop_index(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .get_connection()
        .execute_unprepared(&format!("DROP INDEX {INDEX}"))
        .await
        .map(drop)
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    TenantId,
    IdempotencyKey,
}
