//! Herald's schema history. `herald migrate` applies it, and `herald serve`
//! applies pending migrations at start unless told not to.
//!
//! Every migration runs on SQLite and PostgreSQL from one definition. Times
//! are stored as `BIGINT` Unix epoch milliseconds (UTC) in columns ending in
//! `_ms`: the same type, comparison and index on both backends, and the hot
//! queries compute "now" in the database rather than on a replica's clock.
//!
//! Rules every migration follows (see `migration/README.md`):
//!
//! - **Add now, drop later.** Replicas of the previous release keep running
//!   on the migrated schema during a rolling upgrade, so a migration only
//!   adds (tables, nullable or defaulted columns, indexes). What the
//!   previous release still uses is dropped by a later release, whose
//!   migration records in [`compat`] which builds it leaves behind.
//! - **An applied migration never changes what it does.** A mistake is put
//!   right by a new migration.
//! - **Every step can run again** (`IF NOT EXISTS`, a check first), and a
//!   migration runs in a transaction unless it cannot: one stopped halfway
//!   is finished by the next run.
//! - **Indexes of big tables are built `CONCURRENTLY` on PostgreSQL**,
//!   outside a transaction (see `concurrent_index`), never in the
//!   transaction that alters the table.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_initial;
mod m20261123_000002_tenant_security;
mod m20261123_000003_operations;
mod m20261130_000004_keyed_idempotency;
mod m20261201_000005_destinations;
mod m20261202_000006_resend;
mod m20261203_000007_listing_indexes;
mod m20261204_000008_audit_events;
mod m20261205_000009_endpoints;
mod m20261206_000010_schema_compat;
mod m20261206_000011_idempotency_for_older_replicas;

pub mod compat;
mod concurrent_index;
mod runner;

pub use runner::MigrationFailed;

/// The ordered list of Herald's migrations.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_initial::Migration),
            Box::new(m20261123_000002_tenant_security::Migration),
            Box::new(m20261123_000003_operations::Migration),
            Box::new(m20261130_000004_keyed_idempotency::Migration),
            Box::new(m20261201_000005_destinations::Migration),
            Box::new(m20261202_000006_resend::Migration),
            Box::new(m20261203_000007_listing_indexes::Migration),
            Box::new(m20261204_000008_audit_events::Migration),
            Box::new(m20261205_000009_endpoints::Migration),
            Box::new(m20261206_000010_schema_compat::Migration),
            Box::new(m20261206_000011_idempotency_for_older_replicas::Migration),
        ]
    }
}
