//! A database of its own for each test, dropped afterwards.

use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database};

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on the test PostgreSQL server.
    Postgres,
}

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A test's own database. Tear it down with [`TestDb::drop_database`];
/// if a test panics first, dropping the value does the same (SQLite files
/// vanish with their directory, a PostgreSQL database is dropped).
pub struct TestDb {
    url: String,
    /// `None` once torn down, so that `Drop` has nothing left to do.
    cleanup: Option<Cleanup>,
}

enum Cleanup {
    Sqlite(tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    /// Creates an empty database, or returns `None` (after saying so
    /// loudly) when PostgreSQL is unreachable and not required.
    pub async fn create(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("create a temporary directory");
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("herald.db").display()
                );
                Some(Self {
                    url,
                    cleanup: Some(Cleanup::Sqlite(dir)),
                })
            }
            Backend::Postgres => Self::create_postgres().await,
        }
    }

    /// The URL Herald should use.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn create_postgres() -> Option<Self> {
        let admin_url = std::env::var("HERALD_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let mut options = ConnectOptions::new(admin_url.clone());
        options
            .sqlx_logging(false)
            .max_connections(1)
            .connect_timeout(Duration::from_secs(3))
            .acquire_timeout(Duration::from_secs(3));
        let admin = match Database::connect(options).await {
            Ok(admin) => admin,
            Err(error) => {
                let required =
                    std::env::var("HERALD_REQUIRE_POSTGRES").is_ok_and(|value| value == "1");
                assert!(
                    !required,
                    "HERALD_REQUIRE_POSTGRES=1 but PostgreSQL at {admin_url} is unreachable: {error}"
                );
                crate::skip(&format!(
                    "PostgreSQL at {admin_url} is unreachable ({error}); set \
                     HERALD_TEST_POSTGRES_URL, or HERALD_REQUIRE_POSTGRES=1 to fail instead"
                ));
                return None;
            }
        };
        let name = format!("herald_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        let _ = admin.close().await;
        let mut url = url::Url::parse(&admin_url).expect("HERALD_TEST_POSTGRES_URL is a URL");
        url.set_path(&name);
        Some(Self {
            url: url.into(),
            cleanup: Some(Cleanup::Postgres { admin_url, name }),
        })
    }

    /// Deletes the database now: the SQLite directory, or the PostgreSQL
    /// database (`DROP DATABASE ... WITH (FORCE)`, so connections a test
    /// left open cannot keep it alive). Failing to drop only warns: the
    /// test's verdict stands, and the name says what to clean up by hand.
    pub async fn drop_database(mut self) {
        match self.cleanup.take() {
            Some(Cleanup::Postgres { admin_url, name }) => {
                if let Err(error) = drop_postgres(&admin_url, &name).await {
                    eprintln!("warning: could not drop test database {name}: {error}");
                }
            }
            Some(Cleanup::Sqlite(dir)) => drop(dir),
            None => {}
        }
    }
}

async fn drop_postgres(admin_url: &str, name: &str) -> Result<(), sea_orm::DbErr> {
    let admin = Database::connect(admin_url).await?;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    admin.close().await
}

/// The fallback for tests that end without [`TestDb::drop_database`] (a
/// panic, an early return).
impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(Cleanup::Postgres { admin_url, name }) = self.cleanup.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot block on async
        // work; a short-lived thread with its own runtime can.
        let shown = name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test database");
            runtime.block_on(drop_postgres(&admin_url, &name))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database {shown}: {dropped:?}");
        }
    }
}
