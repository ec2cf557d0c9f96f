//! Building an index on PostgreSQL without blocking writes to its table.
//!
//! A concurrent build takes a lock that conflicts with no reads or writes
//! (only with other schema changes and VACUUM), then waits for every
//! transaction older than it. Those waits hold no one up, so the build
//! runs without the `lock_timeout` the migrating connection may carry: a
//! long report elsewhere delays the migration, it does not fail it. The
//! statements that take locks reads or writes wait for (dropping an
//! invalid leftover) keep the timeout.

use sea_orm_migration::prelude::*;

/// Builds the index `name` (`definition`: `ON table (...) [WHERE ...]`)
/// `CONCURRENTLY`, outside any transaction, if it is not there yet (see
/// [`drop_invalid`]).
pub(crate) async fn create_concurrently(
    db: &impl ConnectionTrait,
    name: &str,
    definition: &str,
) -> Result<(), DbErr> {
    build(db, "INDEX", name, definition).await
}

/// As [`create_concurrently`], for a unique index.
pub(crate) async fn create_unique_concurrently(
    db: &impl ConnectionTrait,
    name: &str,
    definition: &str,
) -> Result<(), DbErr> {
    build(db, "UNIQUE INDEX", name, definition).await
}

/// Drops the index `name`, if it exists, `CONCURRENTLY`.
pub(crate) async fn drop_concurrently(db: &impl ConnectionTrait, name: &str) -> Result<(), DbErr> {
    without_lock_timeout(db, &format!("DROP INDEX CONCURRENTLY IF EXISTS {name}")).await
}

/// `CREATE {kind} CONCURRENTLY IF NOT EXISTS name definition`, after
/// dropping an invalid leftover of an interrupted build.
async fn build(
    db: &impl ConnectionTrait,
    kind: &str,
    name: &str,
    definition: &str,
) -> Result<(), DbErr> {
    drop_invalid(db, name).await?;
    without_lock_timeout(
        db,
        &format!("CREATE {kind} CONCURRENTLY IF NOT EXISTS {name} {definition}"),
    )
    .await
}

/// Runs `sql` with no lock timeout, then goes back to the connection's own
/// setting (the migrating connection's lock timeout), whether or not it
/// went through. The migrating connection is the only one of its pool, so
/// the three statements run on it.
async fn without_lock_timeout(db: &impl ConnectionTrait, sql: &str) -> Result<(), DbErr> {
    db.execute_unprepared("SET lock_timeout = 0").await?;
    let done = db.execute_unprepared(sql).await;
    db.execute_unprepared("RESET lock_timeout").await?;
    done?;
    Ok(())
}

/// Drops the index `name` if a concurrent build a crash interrupted left
/// it invalid, which `IF NOT EXISTS` would otherwise keep; a valid one is
/// never dropped.
pub(crate) async fn drop_invalid(db: &impl ConnectionTrait, name: &str) -> Result<(), DbErr> {
    db.execute_unprepared(&format!(
        "DO $$ BEGIN \
            IF EXISTS (SELECT 1 FROM pg_index JOIN pg_class ON pg_class.oid = indexrelid \
                       WHERE relname = '{name}' AND NOT indisvalid) THEN \
                DROP INDEX {name}; \
            END IF; \
         END $$"
    ))
    .await?;
    Ok(())
}
