//! Which builds may run on a schema: the schema compared with the
//! migrations a build knows, and the marks that say a newer migration
//! leaves older builds behind.
//!
//! During a rolling upgrade the first replica of a new release migrates
//! the schema while replicas of the previous release still run, and a
//! replica of the previous release may restart after that. A migration is
//! therefore assumed **additive**: a build that does not know it runs on
//! the schema it made, with a warning. A migration after which builds that
//! do not know some migration can no longer run records so, in
//! `herald_schema_compat`, in the transaction that applies it
//! ([`require_known`]): one row naming it and the migration a build must
//! know to run on the schema. A build meeting such a row for a migration it
//! does not know, naming a migration it does not know either, refuses to
//! start and says which release it needs.
//!
//! The rows are read by name only, so the table never changes shape, and a
//! build that predates it (none of its rows are applied) reads nothing.

use std::collections::{BTreeMap, HashSet};

use sea_orm_migration::{
    MigrationTrait, SchemaManager,
    sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value},
};

/// The table of requirements of applied migrations.
pub const COMPAT_TABLE: &str = "herald_schema_compat";

/// The table sea-orm-migration records applied migrations in.
const MIGRATIONS_TABLE: &str = "seaql_migrations";

/// Records that once the migration `applied` is applied, a build must know
/// the migration `requires` to run on the schema (`requires` may be
/// `applied` itself). Call it from the migration's `up`, in its
/// transaction.
pub async fn require_known(
    manager: &SchemaManager<'_>,
    applied: &str,
    requires: &str,
) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let backend = manager.get_database_backend();
    db.execute_raw(statement(
        backend,
        &format!(
            "INSERT INTO {COMPAT_TABLE} (migration, requires) VALUES ($1, $2) \
             ON CONFLICT (migration) DO UPDATE SET requires = excluded.requires"
        ),
        [Value::from(applied), Value::from(requires)],
    ))
    .await?;
    Ok(())
}

/// An applied migration this build does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    /// Its name.
    pub name: String,
    /// The migration a build must know to run on the schema, when this one
    /// recorded one.
    pub requires: Option<String>,
}

/// The schema compared with the migrations a build knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Known migrations not applied yet, in the order they apply.
    pub pending: Vec<String>,
    /// Applied migrations this build does not know (a newer release
    /// applied them), oldest first.
    pub unknown: Vec<Unknown>,
    /// The names of the migrations this build knows.
    known: HashSet<String>,
}

impl SchemaStatus {
    /// The unknown migrations that require a migration this build does not
    /// know: this build cannot run on the schema while any is there.
    pub fn incompatible(&self) -> Vec<&Unknown> {
        self.unknown
            .iter()
            .filter(|unknown| {
                unknown
                    .requires
                    .as_ref()
                    .is_some_and(|requires| !self.known.contains(requires))
            })
            .collect()
    }
}

/// Compares the schema behind `db` with `migrations`, without creating or
/// changing anything (a database never migrated has every migration
/// pending).
pub async fn status(
    db: &impl ConnectionTrait,
    migrations: &[Box<dyn MigrationTrait>],
) -> Result<SchemaStatus, DbErr> {
    let known: HashSet<String> = migrations.iter().map(|m| m.name().to_owned()).collect();
    let applied: HashSet<String> = if has_table(db, MIGRATIONS_TABLE).await? {
        names(db, &format!("SELECT version FROM {MIGRATIONS_TABLE}"))
            .await?
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    } else {
        HashSet::new()
    };
    let requirements: BTreeMap<String, String> = if has_table(db, COMPAT_TABLE).await? {
        names(
            db,
            &format!("SELECT migration, requires FROM {COMPAT_TABLE}"),
        )
        .await?
        .into_iter()
        .filter_map(|(name, requires)| Some((name, requires?)))
        .collect()
    } else {
        BTreeMap::new()
    };
    let pending = migrations
        .iter()
        .map(|migration| migration.name().to_owned())
        .filter(|name| !applied.contains(name))
        .collect();
    let mut unknown: Vec<Unknown> = applied
        .iter()
        .filter(|name| !known.contains(*name))
        .map(|name| Unknown {
            name: name.clone(),
            requires: requirements.get(name).cloned(),
        })
        .collect();
    unknown.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(SchemaStatus {
        pending,
        unknown,
        known,
    })
}

/// Whether `table` exists, asked without touching it.
async fn has_table(db: &impl ConnectionTrait, table: &str) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT CAST(COUNT(*) AS BIGINT) FROM pg_tables \
             WHERE schemaname = current_schema() AND tablename = $1"
        }
        _ => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
    };
    let row = db
        .query_one_raw(statement(backend, sql, [Value::from(table)]))
        .await?;
    let count: i64 = match row {
        Some(row) => row.try_get_by_index(0)?,
        None => 0,
    };
    Ok(count > 0)
}

/// `sql`, whose placeholders are written `$1`, `$2`..., bound to `values`
/// in `backend`'s spelling (SQLite numbers them `?1`, `?2`...).
pub(crate) fn statement<const N: usize>(
    backend: DbBackend,
    sql: &str,
    values: [Value; N],
) -> Statement {
    let sql = match backend {
        DbBackend::Postgres => sql.to_owned(),
        _ => sql.replace('$', "?"),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// The rows of `sql`: a name and, when selected, a second text column.
async fn names(
    db: &impl ConnectionTrait,
    sql: &str,
) -> Result<Vec<(String, Option<String>)>, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?;
    rows.iter()
        .map(|row| {
            let name = row.try_get_by_index::<String>(0)?;
            let second = row.try_get_by_index::<String>(1).ok();
            Ok((name, second))
        })
        .collect()
}
