//! API keys (only their SHA-256 is stored) and each tenant's signing
//! secrets: the current one, and the previous one with the end of its
//! rotation grace window.

use sea_orm_migration::prelude::*;

/// Adds `api_keys` and the signing-secret columns of `tenants`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Every step can run again: an install whose first run of this
        // migration stopped halfway (SQLite ran it outside a transaction
        // before it asked for one) finishes it instead of failing on what
        // is already there.
        manager
            .create_table(api_keys().if_not_exists().to_owned())
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("api_keys_key_hash_idx")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::KeyHash)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // SQLite takes one column per ALTER TABLE.
        for column in [
            ColumnDef::new(Tenants::SigningSecret).text().to_owned(),
            ColumnDef::new(Tenants::PreviousSigningSecret)
                .text()
                .to_owned(),
            ColumnDef::new(Tenants::PreviousSecretExpiresAtMs)
                .big_integer()
                .to_owned(),
        ] {
            let name = column.get_column_name();
            if manager.has_column("tenants", &name).await? {
                continue;
            }
            manager
                .alter_table(
                    Table::alter()
                        .table(Tenants::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        // On SQLite too: all or nothing.
        Some(true)
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            Tenants::SigningSecret,
            Tenants::PreviousSigningSecret,
            Tenants::PreviousSecretExpiresAtMs,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Tenants::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(ApiKeys::Table).to_owned())
            .await
    }
}

fn api_keys() -> TableCreateStatement {
    Table::create()
        .table(ApiKeys::Table)
        // The public part of the key, shown in listings and used to revoke.
        .col(
            ColumnDef::new(ApiKeys::Id)
                .string_len(32)
                .not_null()
                .primary_key(),
        )
        .col(ColumnDef::new(ApiKeys::TenantId).string_len(64).not_null())
        // Hex SHA-256 of the whole key; the key itself is never stored.
        .col(ColumnDef::new(ApiKeys::KeyHash).string_len(64).not_null())
        .col(
            ColumnDef::new(ApiKeys::CreatedAtMs)
                .big_integer()
                .not_null(),
        )
        .col(ColumnDef::new(ApiKeys::RevokedAtMs).big_integer())
        .foreign_key(
            ForeignKey::create()
                .from(ApiKeys::Table, ApiKeys::TenantId)
                .to(Tenants::Table, Tenants::Id),
        )
        .to_owned()
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    TenantId,
    KeyHash,
    CreatedAtMs,
    RevokedAtMs,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    SigningSecret,
    PreviousSigningSecret,
    PreviousSecretExpiresAtMs,
}
