//! Building an index on PostgreSQL without blocking writes to its table.

use sea_orm_migration::prelude::*;

/// Builds the index `name` (`definition`: `ON table (...) [WHERE ...]`)
/// `CONCURRENTLY`, outside any transaction, if it is not there yet (see
/// [`drop_invalid`]).
pub(crate) async fn create_concurrently(
    db: &impl ConnectionTrait,
    name: &str,
    definition: &str,
) -> Result<(), DbErr> {
    drop_invalid(db, name).await?;
    db.execute_unprepared(&format!(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} {definition}"
    ))
    .await?;
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
