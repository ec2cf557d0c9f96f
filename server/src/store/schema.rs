//! The schema and this build: whether this build may run on the schema it
//! finds, and applying the migrations it lacks.
//!
//! A schema a newer release migrated holds migrations this build does not
//! know. It runs on it, with a warning, unless one of them recorded that
//! it needs a build knowing a migration this one does not (see
//! [`herald_migration::compat`]); then it refuses, naming it. A schema
//! lacking migrations is migrated by `herald migrate` and `herald serve`;
//! `serve` with `HERALD_MIGRATE=false` and the commands that never migrate
//! refuse it, naming what is missing and the command that applies it.
//!
//! On PostgreSQL migrations run on a connection of their own that carries
//! a `lock_timeout`, so a migration waiting for a lock (behind a long
//! transaction) gives up instead of queueing every enqueue and claim
//! behind itself; the error names the transactions that were open.

use std::time::Duration;

use herald_migration::{
    MigrationFailed, Migrator, MigratorTrait,
    compat::{self, SchemaStatus, Unknown},
};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, RuntimeErr, Statement,
};

use super::{Dialect, Store, StoreError};

/// PostgreSQL's `lock_not_available`, which a lock timeout raises.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// Why this build will not run on, or could not migrate, the schema.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// Migrations this build knows are not applied, and this command does
    /// not apply them.
    #[error(
        "the schema lacks {} of the {known} migrations this build knows ({}); run `herald migrate` \
         with this database URL to apply them, then start again (`herald serve` applies them at \
         start unless HERALD_MIGRATE=false)",
        pending.len(), pending.join(", ")
    )]
    Pending {
        /// The migrations not applied, in the order they apply.
        pending: Vec<String>,
        /// How many migrations this build knows.
        known: usize,
    },
    /// A newer release applied migrations this build cannot run with.
    #[error(
        "the schema was migrated by a newer Herald than this build ({version}): {}; run a \
         Herald release that includes the migration named after \"needs\" (or a newer one) \
         here, as the replicas that migrated it do",
        incompatible.iter().map(|unknown| format!(
            "{} needs a build that knows {}",
            unknown.name,
            unknown.requires.as_deref().unwrap_or_default()
        )).collect::<Vec<_>>().join("; ")
    )]
    TooNew {
        /// This build's version.
        version: &'static str,
        /// The applied migrations it does not know and cannot run with.
        incompatible: Vec<Unknown>,
    },
    /// A migration waited longer than the lock timeout for a lock.
    #[error(
        "migration {migration} waited longer than {} for a lock and stopped ({holders}); \
         let that finish or end it (`SELECT pg_terminate_backend(pid)`) and run `herald migrate` \
         again, which goes on from where this one stopped, or raise HERALD_MIGRATION_LOCK_TIMEOUT",
        humantime::format_duration(*timeout)
    )]
    LockTimeout {
        /// The migration that stopped.
        migration: String,
        /// The configured lock timeout.
        timeout: Duration,
        /// The transactions open in the database when it stopped.
        holders: String,
    },
    /// A migration failed otherwise.
    #[error(transparent)]
    Failed(#[from] MigrationFailed),
}

impl Store {
    /// Whether this build may run on the schema: refuses one a newer
    /// release made incompatible with it, warns of newer migrations it
    /// does not know but may run with, and returns the comparison.
    pub(super) async fn check_compatible(&self) -> Result<SchemaStatus, StoreError> {
        let status = compat::status(&self.db, &Migrator::migrations()).await?;
        let incompatible: Vec<Unknown> = status.incompatible().into_iter().cloned().collect();
        if !incompatible.is_empty() {
            return Err(SchemaError::TooNew {
                version: env!("CARGO_PKG_VERSION"),
                incompatible,
            }
            .into());
        }
        if !status.unknown.is_empty() {
            let names: Vec<&str> = status.unknown.iter().map(|u| u.name.as_str()).collect();
            tracing::warn!(
                migrations = names.join(", "),
                "the schema has migrations this build does not know, applied by a newer Herald; \
                 they are additive, so this build runs on it. Upgrade this replica when you can"
            );
        }
        Ok(status)
    }

    /// Refuses a schema that lacks a migration this build knows, or that a
    /// newer release made incompatible with it (see
    /// [`Store::check_compatible`]).
    pub async fn require_migrated(&self) -> Result<(), StoreError> {
        let status = self.check_compatible().await?;
        if !status.pending.is_empty() {
            return Err(SchemaError::Pending {
                pending: status.pending,
                known: Migrator::migrations().len(),
            }
            .into());
        }
        Ok(())
    }

    /// Applies the pending migrations, after checking that this build may
    /// run on the schema at all; on PostgreSQL on a connection of its own
    /// with the store's migration lock timeout.
    pub(super) async fn apply_migrations(&self) -> Result<(), StoreError> {
        self.check_compatible().await?;
        if self.dialect != Dialect::Postgres {
            Migrator::apply_pending(&self.db)
                .await
                .map_err(SchemaError::from)?;
            return Ok(());
        }
        let migrating = self.migration_connection().await?;
        let applied = Migrator::apply_pending(&migrating).await;
        // Closed first, so the transactions listed below are others'.
        migrating.close().await?;
        match applied {
            Err(failed) if is_lock_timeout(&failed.source) => {
                let holders = open_transactions(&self.db).await;
                Err(SchemaError::LockTimeout {
                    migration: failed.migration,
                    timeout: self.options.migration_lock_timeout,
                    holders,
                }
                .into())
            }
            Err(failed) => Err(SchemaError::Failed(failed).into()),
            Ok(()) => Ok(()),
        }
    }

    /// One connection to this store's PostgreSQL database whose statements
    /// wait at most the migration lock timeout for a lock.
    async fn migration_connection(&self) -> Result<DatabaseConnection, StoreError> {
        let timeout = format!("{}ms", self.options.migration_lock_timeout.as_millis());
        let mut options = ConnectOptions::new(self.url.clone());
        options
            .sqlx_logging(false)
            .max_connections(1)
            .map_sqlx_postgres_opts(move |opts| opts.options([("lock_timeout", timeout.clone())]));
        Ok(Database::connect(options).await?)
    }
}

/// Whether `error` is PostgreSQL's lock timeout.
fn is_lock_timeout(error: &DbErr) -> bool {
    match error {
        DbErr::Query(RuntimeErr::SqlxError(sqlx)) | DbErr::Exec(RuntimeErr::SqlxError(sqlx)) => {
            sqlx.as_database_error()
                .and_then(|database| database.code())
                .is_some_and(|code| code == LOCK_NOT_AVAILABLE)
        }
        _ => false,
    }
}

/// The other transactions open in the database, oldest first, as text for
/// the operator: one of them held the lock a migration waited for.
async fn open_transactions(db: &DatabaseConnection) -> String {
    let sql = "SELECT pid, COALESCE(state, ''), \
                   CAST(EXTRACT(EPOCH FROM now() - xact_start) AS BIGINT), \
                   LEFT(regexp_replace(query, '\\s+', ' ', 'g'), 120) \
               FROM pg_stat_activity \
               WHERE datname = current_database() AND pid <> pg_backend_pid() \
                   AND xact_start IS NOT NULL AND backend_type = 'client backend' \
               ORDER BY xact_start LIMIT 5";
    let rows = match db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
    {
        Ok(rows) => rows,
        Err(error) => return format!("the open transactions could not be listed: {error}"),
    };
    let described: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            let pid: i32 = row.try_get_by_index(0).ok()?;
            let state: String = row.try_get_by_index(1).ok()?;
            let seconds: i64 = row.try_get_by_index(2).ok()?;
            let query: String = row.try_get_by_index(3).ok()?;
            Some(format!(
                "pid {pid}, {state} for {seconds}s, last statement `{query}`"
            ))
        })
        .collect();
    if described.is_empty() {
        return "no other transaction is open now; the one that held it has ended".to_owned();
    }
    format!(
        "transactions open in the database, one of which held the lock: {}",
        described.join("; ")
    )
}
