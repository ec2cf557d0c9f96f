//! Group commit for unary enqueues: concurrent `Enqueue` calls share
//! transactions, without giving up durability. Each call waits until the
//! transaction holding its delivery has committed, then gets its own
//! result.
//!
//! Writers take whatever is waiting, up to [`MAX_GROUP`], as one batch.
//! A lone enqueue on an idle server is written at once, with no added
//! delay. Under load, calls gather while the previous commit is in flight,
//! so commits are shared and a burst costs a few commits, not one each.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use super::{
    Store, StoreError,
    records::{Enqueued, NewDelivery},
};

/// Most enqueues written in one transaction.
const MAX_GROUP: usize = 256;

/// One caller waiting for its delivery to be committed.
struct Waiting {
    delivery: NewDelivery,
    reply: oneshot::Sender<Result<Enqueued, StoreError>>,
}

/// The way in for unary enqueues; cheap to clone. Its writers stop once
/// every clone is dropped and what was waiting is written.
#[derive(Clone, Debug)]
pub struct GroupCommit {
    queue: mpsc::Sender<Waiting>,
}

impl GroupCommit {
    /// Starts the writers over `store`: one on SQLite (one writer at a time
    /// anyway), two on PostgreSQL so a commit overlaps the next gathering.
    pub fn start(store: Store) -> Self {
        let (queue, waiting) = mpsc::channel(MAX_GROUP * 4);
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..store.writers() {
            tokio::spawn(write(store.clone(), Arc::clone(&waiting)));
        }
        Self { queue }
    }

    /// Stores `delivery`; returns once it is committed (or refused).
    pub async fn enqueue(&self, delivery: NewDelivery) -> Result<Enqueued, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Waiting { delivery, reply })
            .await
            .map_err(|_| StoreError::ShuttingDown)?;
        answer.await.map_err(|_| StoreError::ShuttingDown)?
    }
}

/// Writes what is waiting, a group at a time, until every sender is gone.
async fn write(store: Store, waiting: Arc<Mutex<mpsc::Receiver<Waiting>>>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    loop {
        // One writer gathers at a time; the others wait for the next group
        // while its transaction runs.
        if waiting.lock().await.recv_many(&mut group, MAX_GROUP).await == 0 {
            return;
        }
        let (deliveries, replies): (Vec<NewDelivery>, Vec<_>) = group
            .drain(..)
            .map(|waiting| (waiting.delivery, waiting.reply))
            .unzip();
        match store.enqueue_batch(&deliveries).await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    // The caller may have gone away; its delivery stands.
                    let _ = reply.send(result);
                }
            }
            Err(error) => {
                tracing::warn!(%error, size = replies.len(), "a group of enqueues failed; none was stored");
                let unavailable = error.is_unavailable();
                let message = error.to_string();
                for reply in replies {
                    let _ = reply.send(Err(StoreError::GroupFailed {
                        message: message.clone(),
                        unavailable,
                    }));
                }
            }
        }
    }
}
