//! Deliveries gain `resend`: set by each claim to whether the row still
//! carried the lease of an earlier claim, that is, whether that claim's
//! attempt was made but its result never recorded (a crash, or a database
//! away until the lease ran out). Such a claim makes the lost attempt
//! again: it does not count as one more attempt, and a deadline that
//! passed meanwhile does not stop it (invariant I4).

use sea_orm_migration::prelude::*;

/// Adds `deliveries.resend`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .add_column(
                        ColumnDef::new(Deliveries::Resend)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .drop_column(Deliveries::Resend)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Resend,
}
