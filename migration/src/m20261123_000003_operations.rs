//! What operating Herald needs: the caller's W3C trace context, forwarded on
//! every attempt, and an index that lets the retention janitor find
//! finished deliveries by age without scanning the table.
//!
//! Every step can run again, so a run that stopped halfway is finished by
//! the next. SQLite does it all in one transaction. On PostgreSQL the
//! columns are added in a short transaction of their own (adding a
//! nullable column changes no row), then the index is built
//! `CONCURRENTLY`, outside it, so `deliveries` takes writes throughout the
//! build; an earlier version built it inside the transaction that altered
//! the table, which held every enqueue and claim for the whole build.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

/// The finished-deliveries index.
const FINISHED: &str = "deliveries_finished_idx";

/// Its definition: partial, so pending rows (the hot ones) never touch it.
const FINISHED_DEFINITION: &str =
    "ON deliveries (state, finished_at_ms) WHERE finished_at_ms IS NOT NULL";

/// Adds `traceparent`/`tracestate` and the finished-deliveries index.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let txn = manager.begin().await?;
        // SQLite takes one column per ALTER TABLE.
        for column in [Deliveries::Traceparent, Deliveries::Tracestate] {
            if txn.has_column("deliveries", column.to_string()).await? {
                continue;
            }
            txn.alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .add_column(ColumnDef::new(column).text())
                    .to_owned(),
            )
            .await?;
        }
        if manager.get_database_backend() == DbBackend::Postgres {
            txn.commit().await?;
            return crate::concurrent_index::create_concurrently(
                manager.get_connection(),
                FINISHED,
                FINISHED_DEFINITION,
            )
            .await;
        }
        txn.get_connection()
            .execute_unprepared(&format!(
                "CREATE INDEX IF NOT EXISTS {FINISHED} {FINISHED_DEFINITION}"
            ))
            .await?;
        txn.commit().await
    }

    fn use_transaction(&self) -> Option<bool> {
        // PostgreSQL cannot build an index concurrently inside a
        // transaction; both take the transactions they need in `up`.
        Some(false)
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(FINISHED)
                    .table(Deliveries::Table)
                    .to_owned(),
            )
            .await?;
        for column in [Deliveries::Traceparent, Deliveries::Tracestate] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Deliveries::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Traceparent,
    Tracestate,
}
