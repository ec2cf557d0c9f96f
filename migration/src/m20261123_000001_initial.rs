//! Tenants, deliveries, attempts and outcomes, with the indexes the hot
//! queries use: due pending rows (claim), dead letters by time (listing and
//! redrive), deliveries by creation (listing), idempotency keys per tenant
//! (enqueue) and outcomes by sequence (watch).

use sea_orm_migration::prelude::*;

/// The tenant every caller belongs to until API keys arrive.
const DEFAULT_TENANT: &str = "default";

/// Creates the initial schema.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.create_table(tenants()).await?;
        manager.create_table(deliveries()).await?;
        manager.create_table(attempts()).await?;
        manager.create_table(outcomes()).await?;
        manager.create_table(feed_state()).await?;
        for index in [
            // Idempotent enqueue: one key per tenant. NULL keys never collide.
            Index::create()
                .name("deliveries_idempotency_key_idx")
                .table(Deliveries::Table)
                .col(Deliveries::TenantId)
                .col(Deliveries::IdempotencyKey)
                .unique()
                .to_owned(),
            // ListDeliveries: a tenant's deliveries, newest first.
            Index::create()
                .name("deliveries_created_idx")
                .table(Deliveries::Table)
                .col(Deliveries::TenantId)
                .col(Deliveries::CreatedAtMs)
                .col(Deliveries::Id)
                .to_owned(),
            // Retention: outcomes by age.
            Index::create()
                .name("outcomes_created_idx")
                .table(Outcomes::Table)
                .col(Outcomes::CreatedAtMs)
                .to_owned(),
            // Outcome feed: a tenant's outcomes in sequence order.
            Index::create()
                .name("outcomes_tenant_sequence_idx")
                .table(Outcomes::Table)
                .col(Outcomes::TenantId)
                .col(Outcomes::Sequence)
                .to_owned(),
        ] {
            manager.create_index(index).await?;
        }
        // Partial indexes: only the rows the scheduler and the dead-letter
        // listing look at, so the due index stays small however much history
        // the table holds. The same SQL works on SQLite and PostgreSQL.
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at_ms) \
             WHERE state = 'pending'",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX deliveries_dead_letters_idx ON deliveries (tenant_id, finished_at_ms, id) \
             WHERE state = 'dead_lettered'",
        )
        .await?;
        let seed = Query::insert()
            .into_table(Tenants::Table)
            .columns([Tenants::Id, Tenants::Name, Tenants::CreatedAtMs])
            .values_panic([DEFAULT_TENANT.into(), DEFAULT_TENANT.into(), 0i64.into()])
            .to_owned();
        manager.exec_stmt(seed).await?;
        let horizon = Query::insert()
            .into_table(FeedState::Table)
            .columns([FeedState::Id, FeedState::PrunedThrough])
            .values_panic([1.into(), 0i64.into()])
            .to_owned();
        manager.exec_stmt(horizon).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            FeedState::Table.into_iden(),
            Outcomes::Table.into_iden(),
            Attempts::Table.into_iden(),
            Deliveries::Table.into_iden(),
            Tenants::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        // All or nothing on SQLite too, so a crash mid-migration leaves no
        // half-made schema behind.
        Some(true)
    }
}

fn tenants() -> TableCreateStatement {
    Table::create()
        .table(Tenants::Table)
        .col(
            ColumnDef::new(Tenants::Id)
                .string_len(64)
                .not_null()
                .primary_key(),
        )
        .col(ColumnDef::new(Tenants::Name).string_len(255).not_null())
        .col(
            ColumnDef::new(Tenants::CreatedAtMs)
                .big_integer()
                .not_null(),
        )
        .to_owned()
}

fn deliveries() -> TableCreateStatement {
    Table::create()
        .table(Deliveries::Table)
        .col(
            ColumnDef::new(Deliveries::Id)
                .uuid()
                .not_null()
                .primary_key(),
        )
        .col(
            ColumnDef::new(Deliveries::TenantId)
                .string_len(64)
                .not_null(),
        )
        .col(ColumnDef::new(Deliveries::Url).text().not_null())
        // `scheme://host:port`, the unit of per-destination fairness.
        .col(ColumnDef::new(Deliveries::Destination).text().not_null())
        .col(ColumnDef::new(Deliveries::Host).text().not_null())
        .col(ColumnDef::new(Deliveries::Method).string_len(8).not_null())
        .col(ColumnDef::new(Deliveries::Headers).text().not_null())
        .col(ColumnDef::new(Deliveries::Body).blob().not_null())
        .col(ColumnDef::new(Deliveries::ContentType).text())
        .col(ColumnDef::new(Deliveries::IdempotencyKey).string_len(255))
        .col(
            ColumnDef::new(Deliveries::RequestHash)
                .string_len(64)
                .not_null(),
        )
        .col(ColumnDef::new(Deliveries::State).string_len(16).not_null())
        .col(
            ColumnDef::new(Deliveries::AttemptCount)
                .integer()
                .not_null(),
        )
        .col(ColumnDef::new(Deliveries::MaxAttempts).integer().not_null())
        // The attempts one round may use; a redrive adds it to max_attempts.
        .col(
            ColumnDef::new(Deliveries::AttemptBudget)
                .integer()
                .not_null(),
        )
        .col(ColumnDef::new(Deliveries::DeadlineAtMs).big_integer())
        .col(ColumnDef::new(Deliveries::NextAttemptAtMs).big_integer())
        .col(ColumnDef::new(Deliveries::LeaseToken).uuid())
        .col(ColumnDef::new(Deliveries::LastStatusCode).integer())
        .col(ColumnDef::new(Deliveries::LastError).text())
        .col(
            ColumnDef::new(Deliveries::CreatedAtMs)
                .big_integer()
                .not_null(),
        )
        .col(
            ColumnDef::new(Deliveries::UpdatedAtMs)
                .big_integer()
                .not_null(),
        )
        .col(ColumnDef::new(Deliveries::FinishedAtMs).big_integer())
        .foreign_key(
            ForeignKey::create()
                .from(Deliveries::Table, Deliveries::TenantId)
                .to(Tenants::Table, Tenants::Id),
        )
        .to_owned()
}

fn attempts() -> TableCreateStatement {
    Table::create()
        .table(Attempts::Table)
        .col(ColumnDef::new(Attempts::DeliveryId).uuid().not_null())
        .col(ColumnDef::new(Attempts::Number).integer().not_null())
        .col(
            ColumnDef::new(Attempts::StartedAtMs)
                .big_integer()
                .not_null(),
        )
        .col(
            ColumnDef::new(Attempts::DurationUs)
                .big_integer()
                .not_null(),
        )
        .col(ColumnDef::new(Attempts::StatusCode).integer())
        .col(ColumnDef::new(Attempts::ErrorKind).string_len(16))
        .col(ColumnDef::new(Attempts::ErrorMessage).text())
        .col(ColumnDef::new(Attempts::ResponseExcerpt).blob())
        .primary_key(
            Index::create()
                .col(Attempts::DeliveryId)
                .col(Attempts::Number),
        )
        .foreign_key(
            ForeignKey::create()
                .from(Attempts::Table, Attempts::DeliveryId)
                .to(Deliveries::Table, Deliveries::Id)
                .on_delete(ForeignKeyAction::Cascade),
        )
        .to_owned()
}

fn outcomes() -> TableCreateStatement {
    Table::create()
        .table(Outcomes::Table)
        .col(
            ColumnDef::new(Outcomes::Sequence)
                .big_integer()
                .not_null()
                .auto_increment()
                .primary_key(),
        )
        .col(ColumnDef::new(Outcomes::TenantId).string_len(64).not_null())
        .col(ColumnDef::new(Outcomes::DeliveryId).uuid().not_null())
        // The delivery's URL host, so watchers can filter by destination.
        .col(ColumnDef::new(Outcomes::Host).text().not_null())
        .col(ColumnDef::new(Outcomes::Kind).string_len(24).not_null())
        .col(ColumnDef::new(Outcomes::AttemptNumber).integer().not_null())
        .col(ColumnDef::new(Outcomes::StatusCode).integer())
        .col(ColumnDef::new(Outcomes::ErrorKind).string_len(16))
        .col(ColumnDef::new(Outcomes::ErrorMessage).text())
        .col(ColumnDef::new(Outcomes::NextAttemptAtMs).big_integer())
        .col(
            ColumnDef::new(Outcomes::CreatedAtMs)
                .big_integer()
                .not_null(),
        )
        .to_owned()
}

/// One row: the highest outcome sequence retention has deleted, so a
/// watcher asking to resume from before it learns that it cannot.
fn feed_state() -> TableCreateStatement {
    Table::create()
        .table(FeedState::Table)
        .col(
            ColumnDef::new(FeedState::Id)
                .integer()
                .not_null()
                .primary_key(),
        )
        .col(
            ColumnDef::new(FeedState::PrunedThrough)
                .big_integer()
                .not_null(),
        )
        .to_owned()
}

#[derive(DeriveIden)]
enum FeedState {
    Table,
    Id,
    PrunedThrough,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    Name,
    CreatedAtMs,
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Id,
    TenantId,
    Url,
    Destination,
    Host,
    Method,
    Headers,
    Body,
    ContentType,
    IdempotencyKey,
    RequestHash,
    State,
    AttemptCount,
    MaxAttempts,
    AttemptBudget,
    DeadlineAtMs,
    NextAttemptAtMs,
    LeaseToken,
    LastStatusCode,
    LastError,
    CreatedAtMs,
    UpdatedAtMs,
    FinishedAtMs,
}

#[derive(DeriveIden)]
enum Attempts {
    Table,
    DeliveryId,
    Number,
    StartedAtMs,
    DurationUs,
    StatusCode,
    ErrorKind,
    ErrorMessage,
    ResponseExcerpt,
}

#[derive(DeriveIden)]
enum Outcomes {
    Table,
    Sequence,
    TenantId,
    DeliveryId,
    Host,
    Kind,
    AttemptNumber,
    StatusCode,
    ErrorKind,
    ErrorMessage,
    NextAttemptAtMs,
    CreatedAtMs,
}
