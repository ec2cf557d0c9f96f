//! Storage: every query Herald runs, behind one [`Store`] over SeaORM.
//!
//! Consumes domain values from `api/` and `scheduler/`; produces the records
//! in [`records`]. Knows nothing of gRPC or HTTP. The hot path (enqueue,
//! claim, complete) is hand-written SQL with one shape for both backends:
//! only "now" and the row-locking clause differ (see [`Dialect`]). Reads
//! of deliveries and outcomes that are not hot (get, list) go through the
//! SeaORM entities; destinations, read with what is in flight there and
//! their recent attempts, are read in SQL too.
//!
//! Times are Unix epoch milliseconds computed by the database, so replicas
//! with skewed clocks still agree on what is due and which lease expired.

mod audit;
mod backlog;
mod claim;
mod complete;
mod destination_admin;
mod destinations;
mod dialect;
mod endpoints;
mod enqueue;
mod entity;
mod event_types;
mod events;
mod feed_append;
mod group_commit;
mod hand_over;
mod health;
mod nodelay;
mod notify;
mod open;
mod operate;
mod outcomes;
mod publish;
mod read;
pub mod records;
mod redrive;
mod retention;
mod schema;
mod sealed_secrets;
mod sql;
mod stranded;
mod tenants;
mod unreadable;

use std::{sync::Arc, time::Duration};

use crate::domain::HttpRequest;
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DbBackend, DbErr, RuntimeErr, Statement, Value,
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
};

pub use audit::{Actor, AuditCursor, AuditKind, AuditQuery, AuditRecord};
pub use backlog::Backlog;
pub use claim::{ClaimRequest, Claimed};
pub use complete::{CircuitChange, DestinationChange};
pub use destination_admin::DestinationPage;
use dialect::Dialect;
pub use endpoints::{EndpointChange, EndpointPage, EndpointRecord, NewEndpoint};
pub use event_types::{EventTypeChange, EventTypeRecord};
pub use events::{EventDelivery, EventPage, MAX_EVENT_DELIVERIES};
pub use group_commit::GroupCommit;
pub use hand_over::HandOver;
pub use notify::{Channel, Listener};
pub use open::OpenError;
pub use publish::{EndpointDelivery, EventRecord, NewEvent, Published, Skipped};
pub use read::PageCursor;
pub use schema::SchemaError;
pub use sealed_secrets::StoredSecrets;
pub use tenants::{ApiKeySummary, Revoked, TenantSummary};

/// Errors from the store, typed so that `api/` can map each once.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The idempotency key was used before for a different request.
    #[error(
        "idempotency key {key:?} was already used for a different request (delivery {existing})"
    )]
    IdempotencyConflict {
        /// The key that collided.
        key: String,
        /// The delivery created by the first use of the key.
        existing: uuid::Uuid,
    },
    /// The delivery's destination is disabled: it failed without a
    /// success for too long, or an operator disabled it.
    #[error(
        "destination {destination} is disabled ({}); enable it with `herald destinations enable {destination}` (EnableDestination), then redrive its dead letters",
        reason.as_deref().unwrap_or("no reason recorded")
    )]
    DestinationDisabled {
        /// `scheme://host:port`.
        destination: String,
        /// Why it was disabled.
        reason: Option<String>,
    },
    /// No destination of the caller's tenant has this name.
    #[error("destination {0} not found; `herald destinations list` shows them")]
    DestinationNotFound(String),
    /// A pause, resume or enable of a destination not in the state it
    /// starts from.
    #[error(transparent)]
    DestinationState(#[from] crate::destinations::state::WrongState),
    /// A destination's policy would be out of range.
    #[error(transparent)]
    InvalidPolicy(#[from] crate::destinations::policy::PolicyError),
    /// `herald tenant create` named a tenant that exists.
    #[error("tenant {0:?} already exists")]
    TenantExists(String),
    /// A tenant command named a tenant that does not exist.
    #[error("no tenant is named {0:?}; `herald tenant list` shows them")]
    TenantNotFound(String),
    /// The database URL names a backend Herald does not run on (its
    /// password hidden).
    #[error("unsupported database URL {0:?}: use sqlite://FILE or postgres://...")]
    UnsupportedUrl(String),
    /// A stored secret cannot be opened with the keys configured here.
    #[error(transparent)]
    Sealed(#[from] crate::secrets::OpenError),
    /// A row holds a value this build cannot read.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The transaction holding this enqueue and others failed; nothing of
    /// it was stored.
    #[error("storing a group of enqueues or publishes failed: {message}")]
    GroupFailed {
        /// The database's error, as text (it is shared by the group).
        message: String,
        /// Whether the database was unreachable (worth retrying shortly).
        unavailable: bool,
    },
    /// The server is stopping and takes no more enqueues.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// A read for the API (a listing, a lookup, the backlog) ran longer
    /// than it may (PostgreSQL's statement timeout).
    #[error(
        "the read took longer than {0:?} and was stopped; narrow a listing with filters (state, \
         destination_host, created_after_time, created_before_time) or a smaller page_size"
    )]
    ListingTimedOut(Duration),
    /// The database failed or could not be reached.
    #[error(transparent)]
    Database(#[from] DbErr),
    /// The database is not there to use yet; the message says what to do.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// This build will not run on the schema, or could not migrate it;
    /// the message says what to do.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The listening connection failed.
    #[error("listening for work: {0}")]
    Listen(#[from] sea_orm::sqlx::Error),
}

/// How often a replica waiting to migrate asks for its turn again.
const MIGRATION_TURN_POLL: Duration = Duration::from_millis(100);

/// PostgreSQL's pool. Two connections are held by `LISTEN`.
const POSTGRES_CONNECTIONS: u32 = 16;
/// SQLite's pool: it allows one writer at a time, and a small pool keeps
/// connections queueing here instead of on the write lock.
const SQLITE_CONNECTIONS: u32 = 4;
/// Most watcher replay reads ([`Store::outcomes_after`]) at once on
/// PostgreSQL: six of the sixteen, so however many watchers replay, eight
/// connections are left for claims, completions and the API.
const POSTGRES_REPLAY_READS: usize = 6;
/// Most watcher replay reads at once on SQLite: two of the four.
const SQLITE_REPLAY_READS: usize = 2;

/// Connections of the read pool unless configured (`HERALD_READ_POOL_SIZE`).
pub const DEFAULT_READ_CONNECTIONS: u32 = 4;
/// Longest a migration statement waits for a lock on PostgreSQL unless
/// configured (`HERALD_MIGRATION_LOCK_TIMEOUT`).
pub const DEFAULT_MIGRATION_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// How a store is opened, beyond its URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Connections of the pool the read-only API calls use (listings,
    /// lookups, the backlog), apart from the one enqueues, the scheduler
    /// and every write use, so readers cannot take the writers'
    /// connections however many or slow they are.
    pub read_connections: u32,
    /// Longest a migration statement waits for a lock on PostgreSQL
    /// before it gives up.
    pub migration_lock_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            read_connections: DEFAULT_READ_CONNECTIONS,
            migration_lock_timeout: DEFAULT_MIGRATION_LOCK_TIMEOUT,
        }
    }
}

/// Handle to Herald's database; cheap to clone (a pool inside).
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    /// The read-only API calls' own pool (see [`StoreOptions`]).
    reads: DatabaseConnection,
    /// The URL it was opened with, for the migrating connection.
    url: String,
    /// How it was opened.
    options: StoreOptions,
    dialect: Dialect,
    /// Tags this store's announcements, so its listeners can pass over
    /// their own echo (see [`notify`]).
    origin: uuid::Uuid,
    /// SQLite only: whose turn it is to write (see [`Store::write_turn`]).
    write_gate: Option<Arc<tokio::sync::Mutex<()>>>,
    /// Permits for watcher replay reads, fewer than the pool's
    /// connections: slow watchers replaying from storage queue here, not
    /// in the pool, where the scheduler's writes would wait behind them
    /// into the acquire timeout and lose their leases.
    replay_reads: Arc<tokio::sync::Semaphore>,
    /// PostgreSQL only: where each destination's due rows begin, as the
    /// latest hand-over found (see [`hand_over`]).
    fronts: Option<Arc<hand_over::Fronts>>,
}

impl Store {
    /// Connects to `url` with the default [`StoreOptions`]. A SQLite file
    /// is created if missing and runs in WAL mode with full fsync, so an
    /// acknowledged enqueue survives a crash.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, StoreOptions::default()).await
    }

    /// Connects to `url` as [`Store::connect`] does, with `options`.
    pub async fn connect_with(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        Self::open(url, open::Create::IfMissing, options).await
    }

    /// Connects to `url`, creating a missing SQLite file only if `create`
    /// says so.
    async fn open(
        url: &str,
        create: open::Create,
        store_options: StoreOptions,
    ) -> Result<Self, StoreError> {
        let dialect = Dialect::from_url(url)
            .ok_or_else(|| StoreError::UnsupportedUrl(crate::config::redact_url(url)))?;
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .sqlx_logging(false)
            .acquire_timeout(Duration::from_secs(10))
            // A connection taken from the pool is pinged only if it sat idle
            // long enough to have been dropped by the server or a proxy; the
            // default pings on every checkout, a round trip per statement.
            .test_before_acquire_if_idle_for(Duration::from_secs(30))
            .map_sqlx_sqlite_opts(move |opts| {
                opts.create_if_missing(create == open::Create::IfMissing)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
            });
        if dialect == Dialect::Postgres {
            options.map_sqlx_postgres_pool_opts(|pool| {
                pool.after_connect(|connection, _| Box::pin(nodelay::disable_nagle(connection)))
            });
        }
        let mut read_options = options.clone();
        read_options.max_connections(store_options.read_connections);
        options.max_connections(match dialect {
            Dialect::Sqlite => SQLITE_CONNECTIONS,
            Dialect::Postgres => POSTGRES_CONNECTIONS,
        });
        if dialect == Dialect::Postgres {
            open::probe_postgres(url).await?;
        }
        let db = Database::connect(options)
            .await
            .map_err(|error| open::explain(url, dialect, create, error))?;
        let reads = Database::connect(read_options).await?;
        Ok(Self {
            db,
            reads,
            url: url.to_owned(),
            options: store_options,
            dialect,
            origin: uuid::Uuid::new_v4(),
            write_gate: (dialect == Dialect::Sqlite).then(Arc::default),
            replay_reads: Arc::new(tokio::sync::Semaphore::new(match dialect {
                Dialect::Sqlite => SQLITE_REPLAY_READS,
                Dialect::Postgres => POSTGRES_REPLAY_READS,
            })),
            fronts: (dialect == Dialect::Postgres).then(Arc::default),
        })
    }

    /// Applies every pending migration, once this build is found fit to
    /// run on the schema (see [`schema`]). On PostgreSQL, replicas starting
    /// at the same time take turns (a session advisory lock on a connection
    /// of its own), so the second finds nothing left to do instead of
    /// failing on tables the first just created.
    ///
    /// A replica waiting for its turn asks again every
    /// [`MIGRATION_TURN_POLL`] rather than blocking in `pg_advisory_lock`:
    /// a blocked statement holds a snapshot, and an index built
    /// `CONCURRENTLY` by the replica migrating waits for every older
    /// snapshot to end, so the two would wait on each other for ever.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        if self.dialect != Dialect::Postgres {
            return self.apply_migrations().await;
        }
        let mut turn = self.db.get_postgres_connection_pool().acquire().await?;
        loop {
            let taken: bool = sea_orm::sqlx::query_scalar("SELECT pg_try_advisory_lock(7255002)")
                .fetch_one(&mut *turn)
                .await?;
            if taken {
                break;
            }
            tokio::time::sleep(MIGRATION_TURN_POLL).await;
        }
        let migrated = self.apply_migrations().await;
        let unlocked = sea_orm::sqlx::query("SELECT pg_advisory_unlock(7255002)")
            .execute(&mut *turn)
            .await;
        migrated?;
        unlocked?;
        Ok(())
    }

    /// How many transactions may usefully write at once, for the enqueue
    /// group commit and the completer alike: one on SQLite, which has a
    /// single writer, and two on PostgreSQL: one commits while the other
    /// gathers the next group. More writers made smaller groups and more
    /// statements: 64 unary callers on 2 cores gave 4,806-5,316/s with
    /// four, 5,236-6,013/s with two (BENCHMARKS.md, up to commit 0703419).
    pub fn writers(&self) -> usize {
        match self.dialect {
            Dialect::Sqlite => 1,
            Dialect::Postgres => 2,
        }
    }

    /// Whether other processes announce their changes (PostgreSQL's
    /// `NOTIFY`); on SQLite they must be looked for.
    pub fn announces(&self) -> bool {
        self.dialect == Dialect::Postgres
    }

    /// On SQLite, waits for this store's turn to write, held until the
    /// guard drops; `None` (no wait) on PostgreSQL. SQLite takes one writer
    /// at a time, and a writer that finds the file locked sleeps in its busy
    /// handler for 1, 2, 5, 10, 25, up to 100 ms before it looks again: under
    /// load that put 100 ms and more on an enqueue. Queued here, in
    /// order, the next writer starts the moment the last one commits.
    /// Other processes on the same file (`herald` subcommands) still meet
    /// the busy handler, which is rare and harmless.
    async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.write_gate {
            Some(gate) => Some(Arc::clone(gate).lock_owned().await),
            None => None,
        }
    }

    /// A new lease token, its first half this store's own (see
    /// [`Store::own_leases`]).
    fn lease_token(&self) -> uuid::Uuid {
        let (own, _) = self.origin.as_u64_pair();
        let (_, random) = uuid::Uuid::new_v4().as_u64_pair();
        uuid::Uuid::from_u64_pair(own, random)
    }

    /// The first and last lease token this store can hand out: its leases
    /// told apart from other replicas' in one comparison (tokens compare
    /// byte by byte on both databases).
    fn own_leases(&self) -> (uuid::Uuid, uuid::Uuid) {
        let (own, _) = self.origin.as_u64_pair();
        (
            uuid::Uuid::from_u64_pair(own, 0),
            uuid::Uuid::from_u64_pair(own, u64::MAX),
        )
    }

    fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// A statement from a `$n`/`{now}` template in this store's dialect.
    fn statement(&self, template: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(self.backend(), self.dialect.sql(template), values)
    }

    /// Closes the pools, waiting for connections in use to be returned.
    pub async fn close(self) -> Result<(), StoreError> {
        self.reads.close().await?;
        self.db.close().await?;
        Ok(())
    }
}

impl StoreError {
    /// Whether the database could not be reached (as opposed to refusing
    /// or failing a statement): no connection to be had, or the one in use
    /// lost under the statement (the database, or the network, closed it).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Database(DbErr::ConnectionAcquire(_) | DbErr::Conn(_)) => true,
            Self::Database(
                DbErr::Exec(RuntimeErr::SqlxError(error))
                | DbErr::Query(RuntimeErr::SqlxError(error)),
            ) => matches!(
                **error,
                sea_orm::sqlx::Error::Io(_) | sea_orm::sqlx::Error::PoolTimedOut
            ),
            Self::GroupFailed { unavailable, .. } => *unavailable,
            _ => false,
        }
    }
}

impl From<crate::domain::UnknownValue> for StoreError {
    fn from(error: crate::domain::UnknownValue) -> Self {
        Self::Corrupt(error.to_string())
    }
}

/// Rebuilds the frozen request from its stored columns.
fn http_request(
    method: String,
    url: String,
    headers_json: &str,
    body: Vec<u8>,
    content_type: Option<String>,
) -> Result<HttpRequest, StoreError> {
    Ok(HttpRequest {
        method: method.parse()?,
        url,
        headers: serde_json::from_str(headers_json)
            .map_err(|error| StoreError::Corrupt(format!("headers: {error}")))?,
        content_type,
        body: body.into(),
    })
}

/// Reads a stored HTTP status code.
fn status_code(code: Option<i32>) -> Result<Option<u16>, StoreError> {
    code.map(|code| {
        u16::try_from(code).map_err(|_| StoreError::Corrupt(format!("status code {code}")))
    })
    .transpose()
}

/// Converts a stored integer column to the unsigned type the domain uses.
fn unsigned(value: i32, column: &str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column} is negative: {value}")))
}

/// Converts a duration to whole milliseconds for SQL arithmetic.
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
