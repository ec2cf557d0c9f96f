//! Changes to destinations as this replica learns of them: a count that
//! moves whenever an operator pauses, resumes, enables or re-limits a
//! destination, or one is disabled, here or (through
//! [`Channel::Destinations`]) on another replica.
//!
//! A slot leases its destination's next delivery while its own attempt is
//! in flight (see `scheduler::hand_over`); the destination's policy was
//! checked when that lease was taken. A delivery leased ahead starts only
//! if the count has not moved since, so a pause or a lowered limit reaches
//! it as it reaches a delivery not yet leased. Which destination changed
//! is not carried: changes are rare, and giving back a few leases at
//! every destination costs less than being wrong at one.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use tokio_util::sync::CancellationToken;

use crate::{
    signal::Signal,
    store::{Channel, Store},
};

/// The count of destination changes; cheap to clone.
#[derive(Clone, Debug)]
pub struct Changes {
    count: Arc<AtomicU64>,
    signal: Signal,
}

impl Changes {
    /// Starts counting this replica's changes and, on PostgreSQL, the
    /// other replicas'; stops listening on `shutdown`.
    pub async fn start(store: &Store, shutdown: &CancellationToken) -> Self {
        let changes = Self {
            count: Arc::default(),
            signal: Signal::start(store, Channel::Destinations, shutdown).await,
        };
        let heard = changes.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = heard.signal.raised() => heard.bump(),
                }
            }
        });
        changes
    }

    /// A destination changed here: counted at once, before the change's
    /// caller is answered, and announced to the other replicas.
    pub fn changed(&self) {
        self.bump();
        self.signal.raise();
    }

    /// The count so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    fn bump(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_here_is_counted_before_changed_returns() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let changes = Changes::start(&store, &CancellationToken::new()).await;
        let before = changes.count();
        changes.changed();
        assert!(changes.count() > before);
    }
}
