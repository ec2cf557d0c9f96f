//! The audit trail: one row per operator action (tenants and keys created
//! or revoked, secrets rotated, deliveries cancelled, dead letters
//! redriven, destination policies set, destinations paused, resumed or
//! enabled), written in the transaction that makes the change, with the
//! tenant, the id of the API key that acted (none from the command line
//! or while open), the time, the kind and what changed (JSON text).
//! Listed by tenant newest first; pruned by time.
//!
//! Signing secrets need no schema change to be sealed: a sealed value is
//! text in the same columns, and `herald serve` seals the plain ones at
//! start under the configured key (a migration has no key to seal with).

use sea_orm_migration::prelude::*;

/// Adds `audit_events`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(
                        ColumnDef::new(AuditEvents::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(AuditEvents::TenantId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuditEvents::KeyId).string_len(32))
                    .col(ColumnDef::new(AuditEvents::AtMs).big_integer().not_null())
                    .col(ColumnDef::new(AuditEvents::Kind).string_len(64).not_null())
                    .col(ColumnDef::new(AuditEvents::Details).text().not_null())
                    .to_owned(),
            )
            .await?;
        // The listing: a tenant's events newest first.
        manager
            .create_index(
                Index::create()
                    .name("audit_events_tenant_at_idx")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::TenantId)
                    .col(AuditEvents::AtMs)
                    .col(AuditEvents::Id)
                    .to_owned(),
            )
            .await?;
        // Retention: the oldest first, whatever the tenant.
        manager
            .create_index(
                Index::create()
                    .name("audit_events_at_idx")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::AtMs)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditEvents::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    TenantId,
    KeyId,
    AtMs,
    Kind,
    Details,
}
