//! Group commit for unary enqueues and publishes: concurrent `Enqueue`
//! (or `Publish`) calls share transactions, without giving up durability.
//! Each call waits until the transaction holding its delivery (or event)
//! has committed, then gets its own result.
//!
//! Writers take whatever is waiting, up to [`MAX_GROUP`], as one batch.
//! A lone enqueue on an idle server is written at once, with no added
//! delay. Under load, calls gather while the previous commit is in flight,
//! so commits are shared and a burst costs a few commits, not one each.

use std::{fmt, sync::Arc};

use tokio::sync::{Mutex, mpsc, oneshot};

use super::{
    Store, StoreError,
    publish::{NewEvent, Published},
    records::{Enqueued, NewDelivery},
};

/// Most items written in one transaction.
const MAX_GROUP: usize = 256;

/// What can be written in groups: a new delivery, a new event.
pub trait Grouped: Send + Sized + 'static {
    /// What each item's caller gets back.
    type Written: Send + 'static;

    /// Writes `items` in one transaction; one result per item, in order.
    fn write_group(
        store: &Store,
        items: &[Self],
    ) -> impl Future<Output = Result<Vec<Result<Self::Written, StoreError>>, StoreError>> + Send;
}

impl Grouped for NewDelivery {
    type Written = Enqueued;

    async fn write_group(
        store: &Store,
        items: &[Self],
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        store.enqueue_batch(items).await
    }
}

impl Grouped for NewEvent {
    type Written = Published;

    async fn write_group(
        store: &Store,
        items: &[Self],
    ) -> Result<Vec<Result<Published, StoreError>>, StoreError> {
        store.publish_batch(items).await
    }
}

/// One caller waiting for its item to be committed.
struct Waiting<T: Grouped> {
    item: T,
    reply: oneshot::Sender<Result<T::Written, StoreError>>,
}

/// The way in for unary enqueues (or publishes); cheap to clone. Its
/// writers stop once every clone is dropped and what was waiting is
/// written.
pub struct GroupCommit<T: Grouped = NewDelivery> {
    queue: mpsc::Sender<Waiting<T>>,
}

impl<T: Grouped> Clone for GroupCommit<T> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<T: Grouped> fmt::Debug for GroupCommit<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl<T: Grouped> GroupCommit<T> {
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

    /// Stores `item`; returns once it is committed (or refused).
    pub async fn write(&self, item: T) -> Result<T::Written, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Waiting { item, reply })
            .await
            .map_err(|_| StoreError::ShuttingDown)?;
        answer.await.map_err(|_| StoreError::ShuttingDown)?
    }
}

/// Writes what is waiting, a group at a time, until every sender is gone.
async fn write<T: Grouped>(store: Store, waiting: Arc<Mutex<mpsc::Receiver<Waiting<T>>>>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    loop {
        // One writer gathers at a time; the others wait for the next group
        // while its transaction runs.
        if waiting.lock().await.recv_many(&mut group, MAX_GROUP).await == 0 {
            return;
        }
        let (items, replies): (Vec<T>, Vec<_>) = group
            .drain(..)
            .map(|waiting| (waiting.item, waiting.reply))
            .unzip();
        match T::write_group(&store, &items).await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    // The caller may have gone away; its item stands.
                    let _ = reply.send(result);
                }
            }
            Err(error) => {
                tracing::warn!(%error, size = replies.len(), "a group of writes failed; none was stored");
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
