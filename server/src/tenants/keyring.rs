//! [`Keyring`]: each tenant's signing keys, read from the database and
//! kept for a short while, so claiming a batch costs no extra query.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::{SigningKeys, SigningSecret};
use crate::{
    secrets::Sealer,
    store::{Store, StoreError},
};

/// Each tenant's keys, with when they were read.
#[derive(Default)]
struct Cache {
    tenants: HashMap<String, (Arc<SigningKeys>, Instant)>,
    /// Counts [`Keyring::forget_all`]s: keys read before one are not
    /// cached, since they may be what was then rotated away.
    generation: u64,
}

/// Cached keys per tenant; cheap to clone (the cache is shared).
#[derive(Clone)]
pub struct Keyring {
    store: Store,
    sealer: Sealer,
    ttl: Duration,
    cache: Arc<Mutex<Cache>>,
}

impl Keyring {
    /// A keyring over `store`, opening secrets with `sealer`, that rereads
    /// a tenant's secrets once they are `ttl` old, or sooner when told of
    /// a rotation ([`Keyring::forget_all`]).
    pub fn new(store: Store, sealer: Sealer, ttl: Duration) -> Self {
        Self {
            store,
            sealer,
            ttl,
            cache: Arc::default(),
        }
    }

    /// The keys that sign `tenant_id`'s deliveries now. A tenant without a
    /// secret (the open-mode default before any rotation) gets one here.
    /// A secret that cannot be opened is an error, not an unsigned
    /// delivery.
    pub async fn keys(&self, tenant_id: &str) -> Result<Arc<SigningKeys>, StoreError> {
        let generation = {
            let cache = self.lock();
            if let Some((keys, loaded)) = cache.tenants.get(tenant_id)
                && loaded.elapsed() < self.ttl
            {
                return Ok(Arc::clone(keys));
            }
            cache.generation
        };
        let mut stored = self.store.signing_secrets(tenant_id).await?;
        if stored.is_empty() {
            let secret = SigningSecret::generate().seal(&self.sealer, tenant_id);
            self.store
                .set_signing_secret_if_missing(tenant_id, &secret)
                .await?;
            stored = self.store.signing_secrets(tenant_id).await?;
        }
        let opened = stored
            .iter()
            .map(|sealed| SigningSecret::open(sealed, &self.sealer, tenant_id))
            .collect::<Result<Vec<_>, _>>()?;
        let keys = Arc::new(SigningKeys::new(tenant_id, opened));
        let mut cache = self.lock();
        if cache.generation == generation {
            cache
                .tenants
                .insert(tenant_id.to_owned(), (Arc::clone(&keys), Instant::now()));
        }
        Ok(keys)
    }

    /// Drops every cached tenant's keys (a secret was rotated somewhere).
    pub fn forget_all(&self) {
        let mut cache = self.lock();
        cache.tenants.clear();
        cache.generation += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
