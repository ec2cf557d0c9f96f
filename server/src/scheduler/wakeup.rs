//! Wake-ups: how the claimer learns that work may be due before its timer.
//!
//! Locally, an enqueue or a redrive notifies the claimer directly. Across
//! replicas (PostgreSQL), the same event is announced with `NOTIFY`,
//! debounced so a burst of enqueues costs one notification per window,
//! and a listener turns other replicas' announcements into local wake-ups.
//! The claimer's poll interval remains the safety net for anything missed.

use std::{sync::Arc, time::Duration};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// Announcements to other replicas are at most this frequent.
const ANNOUNCE_WINDOW: Duration = Duration::from_millis(5);
/// Wait before re-listening after the listening connection failed.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// Wakes this replica's claimer and, through the database, the others'.
#[derive(Clone, Debug)]
pub struct Wakeup {
    local: Arc<Notify>,
    announce: Arc<Notify>,
}

impl Wakeup {
    /// Starts the announcer and the listener; both stop on `shutdown`.
    pub fn start(store: &Store, shutdown: &CancellationToken) -> Self {
        let wakeup = Self {
            local: Arc::new(Notify::new()),
            announce: Arc::new(Notify::new()),
        };
        tokio::spawn(announce(
            store.clone(),
            Arc::clone(&wakeup.announce),
            shutdown.clone(),
        ));
        tokio::spawn(listen(
            store.clone(),
            Arc::clone(&wakeup.local),
            shutdown.clone(),
        ));
        wakeup
    }

    /// New work is due now: wake the claimers of every replica.
    pub fn work_added(&self) {
        self.local.notify_one();
        self.announce.notify_one();
    }

    /// Something on this replica may be due sooner than the claimer thinks.
    pub fn wake_local(&self) {
        self.local.notify_one();
    }

    /// Resolves at the next wake-up (one stored if none was awaited).
    pub async fn woken(&self) {
        self.local.notified().await;
    }
}

async fn announce(store: Store, requested: Arc<Notify>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = requested.notified() => {}
        }
        if let Err(error) = store.announce_work().await {
            tracing::warn!(%error, "could not announce new work to other replicas");
        }
        // Requests during the window coalesce into the next announcement.
        tokio::time::sleep(ANNOUNCE_WINDOW).await;
    }
}

async fn listen(store: Store, local: Arc<Notify>, shutdown: CancellationToken) {
    loop {
        let mut listener = match store.listen_for_work().await {
            Ok(Some(listener)) => listener,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for other replicas' work; polling meanwhile");
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
                        tracing::warn!(%error, "listening for other replicas' work failed");
                        break;
                    }
                },
            }
        }
    }
}
