//! Signals across replicas on PostgreSQL: `NOTIFY` on a channel when
//! something happened, `LISTEN` on it to learn of the others'. Storage
//! stays the source of truth: a missed notification only costs a poll
//! interval. SQLite is one process, so there is nothing to tell.
//!
//! Each announcement carries its store's origin (a random id per
//! [`Store::connect`]), and a listener passes over its own: the replica
//! that announced has already woken its own waiters, and hearing its echo
//! would make it look at the database a second time for nothing.

use sea_orm::{ConnectionTrait, sqlx::postgres::PgListener};

use super::{Dialect, Store, StoreError};

/// What a signal announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// New work is due: claimers should look.
    Work,
    /// New outcomes were committed: feed tailers should read.
    Outcomes,
    /// A destination's policy or state changed (a pause, a new limit, a
    /// disable): deliveries leased ahead for it should not start.
    Destinations,
    /// An API key was created or revoked, or a signing secret rotated:
    /// cached credentials should be dropped.
    Credentials,
}

impl Channel {
    fn name(self) -> &'static str {
        match self {
            Self::Work => "herald_work",
            Self::Outcomes => "herald_outcomes",
            Self::Destinations => "herald_destinations",
            Self::Credentials => "herald_credentials",
        }
    }
}

impl Store {
    /// Tells every replica listening on `channel`.
    pub async fn announce(&self, channel: Channel) -> Result<(), StoreError> {
        self.announce_in(&self.db, channel).await
    }

    /// `NOTIFY` of `channel` within `txn`, sent when it commits; nothing
    /// on SQLite.
    pub(super) async fn announce_in(
        &self,
        txn: &impl ConnectionTrait,
        channel: Channel,
    ) -> Result<(), StoreError> {
        if self.dialect == Dialect::Postgres {
            let notify = self.statement(
                "SELECT pg_notify($1, $2)",
                vec![channel.name().into(), self.origin.to_string().into()],
            );
            txn.execute_raw(notify).await?;
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
        Ok(Some(Listener {
            listener,
            own: self.origin.to_string(),
        }))
    }
}

/// A dedicated connection listening on one channel.
pub struct Listener {
    listener: PgListener,
    /// The payload of this store's own announcements, passed over.
    own: String,
}

impl Listener {
    /// Returns when another store announces, or when the connection was
    /// lost and re-established (announcements may have been missed then, so
    /// the caller should look either way).
    pub async fn next(&mut self) -> Result<(), StoreError> {
        loop {
            match self.listener.try_recv().await? {
                Some(heard) if heard.payload() == self.own => continue,
                _ => return Ok(()),
            }
        }
    }
}
