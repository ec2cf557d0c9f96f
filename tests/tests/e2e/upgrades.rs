//! Upgrades: the previous release's statements on the schema this one
//! migrates to; a build meeting a schema a newer release migrated;
//! migrations stopped halfway, or waiting for a lock; serving a schema
//! that lacks migrations without migrating it.

use std::time::Duration;

use herald_migration::{
    DbErr, MigrationName, MigrationTrait, Migrator, MigratorTrait, SchemaManager, async_trait,
    compat,
};
use herald_server::store::{Store, StoreError, StoreOptions};
use herald_tests::{Backend, TestDb, herald_output, on_both_backends, test_config};
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, TransactionTrait, Value,
};

use crate::HERALD;

on_both_backends!(
    the_previous_releases_enqueue_runs_on_the_new_schema,
    a_newer_additive_migration_is_run_on_with_a_warning,
    a_newer_incompatible_migration_is_refused_with_what_to_do,
    serving_without_migrating_refuses_a_schema_that_lacks_migrations,
    tenant_security_stopped_halfway_is_finished_by_the_next_run,
    operations_stopped_halfway_is_finished_by_the_next_run,
);

/// The enqueue insert of the release before the keyed idempotency index
/// (migration 4), as it ran: its `ON CONFLICT` names the columns without
/// the partial index's `WHERE`.
const PREVIOUS_INSERT: &str = "\
INSERT INTO deliveries (id, tenant_id, url, destination, host, method, headers, body, content_type, \
    idempotency_key, request_hash, state, attempt_count, max_attempts, attempt_budget, deadline_at_ms, \
    next_attempt_at_ms, created_at_ms, updated_at_ms, traceparent, tracestate, lease_token) \
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', 0, $12, $12, NULL, \
    $13, $13, $13, NULL, NULL, NULL) \
ON CONFLICT (tenant_id, idempotency_key) DO NOTHING \
RETURNING id";

/// That release's look-up of a key's delivery after a skipped insert.
const PREVIOUS_FIND_BY_KEY: &str =
    "SELECT id, request_hash FROM deliveries WHERE tenant_id = $1 AND idempotency_key = $2";

/// `sql` with `$n` placeholders, in `backend`'s spelling.
fn statement(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = match backend {
        DbBackend::Postgres => sql.to_owned(),
        _ => sql.replace('$', "?"),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// A replica of the previous release enqueueing with key `key` on the
/// migrated schema: the id it gets back, `None` when the key was taken.
async fn previous_enqueue(db: &DatabaseConnection, key: &str) -> Option<uuid::Uuid> {
    let backend = db.get_database_backend();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    let values: Vec<Value> = vec![
        uuid::Uuid::now_v7().into(),
        "default".into(),
        "http://127.0.0.1:9/old".into(),
        "http://127.0.0.1:9".into(),
        "127.0.0.1".into(),
        "POST".into(),
        "[]".into(),
        b"old".to_vec().into(),
        Some("application/json".to_owned()).into(),
        key.into(),
        "0".repeat(64).into(),
        5i32.into(),
        i64::try_from(now).expect("ms fit").into(),
    ];
    let rows = db
        .query_all_raw(statement(backend, PREVIOUS_INSERT, values))
        .await
        .expect("the previous release's insert runs on the new schema");
    rows.first()
        .map(|row| row.try_get_by_index::<uuid::Uuid>(0).expect("an id"))
}

/// A replica of the previous release keeps enqueueing once this release
/// migrated the schema (PostgreSQL answered its `ON CONFLICT` with 42P10,
/// SQLite with "does not match any PRIMARY KEY or UNIQUE constraint"),
/// its keys stay unique, and this release sees its deliveries under them.
async fn the_previous_releases_enqueue_runs_on_the_new_schema(backend: Backend) {
    let Some((db, store)) = crate::store::store(backend).await else {
        return;
    };
    let old = Database::connect(db.url()).await.expect("connect");
    let first = previous_enqueue(&old, "old-order-1")
        .await
        .expect("created");
    assert_eq!(
        previous_enqueue(&old, "old-order-1").await,
        None,
        "the key is taken"
    );
    let found = old
        .query_one_raw(statement(
            old.get_database_backend(),
            PREVIOUS_FIND_BY_KEY,
            vec!["default".into(), "old-order-1".into()],
        ))
        .await
        .expect("look up the key")
        .expect("a row");
    assert_eq!(found.try_get_by_index::<uuid::Uuid>(0).unwrap(), first);
    // This release under the same key finds the old replica's delivery.
    let again = herald_server::store::records::NewDelivery {
        idempotency_key: Some("old-order-1".into()),
        ..crate::store::delivery(1)
    };
    let results = store.enqueue_batch(&[again]).await.expect("stored");
    match &results[0] {
        Ok(enqueued) => assert!(!enqueued.created && enqueued.id == first, "{enqueued:?}"),
        Err(StoreError::IdempotencyConflict { existing, .. }) => assert_eq!(*existing, first),
        Err(other) => panic!("{other}"),
    }
    // And keyless deliveries of either release never collide.
    assert!(
        crate::store::enqueue(&store, crate::store::delivery(2))
            .await
            .created
    );
    assert!(
        crate::store::enqueue(&store, crate::store::delivery(2))
            .await
            .created
    );
    old.close().await.expect("close");
    store.close().await.expect("close");
    db.drop_database().await;
}

/// A migration of a release newer than this build: additive (a table).
struct NewerAdditive;

impl MigrationName for NewerAdditive {
    fn name(&self) -> &str {
        "m20991231_000001_newer_additive"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for NewerAdditive {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("CREATE TABLE newer_things (id BIGINT PRIMARY KEY)")
            .await?;
        Ok(())
    }
}

/// A migration of a release newer than this build after which only builds
/// that know it can run.
struct NewerBreaking;

impl MigrationName for NewerBreaking {
    fn name(&self) -> &str {
        "m20991231_000002_newer_breaking"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for NewerBreaking {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        compat::require_known(manager, self.name(), self.name()).await
    }
}

/// The newer release's migrations: this build's, then `newer`.
struct NewerMigrator<const BREAKING: bool>;

#[async_trait::async_trait]
impl<const BREAKING: bool> MigratorTrait for NewerMigrator<BREAKING> {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations = Migrator::migrations();
        migrations.push(Box::new(NewerAdditive));
        if BREAKING {
            migrations.push(Box::new(NewerBreaking));
        }
        migrations
    }
}

/// A database a newer release migrated: this build's migrations, then the
/// newer ones.
async fn migrated_by_a_newer_release<const BREAKING: bool>(backend: Backend) -> Option<TestDb> {
    let db = TestDb::create(backend).await?;
    // `serve` creates a SQLite file; the newer release's migrator does not.
    Store::connect(db.url())
        .await
        .expect("create")
        .close()
        .await
        .expect("close");
    let newer = Database::connect(db.url()).await.expect("connect");
    NewerMigrator::<BREAKING>::up(&newer, None)
        .await
        .expect("the newer release migrates");
    newer.close().await.expect("close");
    Some(db)
}

/// This build on a schema with an additive migration it does not know:
/// `herald migrate` succeeds with a warning naming it, and `serve` runs
/// on it, migrating or not.
async fn a_newer_additive_migration_is_run_on_with_a_warning(backend: Backend) {
    let Some(db) = migrated_by_a_newer_release::<false>(backend).await else {
        return;
    };
    let output = herald_output(HERALD, &[("HERALD_DATABASE_URL", db.url())], &["migrate"]);
    // `migrate` narrates on stdout, as `serve` does.
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        said.contains("WARN") && said.contains("newer Herald") && said.contains("newer_additive"),
        "a warning names the migration: {said}"
    );
    for migrate in [true, false] {
        let config = herald_server::Config {
            migrate,
            ..test_config(db.url())
        };
        let server = herald_server::start(config)
            .await
            .expect("serves on a schema with a newer additive migration");
        let mut client = herald_proto::v1::delivery_service_client::DeliveryServiceClient::connect(
            format!("http://{}", server.local_addr()),
        )
        .await
        .expect("connect");
        client
            .enqueue(herald_proto::v1::EnqueueRequest {
                url: "http://127.0.0.1:9/newer".into(),
                body: b"{}".to_vec(),
                ..Default::default()
            })
            .await
            .expect("enqueues");
        server.shutdown().await.expect("stops");
    }
    db.drop_database().await;
}

/// This build on a schema whose newer migration requires builds that know
/// it: `serve` and `herald migrate` refuse, naming the migration and what
/// to run instead, and change nothing.
async fn a_newer_incompatible_migration_is_refused_with_what_to_do(backend: Backend) {
    let Some(db) = migrated_by_a_newer_release::<true>(backend).await else {
        return;
    };
    for migrate in [true, false] {
        let config = herald_server::Config {
            migrate,
            ..test_config(db.url())
        };
        let Err(error) = herald_server::start(config).await else {
            panic!("served on a schema it cannot run with");
        };
        let message = error.to_string();
        assert!(
            message.contains("newer Herald")
                && message.contains("newer_breaking needs a build that knows")
                && message.contains("release"),
            "{message}"
        );
    }
    let output = herald_output(HERALD, &[("HERALD_DATABASE_URL", db.url())], &["migrate"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "migrate refuses: {stderr}");
    assert!(stderr.contains("newer_breaking"), "{stderr}");
    db.drop_database().await;
}

/// `serve` with `migrate = false` on a schema lacking this build's last
/// migration refuses to start, naming it and `herald migrate`; once
/// migrated, it serves.
async fn serving_without_migrating_refuses_a_schema_that_lacks_migrations(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = Store::connect(db.url()).await.expect("create");
    let all = Migrator::migrations();
    let last = all.last().expect("migrations").name().to_owned();
    let schema = Database::connect(db.url()).await.expect("connect");
    Migrator::up(&schema, Some(u32::try_from(all.len() - 1).expect("few")))
        .await
        .expect("all but the last");
    let config = || herald_server::Config {
        migrate: false,
        ..test_config(db.url())
    };
    let Err(error) = herald_server::start(config()).await else {
        panic!("served on a schema lacking a migration");
    };
    let message = error.to_string();
    assert!(
        message.contains(&last) && message.contains("herald migrate"),
        "{message}"
    );
    store.migrate().await.expect("migrate");
    let server = herald_server::start(config()).await.expect("serves");
    server.shutdown().await.expect("stops");
    schema.close().await.expect("close");
    store.close().await.expect("close");
    db.drop_database().await;
}

/// `db` migrated through the first `count` migrations, and a connection
/// to it.
async fn migrated_through(backend: Backend, count: u32) -> Option<(TestDb, DatabaseConnection)> {
    let db = TestDb::create(backend).await?;
    Store::connect(db.url())
        .await
        .expect("create")
        .close()
        .await
        .expect("close");
    let schema = Database::connect(db.url()).await.expect("connect");
    Migrator::up(&schema, Some(count))
        .await
        .expect("the first migrations");
    Some((db, schema))
}

/// Migrates `db` with this build, and checks it then stores deliveries.
async fn migrate_and_enqueue(db: &TestDb) {
    let store = Store::connect(db.url()).await.expect("connect");
    store
        .migrate()
        .await
        .expect("the rerun finishes the schema");
    store.require_migrated().await.expect("nothing pending");
    assert!(
        crate::store::enqueue(&store, crate::store::delivery(1))
            .await
            .created
    );
    store.close().await.expect("close");
}

/// The tenant-security migration (2) stopped after its table, its index
/// and one of its three columns, as a crash left it on SQLite, where it
/// ran outside a transaction: the next run finishes it.
async fn tenant_security_stopped_halfway_is_finished_by_the_next_run(backend: Backend) {
    let Some((db, schema)) = migrated_through(backend, 1).await else {
        return;
    };
    for sql in [
        "CREATE TABLE api_keys (id VARCHAR(32) NOT NULL PRIMARY KEY, \
             tenant_id VARCHAR(64) NOT NULL REFERENCES tenants (id), \
             key_hash VARCHAR(64) NOT NULL, created_at_ms BIGINT NOT NULL, \
             revoked_at_ms BIGINT)",
        "CREATE UNIQUE INDEX api_keys_key_hash_idx ON api_keys (key_hash)",
        "ALTER TABLE tenants ADD COLUMN signing_secret TEXT",
    ] {
        schema.execute_unprepared(sql).await.expect("half of it");
    }
    schema.close().await.expect("close");
    migrate_and_enqueue(&db).await;
    db.drop_database().await;
}

/// The operations migration (3) stopped after its first column (on
/// PostgreSQL, after its columns' transaction and before its index): the
/// next run finishes it.
async fn operations_stopped_halfway_is_finished_by_the_next_run(backend: Backend) {
    let Some((db, schema)) = migrated_through(backend, 2).await else {
        return;
    };
    schema
        .execute_unprepared("ALTER TABLE deliveries ADD COLUMN traceparent TEXT")
        .await
        .expect("half of it");
    schema.close().await.expect("close");
    migrate_and_enqueue(&db).await;
    db.drop_database().await;
}

/// A migration that waits longer than the lock timeout for a lock (here
/// the operations migration's `ALTER TABLE deliveries`, behind a
/// transaction that read the table) stops with what held it and what to
/// do, instead of queueing every enqueue behind itself; run again once
/// that transaction ended, it completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_waiting_for_a_lock_stops_and_names_what_was_open() {
    let Some((db, schema)) = migrated_through(Backend::Postgres, 2).await else {
        return;
    };
    let holder = schema.begin().await.expect("begin");
    let pid: i32 = holder
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_backend_pid() FROM (SELECT COUNT(*) FROM deliveries) AS read",
        ))
        .await
        .expect("read deliveries")
        .expect("a row")
        .try_get_by_index(0)
        .expect("a pid");
    let options = StoreOptions {
        migration_lock_timeout: Duration::from_millis(300),
        ..StoreOptions::default()
    };
    let store = Store::connect_with(db.url(), options)
        .await
        .expect("connect");
    let error = tokio::time::timeout(Duration::from_secs(10), store.migrate())
        .await
        .expect("the migration gives up at its lock timeout")
        .expect_err("it cannot take the lock");
    let message = error.to_string();
    for expected in [
        "m20261123_000003_operations",
        "300ms",
        &format!("pid {pid}"),
        "herald migrate",
        "HERALD_MIGRATION_LOCK_TIMEOUT",
    ] {
        assert!(message.contains(expected), "{expected:?} in {message}");
    }
    holder.rollback().await.expect("end the transaction");
    store
        .migrate()
        .await
        .expect("migrates once the lock is free");
    store.require_migrated().await.expect("nothing pending");
    schema.close().await.expect("close");
    store.close().await.expect("close");
    db.drop_database().await;
}

/// The operations migration (3) builds its index of `deliveries`
/// `CONCURRENTLY`, outside the transaction that altered the table: while
/// the build waits for an older transaction (which only a concurrent
/// build does), `deliveries` takes writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operations_index_is_built_without_holding_deliveries() {
    let Some((db, schema)) = migrated_through(Backend::Postgres, 2).await else {
        return;
    };
    // A transaction with a snapshot, older than the build, that holds no
    // lock on `deliveries`.
    let older = schema.begin().await.expect("begin");
    older
        .execute_unprepared("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .expect("repeatable read");
    older
        .execute_unprepared("SELECT COUNT(*) FROM tenants")
        .await
        .expect("a snapshot");
    let store = Store::connect(db.url()).await.expect("connect");
    let migrating = tokio::spawn({
        let store = store.clone();
        async move { store.migrate().await }
    });
    let waiting = "SELECT COUNT(*) FROM pg_stat_activity \
                   WHERE query LIKE 'CREATE INDEX CONCURRENTLY%deliveries_finished_idx%' \
                   AND wait_event_type = 'Lock'";
    let started = std::time::Instant::now();
    loop {
        let count: i64 = schema
            .query_one_raw(Statement::from_string(DbBackend::Postgres, waiting))
            .await
            .expect("look")
            .expect("a row")
            .try_get_by_index(0)
            .expect("a count");
        if count > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10) && !migrating.is_finished(),
            "no concurrent build of deliveries_finished_idx waited for the older transaction"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let writer = Database::connect(db.url()).await.expect("connect");
    writer
        .execute_unprepared("SET statement_timeout = '2s'")
        .await
        .expect("set");
    writer
        .execute_unprepared("UPDATE deliveries SET updated_at_ms = updated_at_ms WHERE id IS NULL")
        .await
        .expect("deliveries takes writes during the build");
    older.commit().await.expect("end the older transaction");
    migrating
        .await
        .expect("the migration task")
        .expect("migrated");
    let valid: bool = schema
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT indisvalid FROM pg_index JOIN pg_class ON pg_class.oid = indexrelid \
             WHERE relname = 'deliveries_finished_idx'",
        ))
        .await
        .expect("query")
        .expect("the index exists")
        .try_get_by_index(0)
        .expect("a flag");
    assert!(valid);
    writer.close().await.expect("close");
    schema.close().await.expect("close");
    store.close().await.expect("close");
    db.drop_database().await;
}
