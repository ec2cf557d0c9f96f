//! [`Keyring`]: the signing keys of each tenant and endpoint, read from
//! the database and kept for a short while, so an attempt costs no extra
//! query.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::{Signer, SigningKeys, SigningSecret};
use crate::{
    secrets::Sealer,
    store::{Store, StoreError},
};

/// Cached signers before the cache starts over (a bound, since endpoints
/// come and go).
const MAX_CACHED: usize = 100_000;

/// Each signer's keys, with when they were read.
#[derive(Default)]
struct Cache {
    signers: HashMap<Signer, (Arc<SigningKeys>, Instant)>,
    /// Counts [`Keyring::forget_all`]s: keys read before one are not
    /// cached, since they may be what was then rotated away.
    generation: u64,
}

/// When keys were read, for [`Keyring::still_current`].
#[derive(Debug, Clone, Copy)]
pub struct KeysStamp {
    at: Instant,
    generation: u64,
}

/// Cached keys per signer; cheap to clone (the cache is shared).
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

    /// The keys that sign `signer`'s deliveries now, and when they were
    /// read from the database (for [`Keyring::still_current`]); `None`
    /// for an endpoint that no longer exists. A tenant without a secret
    /// (the open-mode default before any rotation) gets one here. A secret
    /// that cannot be opened is an error, not an unsigned delivery.
    pub async fn keys(
        &self,
        signer: &Signer,
    ) -> Result<(Option<Arc<SigningKeys>>, KeysStamp), StoreError> {
        let generation = {
            let cache = self.lock();
            if let Some((keys, loaded)) = cache.signers.get(signer)
                && loaded.elapsed() < self.ttl
            {
                // Cached entries are dropped at every rotation, so this
                // one was read in the current generation.
                let stamp = KeysStamp {
                    at: *loaded,
                    generation: cache.generation,
                };
                return Ok((Some(Arc::clone(keys)), stamp));
            }
            cache.generation
        };
        let stamp = KeysStamp {
            at: Instant::now(),
            generation,
        };
        let stored = match signer {
            Signer::Tenant(tenant_id) => {
                let mut stored = self.store.signing_secrets(tenant_id).await?;
                if stored.is_empty() {
                    let secret = SigningSecret::generate().seal(&self.sealer, signer);
                    self.store
                        .set_signing_secret_if_missing(tenant_id, &secret)
                        .await?;
                    stored = self.store.signing_secrets(tenant_id).await?;
                }
                stored
            }
            Signer::Endpoint { tenant_id, id } => {
                match self.store.endpoint_signing_secrets(tenant_id, *id).await? {
                    Some(stored) => stored,
                    None => return Ok((None, stamp)),
                }
            }
        };
        let opened = stored
            .iter()
            .map(|sealed| SigningSecret::open(sealed, &self.sealer, signer))
            .collect::<Result<Vec<_>, _>>()?;
        let keys = Arc::new(SigningKeys::new(signer, opened));
        let mut cache = self.lock();
        if cache.generation == generation {
            if cache.signers.len() >= MAX_CACHED {
                cache.signers.clear();
            }
            cache
                .signers
                .insert(signer.clone(), (Arc::clone(&keys), stamp.at));
        }
        Ok((Some(keys), stamp))
    }

    /// Whether keys read at `stamp` may still sign: nothing was
    /// rotated or deleted since ([`Keyring::forget_all`]), and they are
    /// younger than the cache's lifetime (a lifetime of zero keeps them
    /// until a rotation is heard of).
    pub fn still_current(&self, stamp: &KeysStamp) -> bool {
        stamp.generation == self.lock().generation
            && (self.ttl.is_zero() || stamp.at.elapsed() < self.ttl)
    }

    /// Drops every cached signer's keys (a secret was rotated somewhere,
    /// or an endpoint deleted).
    pub fn forget_all(&self) {
        let mut cache = self.lock();
        cache.signers.clear();
        cache.generation += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::SecretKey;

    /// A keyring with lifetime `ttl` over a migrated database of its own.
    async fn keyring(dir: &tempfile::TempDir, ttl: Duration) -> Keyring {
        let url = format!("sqlite://{}", dir.path().join("herald.db").display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        Keyring::new(store, Sealer::new(SecretKey::generate(), vec![]), ttl)
    }

    fn default_tenant() -> Signer {
        Signer::Tenant("default".into())
    }

    #[tokio::test]
    async fn cached_keys_carry_the_time_they_were_read() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = keyring(&dir, Duration::from_secs(10)).await;
        let (first, read) = keyring.keys(&default_tenant()).await.unwrap();
        let (again, cached) = keyring.keys(&default_tenant()).await.unwrap();
        assert!(Arc::ptr_eq(&first.unwrap(), &again.unwrap()), "cached");
        assert_eq!(cached.at, read.at, "a cache hit is as old as its read");
        assert!(keyring.still_current(&cached));
    }

    #[tokio::test]
    async fn held_keys_stay_current_until_a_rotation_is_heard_of() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = keyring(&dir, Duration::ZERO).await;
        let (_, stamp) = keyring.keys(&default_tenant()).await.unwrap();
        assert!(
            keyring.still_current(&stamp),
            "a lifetime of zero keeps them"
        );
        keyring.forget_all();
        assert!(!keyring.still_current(&stamp), "a rotation ends them");
        let (_, reread) = keyring.keys(&default_tenant()).await.unwrap();
        assert!(keyring.still_current(&reread));
    }

    #[tokio::test]
    async fn held_keys_end_with_the_caches_lifetime() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = keyring(&dir, Duration::from_millis(50)).await;
        let (_, stamp) = keyring.keys(&default_tenant()).await.unwrap();
        assert!(keyring.still_current(&stamp));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!keyring.still_current(&stamp), "older than the lifetime");
    }
}
