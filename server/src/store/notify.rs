//! Signals across replicas on PostgreSQL: `NOTIFY` on a channel when
//! something happened, `LISTEN` on it to learn of the others'. Storage
//! stays the source of truth: a missed notification only costs a poll
//! interval. SQLite is one process, so there is nothing to tell.

use sea_orm::{ConnectionTrait, sqlx::postgres::PgListener};

use super::{Dialect, Store, StoreError};

/// What a signal announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// New work is due: claimers should look.
    Work,
    /// New outcomes were committed: feed tailers should read.
    Outcomes,
}

impl Channel {
    fn name(self) -> &'static str {
        match self {
            Self::Work => "herald_work",
            Self::Outcomes => "herald_outcomes",
        }
    }
}

impl Store {
    /// Tells every replica listening on `channel`.
    pub async fn announce(&self, channel: Channel) -> Result<(), StoreError> {
        if self.dialect == Dialect::Postgres {
            self.db
                .execute_unprepared(&format!("SELECT pg_notify('{}', '')", channel.name()))
                .await?;
        }
        Ok(())
    }

    /// Starts listening on `channel`; `None` on SQLite.
    pub async fn listen(&self, channel: Channel) -> Result<Option<Listener>, StoreError> {
        if self.dialect != Dialect::Postgres {
            return Ok(None);
        }
        let mut listener = PgListener::connect_with(self.db.get_postgres_connection_pool()).await?;
        listener.listen(channel.name()).await?;
        Ok(Some(Listener(listener)))
    }
}

/// A dedicated connection listening on one channel.
pub struct Listener(PgListener);

impl Listener {
    /// Returns when an announcement arrives, or when the connection was
    /// lost and re-established (announcements may have been missed then, so
    /// the caller should look either way).
    pub async fn next(&mut self) -> Result<(), StoreError> {
        self.0.try_recv().await?;
        Ok(())
    }
}
