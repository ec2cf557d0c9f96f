//! Per-destination fairness: at most `limit` attempts in flight to one
//! destination (scheme, host, port) on this replica, so a receiver that
//! hangs until the timeout holds a bounded share of the global permits and
//! the rest keep flowing. The claimer asks the database only for work bound
//! elsewhere while a destination is full, so its rows wait in the database,
//! due, without being claimed and without burning attempts.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use crate::signal::Signal;

/// In-flight counts per destination; cheap to clone.
#[derive(Clone, Debug)]
pub struct DestinationLimits {
    limit: usize,
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
    wakeup: Signal,
}

/// One attempt's hold on its destination; dropping it frees the slot and,
/// if the destination was full, wakes the claimer for its waiting work.
#[derive(Debug)]
pub struct DestinationPermit {
    limits: DestinationLimits,
    destination: String,
}

impl DestinationLimits {
    /// Allows `limit` attempts in flight per destination.
    pub fn new(limit: usize, wakeup: Signal) -> Self {
        Self {
            limit,
            in_flight: Arc::default(),
            wakeup,
        }
    }

    /// Takes a slot for `destination`, unless it is full.
    pub fn try_acquire(&self, destination: &str) -> Option<DestinationPermit> {
        let mut in_flight = self.lock();
        let count = in_flight.entry(destination.to_owned()).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(DestinationPermit {
            limits: self.clone(),
            destination: destination.to_owned(),
        })
    }

    /// The destinations that are full right now.
    pub fn saturated(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, count)| **count >= self.limit)
            .map(|(destination, _)| destination.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        // A panic while holding this lock leaves only counts behind, which
        // are still consistent enough to keep going.
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for DestinationPermit {
    fn drop(&mut self) {
        let mut in_flight = self.limits.lock();
        let Some(count) = in_flight.get_mut(&self.destination) else {
            return;
        };
        let was_full = *count >= self.limits.limit;
        *count -= 1;
        if *count == 0 {
            in_flight.remove(&self.destination);
        }
        drop(in_flight);
        if was_full {
            self.limits.wakeup.raise_local();
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::store::{Channel, Store};

    #[tokio::test]
    async fn limits_each_destination_separately() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let limits = DestinationLimits::new(
            2,
            Signal::start(&store, Channel::Work, &CancellationToken::new()).await,
        );
        let a1 = limits.try_acquire("http://a:80").unwrap();
        let _a2 = limits.try_acquire("http://a:80").unwrap();
        assert!(limits.try_acquire("http://a:80").is_none());
        let _b = limits.try_acquire("http://b:80").unwrap();
        assert_eq!(limits.saturated(), ["http://a:80"]);
        drop(a1);
        assert!(limits.saturated().is_empty());
        assert!(limits.try_acquire("http://a:80").is_some());
    }
}
