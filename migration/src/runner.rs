//! Applying pending migrations on a schema that may hold migrations this
//! build does not know (sea-orm-migration's own `up` refuses such a
//! schema outright; whether this build may run on it is for
//! [`crate::compat`] to say, before anything is applied).

use std::time::{SystemTime, UNIX_EPOCH};

use sea_orm_migration::{
    MigrationTrait, MigratorTrait, SchemaManager,
    sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, TransactionTrait, Value},
};

use crate::Migrator;

/// A migration that failed, with the database's error.
#[derive(Debug, thiserror::Error)]
#[error("migration {migration} failed: {source}")]
pub struct MigrationFailed {
    /// The migration's name.
    pub migration: String,
    /// What the database answered.
    #[source]
    pub source: DbErr,
}

impl Migrator {
    /// Applies every migration of this build that `db` has not applied, in
    /// order, each recorded as it completes; applied migrations this build
    /// does not know are left as they are. A migration runs in a
    /// transaction unless it says otherwise (PostgreSQL's default; on
    /// SQLite too, so a crash cannot leave half of one behind).
    pub async fn apply_pending(db: &DatabaseConnection) -> Result<(), MigrationFailed> {
        let migrations = Self::migrations();
        let failed = |migration: &str| {
            let migration = migration.to_owned();
            move |source| MigrationFailed { migration, source }
        };
        Self::install(db).await.map_err(failed("(bookkeeping)"))?;
        let status = crate::compat::status(db, &migrations)
            .await
            .map_err(failed("(bookkeeping)"))?;
        for migration in migrations
            .iter()
            .filter(|migration| status.pending.iter().any(|name| name == migration.name()))
        {
            apply(db, migration.as_ref())
                .await
                .map_err(failed(migration.name()))?;
        }
        Ok(())
    }
}

/// Applies `migration` and records it.
async fn apply(db: &DatabaseConnection, migration: &dyn MigrationTrait) -> Result<(), DbErr> {
    if migration.use_transaction().unwrap_or(true) {
        let txn = db.begin().await?;
        migration.up(&SchemaManager::new(&txn)).await?;
        record(&txn, migration.name()).await?;
        return txn.commit().await;
    }
    migration.up(&SchemaManager::new(db)).await?;
    record(db, migration.name()).await
}

/// Records `name` as applied, as sea-orm-migration does.
async fn record(db: &impl ConnectionTrait, name: &str) -> Result<(), DbErr> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let backend: DbBackend = db.get_database_backend();
    db.execute_raw(crate::compat::statement(
        backend,
        "INSERT INTO seaql_migrations (version, applied_at) VALUES ($1, $2)",
        [
            Value::from(name),
            Value::from(i64::try_from(now).unwrap_or(i64::MAX)),
        ],
    ))
    .await?;
    Ok(())
}
