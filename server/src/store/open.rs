//! Opening the database, and saying what to do when that fails: only
//! `serve` and `migrate` create a SQLite file; the operator commands open
//! an existing, migrated database or refuse, naming the command that
//! creates it. A SQLite directory or PostgreSQL database that does not
//! exist is named with how to create it, and an unreachable PostgreSQL is
//! reported after one short attempt rather than the pool's long timeout.

use std::{path::PathBuf, time::Duration};

use sea_orm::{
    DbErr,
    sqlx::{Connection, postgres::PgConnectOptions},
};

use super::{Dialect, Store, StoreError, StoreOptions};
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
    /// The directory of the SQLite file does not exist.
    #[error(
        "the directory {} of the SQLite database {path} does not exist; create it (`mkdir -p {}`) or fix the database URL",
        dir.display(), dir.display(), path = path.display()
    )]
    SqliteDirectoryMissing {
        /// The file the URL names.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
    },
    /// The PostgreSQL server answers, but has no database of this name.
    #[error(
        "the PostgreSQL database {name:?} does not exist on {host}:{port}; create it (`createdb -h {host} -p {port} -U {user} {name}`, or `CREATE DATABASE {name};` in psql) and start again"
    )]
    PostgresMissing {
        /// The database the URL names.
        name: String,
        /// The server's host.
        host: String,
        /// The server's port.
        port: u16,
        /// The user the URL names.
        user: String,
    },
    /// Nothing answered at the PostgreSQL server's address in time.
    #[error(
        "cannot reach the database at {url}: {reason}; is PostgreSQL running there, and reachable from here?"
    )]
    Unreachable {
        /// The database, its password hidden.
        url: String,
        /// What the attempt met.
        reason: String,
    },
}

/// How long the first connection to PostgreSQL may take before it is
/// reported as unreachable: well before the pool's 10 s acquire timeout.
const FIRST_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Names the SQLite file, or its directory, that `url` points at when
/// connecting failed because it does not exist.
pub(super) fn explain(url: &str, dialect: Dialect, create: Create, error: DbErr) -> StoreError {
    if dialect == Dialect::Sqlite
        && let Some(path) = sqlite_file(url)
        && !path.exists()
    {
        let dir = path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty() && !dir.exists());
        match (create, dir) {
            (Create::Never, _) => return OpenError::SqliteMissing { path }.into(),
            (Create::IfMissing, Some(dir)) => {
                let dir = dir.to_owned();
                return OpenError::SqliteDirectoryMissing { dir, path }.into();
            }
            (Create::IfMissing, None) => {}
        }
    }
    error.into()
}

/// One short connection to PostgreSQL before the pool is built: a server
/// that does not answer, or a database that does not exist, is reported
/// at once with what to do. Other failures are left to the pool, which
/// reports them as they are.
pub(super) async fn probe_postgres(url: &str) -> Result<(), OpenError> {
    let Ok(options) = url.parse::<PgConnectOptions>() else {
        return Ok(());
    };
    let unreachable = |reason: String| OpenError::Unreachable {
        url: redact_url(url),
        reason,
    };
    let attempt = tokio::time::timeout(
        FIRST_CONNECT_TIMEOUT,
        sea_orm::sqlx::PgConnection::connect_with(&options),
    )
    .await;
    match attempt {
        Err(_) => Err(unreachable(format!(
            "no answer within {}",
            humantime::format_duration(FIRST_CONNECT_TIMEOUT)
        ))),
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            Ok(())
        }
        Ok(Err(sea_orm::sqlx::Error::Io(error))) => Err(unreachable(error.to_string())),
        Ok(Err(sea_orm::sqlx::Error::Database(error)))
            if error.code().as_deref() == Some("3D000") =>
        {
            Err(OpenError::PostgresMissing {
                name: options.get_database().unwrap_or_default().to_owned(),
                host: options.get_host().to_owned(),
                port: options.get_port(),
                user: options.get_username().to_owned(),
            })
        }
        Ok(Err(_)) => Ok(()),
    }
}

/// The file a `sqlite:` URL names.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    url.parse::<sea_orm::sqlx::sqlite::SqliteConnectOptions>()
        .ok()
        .map(|options| options.get_filename().to_owned())
}

impl Store {
    /// Opens an existing database whose schema has every migration this
    /// build knows (and none it cannot run with), for the commands that
    /// must not create or change one (`tenant`, `key`).
    pub async fn open_existing(url: &str) -> Result<Self, StoreError> {
        let store = Self::open(url, Create::Never, StoreOptions::default()).await?;
        store.require_migrated().await?;
        Ok(store)
    }
}
