//! Signals between replicas: "something happened, look at the database".
//!
//! A [`Signal`] is raised locally (waking this replica's waiter at once)
//! and, on PostgreSQL, announced to the other replicas with `NOTIFY`,
//! debounced so a burst costs one notification per window; a listener turns
//! other replicas' announcements into local wake-ups, and wakes once more
//! whenever it listens again after losing its connection (what was
//! announced meanwhile is lost). Three channels use it: new work for the
//! claimers ([`Channel::Work`]), new outcomes for the feed tailers
//! ([`Channel::Outcomes`]) and changed credentials for the caches of API
//! keys and signing secrets ([`Channel::Credentials`]). Storage stays the source of truth:
//! waiters keep a poll as the safety net for anything missed.

use std::{sync::Arc, time::Duration};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::{Channel, Listener, Store};

/// Announcements to other replicas are at most this frequent.
const ANNOUNCE_WINDOW: Duration = Duration::from_millis(5);
/// Wait before re-listening after the listening connection failed.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// One channel's signal on this replica; cheap to clone.
#[derive(Clone, Debug)]
pub struct Signal {
    local: Arc<Notify>,
    announce: Arc<Notify>,
}

impl Signal {
    /// Starts the announcer and the listener of `channel`; both stop on
    /// `shutdown`. Returns once the listener is listening (or has failed
    /// to, and retries meanwhile), so an announcement made by another
    /// replica after this returns is never missed.
    pub async fn start(store: &Store, channel: Channel, shutdown: &CancellationToken) -> Self {
        let signal = Self {
            local: Arc::new(Notify::new()),
            announce: Arc::new(Notify::new()),
        };
        let announcer = announce(
            store.clone(),
            channel,
            Arc::clone(&signal.announce),
            shutdown.clone(),
        );
        tokio::spawn(announcer);
        let first = match store.listen(channel).await {
            Ok(Some(listener)) => Some(listener),
            // SQLite: one process, nothing to listen to.
            Ok(None) => return signal,
            Err(error) => {
                tracing::warn!(%error, ?channel, "cannot listen to the other replicas yet; polling meanwhile");
                None
            }
        };
        tokio::spawn(listen(
            store.clone(),
            channel,
            Arc::clone(&signal.local),
            shutdown.clone(),
            first,
        ));
        signal
    }

    /// Wakes the waiter here and, through the database, on every replica.
    pub fn raise(&self) {
        self.local.notify_one();
        self.announce.notify_one();
    }

    /// Wakes only this replica's waiter.
    pub fn raise_local(&self) {
        self.local.notify_one();
    }

    /// Resolves at the next raise (one stored if none was awaited).
    pub async fn raised(&self) {
        self.local.notified().await;
    }
}

async fn announce(
    store: Store,
    channel: Channel,
    requested: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            // Shutdown first: once it is under way the pool may be closing,
            // and the other replicas' polls cover what is left unsaid.
            biased;
            () = shutdown.cancelled() => return,
            () = requested.notified() => {}
        }
        if let Err(error) = store.announce(channel).await {
            tracing::warn!(%error, ?channel, "could not signal the other replicas");
        }
        // Requests during the window coalesce into the next announcement.
        tokio::time::sleep(ANNOUNCE_WINDOW).await;
    }
}

/// Turns other replicas' announcements into local wake-ups, starting with
/// `first` if it is already listening, and listening again after a failure.
async fn listen(
    store: Store,
    channel: Channel,
    local: Arc<Notify>,
    shutdown: CancellationToken,
    mut first: Option<Listener>,
) {
    loop {
        let connected = match first.take() {
            Some(listener) => Ok(Some(listener)),
            None => store.listen(channel).await.inspect(|listening| {
                // Listening again after a failure: whatever was announced
                // meanwhile is lost, so look as if told.
                if listening.is_some() {
                    local.notify_one();
                }
            }),
        };
        let mut listener = match connected {
            Ok(Some(listener)) => listener,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, ?channel, "cannot listen to the other replicas; polling meanwhile");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(LISTEN_RETRY) => continue,
                }
            }
        };
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                heard = listener.next() => match heard {
                    Ok(()) => local.notify_one(),
                    Err(error) => {
                        tracing::warn!(%error, ?channel, "listening to the other replicas failed");
                        break;
                    }
                },
            }
        }
    }
}
