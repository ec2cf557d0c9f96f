//! Opening the database, and saying what to do when that fails: only
//! `serve` and `migrate` create a SQLite file; the operator commands open
//! an existing, migrated database or refuse, naming the command that
//! creates it.

use std::{collections::HashSet, path::PathBuf};

use herald_migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DbErr, Statement};

use super::{Dialect, Store, StoreError};
use crate::config::redact_url;

/// Whether opening a SQLite database may create its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Create the file if it is missing (`serve`, `migrate`).
    IfMissing,
    /// Refuse a missing file (the operator commands).
    Never,
}

/// A database that is not there to use yet, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The SQLite file does not exist, and this command does not create one.
    #[error(
        "the SQLite database {path} does not exist; run `herald migrate` or `herald serve` with this database URL first to create it, or check the URL (relative paths are from the current directory)"
    )]
    SqliteMissing {
        /// The file the URL names.
        path: PathBuf,
    },
    /// The schema lacks migrations this build knows.
    #[error(
        "the database {url} is not migrated ({pending} of {known} migrations pending); run `herald migrate` or `herald serve` first"
    )]
    NotMigrated {
        /// The database, its password hidden.
        url: String,
        /// Migrations not applied yet.
        pending: usize,
        /// Migrations this build knows.
        known: usize,
    },
}

/// Names the SQLite file `url` points at when connecting failed because
/// it does not exist.
pub(super) fn explain(url: &str, dialect: Dialect, create: Create, error: DbErr) -> StoreError {
    if dialect == Dialect::Sqlite
        && create == Create::Never
        && let Some(path) = sqlite_file(url)
        && !path.exists()
    {
        return OpenError::SqliteMissing { path }.into();
    }
    error.into()
}

/// The file a `sqlite:` URL names.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    url.parse::<sea_orm::sqlx::sqlite::SqliteConnectOptions>()
        .ok()
        .map(|options| options.get_filename().to_owned())
}

impl Store {
    /// Opens an existing database whose schema has every migration this
    /// build knows, for the commands that must not create or change one
    /// (`tenant`, `key`).
    pub async fn open_existing(url: &str) -> Result<Self, StoreError> {
        let store = Self::open(url, Create::Never).await?;
        let known = Migrator::migrations().len();
        let applied = store.applied_migrations().await?;
        let pending = Migrator::migrations()
            .iter()
            .filter(|migration| !applied.contains(migration.name()))
            .count();
        if pending > 0 {
            return Err(OpenError::NotMigrated {
                url: redact_url(url),
                pending,
                known,
            }
            .into());
        }
        Ok(store)
    }

    /// The names of the migrations applied, read without creating the
    /// migrations table (an empty set when it does not exist).
    async fn applied_migrations(&self) -> Result<HashSet<String>, StoreError> {
        let exists = match self.dialect {
            Dialect::Sqlite => {
                "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'seaql_migrations'"
            }
            Dialect::Postgres => "SELECT to_regclass('seaql_migrations') IS NOT NULL",
        };
        let backend = self.db.get_database_backend();
        let row = self
            .db
            .query_one_raw(Statement::from_string(backend, exists))
            .await?;
        let exists: bool = match row {
            Some(row) => row.try_get_by_index(0)?,
            None => false,
        };
        if !exists {
            return Ok(HashSet::new());
        }
        let rows = self
            .db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT version FROM seaql_migrations",
            ))
            .await?;
        rows.iter()
            .map(|row| row.try_get_by_index::<String>(0).map_err(StoreError::from))
            .collect()
    }
}
