//! What operating Herald needs: the caller's W3C trace context, forwarded on
//! every attempt, and an index that lets the retention janitor find
//! finished deliveries by age without scanning the table.

use sea_orm_migration::prelude::*;

/// Adds `traceparent`/`tracestate` and the finished-deliveries index.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one column per ALTER TABLE.
        for column in [Deliveries::Traceparent, Deliveries::Tracestate] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Deliveries::Table)
                        .add_column(ColumnDef::new(column).text())
                        .to_owned(),
                )
                .await?;
        }
        // Partial, so pending rows (the hot ones) never touch it.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX deliveries_finished_idx ON deliveries (state, finished_at_ms) \
                 WHERE finished_at_ms IS NOT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("deliveries_finished_idx")
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
