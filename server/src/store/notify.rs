//! Wake-ups across replicas on PostgreSQL: `NOTIFY` on one channel when
//! work is added, `LISTEN` on it to wake this replica's claimer. Storage
//! stays the source of truth: a missed notification only costs a poll
//! interval. SQLite is one process, so there is nothing to tell.

use sea_orm::{ConnectionTrait, sqlx::postgres::PgListener};

use super::{Dialect, Store, StoreError};

/// The channel Herald replicas notify and listen on.
const CHANNEL: &str = "herald_work";

impl Store {
    /// Tells every listening replica that new work is due.
    pub async fn announce_work(&self) -> Result<(), StoreError> {
        if self.dialect == Dialect::Postgres {
            self.db
                .execute_unprepared(&format!("SELECT pg_notify('{CHANNEL}', '')"))
                .await?;
        }
        Ok(())
    }

    /// Starts listening for other replicas' announcements; `None` on SQLite.
    pub async fn listen_for_work(&self) -> Result<Option<WorkListener>, StoreError> {
        if self.dialect != Dialect::Postgres {
            return Ok(None);
        }
        let mut listener = PgListener::connect_with(self.db.get_postgres_connection_pool()).await?;
        listener.listen(CHANNEL).await?;
        Ok(Some(WorkListener(listener)))
    }
}

/// A dedicated connection listening for work announcements.
pub struct WorkListener(PgListener);

impl WorkListener {
    /// Returns when an announcement arrives, or when the connection was
    /// lost and re-established (announcements may have been missed then, so
    /// the caller should look for work either way).
    pub async fn next(&mut self) -> Result<(), StoreError> {
        self.0.try_recv().await?;
        Ok(())
    }
}
