//! Destinations become stored things: one row per tenant and receiver
//! (`scheme://host:port`) with its policy (in-flight limit, rate limit,
//! circuit-breaker thresholds; NULL takes the configured default), its
//! state (active, paused, disabled), its circuit and rate-limiter state,
//! and when it next has work (`next_due_at_ms`, which the claim walks
//! instead of every due delivery). `destination_stats` holds per-minute
//! attempt counts and latency for the recent-window figures.
//!
//! Deliveries are found per destination through a new index on (tenant,
//! destination, due time) of pending rows, and in-flight attempts through
//! a small index of leased rows; both replace the global due index.
//! Outcomes gain a `destination` column, so destination events (circuit
//! opened or closed, paused, disabled) join the same feed.
//!
//! On PostgreSQL the indexes of `deliveries` are built `CONCURRENTLY`,
//! outside a transaction, and every step can run again after a crash.
//! SQLite does it all in one transaction.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

/// Adds `destinations`, `destination_stats` and the per-destination indexes.
#[derive(DeriveMigrationName)]
pub struct Migration;

const CREATE_DESTINATIONS: &str = "\
CREATE TABLE IF NOT EXISTS destinations ( \
    tenant_id VARCHAR(64) NOT NULL REFERENCES tenants (id), \
    destination TEXT NOT NULL, \
    host TEXT NOT NULL, \
    max_in_flight INTEGER, \
    rate_limit INTEGER, \
    rate_period_ms BIGINT, \
    rate_burst INTEGER, \
    circuit_failure_threshold INTEGER, \
    circuit_cooldown_ms BIGINT, \
    circuit_cooldown_max_ms BIGINT, \
    state VARCHAR(16) NOT NULL DEFAULT 'active', \
    state_reason TEXT, \
    state_changed_at_ms BIGINT, \
    circuit_open_until_ms BIGINT, \
    circuit_trips INTEGER NOT NULL DEFAULT 0, \
    consecutive_failures INTEGER NOT NULL DEFAULT 0, \
    hold_until_ms BIGINT, \
    rate_tat_us BIGINT, \
    next_due_at_ms BIGINT, \
    idle BOOLEAN NOT NULL DEFAULT FALSE, \
    failing_since_ms BIGINT, \
    last_success_at_ms BIGINT, \
    last_failure_at_ms BIGINT, \
    created_at_ms BIGINT NOT NULL, \
    updated_at_ms BIGINT NOT NULL, \
    PRIMARY KEY (tenant_id, destination) \
)";

/// The claim walks destinations with work in due order.
const DESTINATIONS_DUE: &str = "\
CREATE INDEX IF NOT EXISTS destinations_due_idx ON destinations (next_due_at_ms) \
WHERE next_due_at_ms IS NOT NULL";

const CREATE_STATS: &str = "\
CREATE TABLE IF NOT EXISTS destination_stats ( \
    tenant_id VARCHAR(64) NOT NULL, \
    destination TEXT NOT NULL, \
    bucket_ms BIGINT NOT NULL, \
    attempts BIGINT NOT NULL, \
    successes BIGINT NOT NULL, \
    duration_us BIGINT NOT NULL, \
    PRIMARY KEY (tenant_id, destination, bucket_ms) \
)";

/// A destination row for every (tenant, destination) that has deliveries,
/// due at its earliest pending delivery.
fn backfill(now: &str) -> String {
    format!(
        "INSERT INTO destinations (tenant_id, destination, host, next_due_at_ms, created_at_ms, \
             updated_at_ms) \
         SELECT tenant_id, destination, MIN(host), \
             MIN(CASE WHEN state = 'pending' THEN next_attempt_at_ms END), {now}, {now} \
         FROM deliveries GROUP BY tenant_id, destination \
         ON CONFLICT (tenant_id, destination) DO NOTHING"
    )
}

/// Index names and definitions on `deliveries`, built after the table.
const DELIVERY_INDEXES: [(&str, &str); 3] = [
    // The claim: a destination's pending rows in FIFO order (due time, then id).
    (
        "deliveries_destination_due_idx",
        "ON deliveries (tenant_id, destination, next_attempt_at_ms, id) WHERE state = 'pending'",
    ),
    // The claim's in-flight count: rows leased and not yet finished.
    (
        "deliveries_leased_idx",
        "ON deliveries (tenant_id, destination) \
         WHERE state = 'pending' AND lease_token IS NOT NULL",
    ),
    // Deadlines that pass while a destination holds its deliveries back
    // (paused, open circuit): only rows that have a deadline.
    (
        "deliveries_deadline_idx",
        "ON deliveries (deadline_at_ms) WHERE state = 'pending' AND deadline_at_ms IS NOT NULL",
    ),
];

/// The global due index, which nothing reads any more.
const GLOBAL_DUE: &str = "deliveries_due_idx";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let postgres = manager.get_database_backend() == DbBackend::Postgres;
        let now = if postgres {
            "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
        } else {
            "CAST(unixepoch('subsec') * 1000 AS INTEGER)"
        };
        if !postgres {
            let txn = manager.begin().await?;
            let db = txn.get_connection();
            db.execute_unprepared(CREATE_DESTINATIONS).await?;
            db.execute_unprepared(DESTINATIONS_DUE).await?;
            db.execute_unprepared(CREATE_STATS).await?;
            db.execute_unprepared("ALTER TABLE outcomes ADD COLUMN destination TEXT")
                .await?;
            db.execute_unprepared(&backfill(now)).await?;
            for (name, definition) in DELIVERY_INDEXES {
                db.execute_unprepared(&format!("CREATE INDEX IF NOT EXISTS {name} {definition}"))
                    .await?;
            }
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {GLOBAL_DUE}"))
                .await?;
            return txn.commit().await;
        }
        let db = manager.get_connection();
        {
            let txn = manager.begin().await?;
            let db = txn.get_connection();
            db.execute_unprepared(CREATE_DESTINATIONS).await?;
            db.execute_unprepared(DESTINATIONS_DUE).await?;
            db.execute_unprepared(CREATE_STATS).await?;
            db.execute_unprepared("ALTER TABLE outcomes ADD COLUMN IF NOT EXISTS destination TEXT")
                .await?;
            db.execute_unprepared(&backfill(now)).await?;
            txn.commit().await?;
        }
        for (name, definition) in DELIVERY_INDEXES {
            crate::concurrent_index::create_concurrently(db, name, definition).await?;
        }
        crate::concurrent_index::drop_concurrently(db, GLOBAL_DUE).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS deliveries_due_idx ON deliveries (next_attempt_at_ms) \
             WHERE state = 'pending'",
        )
        .await?;
        for (name, _) in DELIVERY_INDEXES {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        db.execute_unprepared("ALTER TABLE outcomes DROP COLUMN destination")
            .await?;
        db.execute_unprepared("DROP TABLE IF EXISTS destination_stats")
            .await?;
        db.execute_unprepared("DROP TABLE IF EXISTS destinations")
            .await?;
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        // PostgreSQL cannot build an index concurrently inside a
        // transaction; SQLite takes one of its own in `up`.
        Some(false)
    }
}
