//! `herald_schema_compat`: for an applied migration that leaves older
//! builds behind, the migration a build must know to run on the schema
//! (see [`crate::compat`]). Migrations are additive unless they write a
//! row here; none so far has.

use sea_orm_migration::prelude::*;

/// Adds `herald_schema_compat`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE TABLE IF NOT EXISTS {} ( \
                    migration VARCHAR(255) NOT NULL PRIMARY KEY, \
                    requires VARCHAR(255) NOT NULL \
                 )",
                crate::compat::COMPAT_TABLE
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "DROP TABLE IF EXISTS {}",
                crate::compat::COMPAT_TABLE
            ))
            .await?;
        Ok(())
    }
}
