//! Who is calling: `authorization: Bearer <api key>` names the tenant.
//!
//! The [`gate`](super::gate) asks [`Authenticator::caller`] before a
//! request's message is read, and hands the answer to the handler as a
//! [`Caller`] in the request's extensions ([`authenticated`]).
//!
//! While no API key exists in the database, Herald runs open and every
//! caller is the default tenant (`start` allows that only on loopback).
//! The first `herald tenant create` closes it for good, revoked keys
//! included, so revoking every key cannot reopen it.
//!
//! Lookups are cached for the credential cache's time (the
//! `HERALD_CREDENTIAL_CACHE` setting), so an enqueue costs no extra
//! query; a revocation drops them at once ([`super::revocations`]), and
//! the cache's time bounds what a missed one could cost. A key that was
//! not found is remembered for a moment too, so repeating a wrong key
//! does not cost a query each time. Both caches are bounded.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tonic::Request;

use super::error::ApiError;
use crate::{
    store::{Actor, Store},
    tenants::{DEFAULT_TENANT, api_key},
};

/// Most keys remembered at once, found or not; a cache starts over
/// beyond this.
const MAX_CACHED_KEYS: usize = 10_000;
/// How long a key that was not found is answered from memory.
const FAILED_LOOKUP_TTL: Duration = Duration::from_secs(1);

/// Who is calling, as the gate found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The caller's tenant.
    pub tenant: String,
    /// The id of the API key it sent; `None` while Herald runs open.
    pub key_id: Option<String>,
}

impl Caller {
    /// The caller as the audit trail records it.
    pub fn actor(&self) -> Actor {
        Actor {
            tenant_id: self.tenant.clone(),
            key_id: self.key_id.clone(),
        }
    }
}

/// Finds the caller's tenant; cheap to clone (the cache is shared).
#[derive(Clone)]
pub struct Authenticator {
    store: Store,
    ttl: Duration,
    state: Arc<Mutex<Cache>>,
}

#[derive(Default)]
struct Cache {
    /// Key hash -> tenant, with when it was looked up.
    keys: HashMap<String, (String, Instant)>,
    /// Key hash -> when it was last not found.
    failed: HashMap<String, Instant>,
    /// When the database last held no key at all.
    open_checked: Option<Instant>,
    /// Some key exists: never open again.
    closed: bool,
    /// Counts [`Authenticator::forget_all`]s: a lookup that began before
    /// one is not cached, since it may have read what was then revoked.
    generation: u64,
}

/// What `Authenticator::caller` could not accept.
#[derive(Debug)]
pub enum Refusal {
    /// No valid key came with the request; `key_id` is the id the sent
    /// key claims, if it looks like a key at all.
    Unauthenticated {
        /// `hk_<id>_...`'s id.
        key_id: Option<String>,
    },
    /// Looking the key up failed.
    Failed(ApiError),
}

impl Authenticator {
    /// An authenticator over `store` that trusts a lookup for `ttl`.
    pub fn new(store: Store, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            state: Arc::default(),
        }
    }

    /// The caller whose request carries `headers`, or why not.
    pub async fn caller(&self, headers: &http::HeaderMap) -> Result<Caller, Refusal> {
        let failed = |key_id: Option<&str>| Refusal::Unauthenticated {
            key_id: key_id.map(str::to_owned),
        };
        let Some(header) = headers.get(http::header::AUTHORIZATION) else {
            return if self.is_open().await.map_err(Refusal::Failed)? {
                Ok(Caller {
                    tenant: DEFAULT_TENANT.to_owned(),
                    key_id: None,
                })
            } else {
                Err(failed(None))
            };
        };
        let key = header
            .to_str()
            .ok()
            .and_then(bearer_token)
            .ok_or_else(|| failed(None))?;
        let key_id = api_key::id_of(key);
        let hash = api_key::hash(key);
        let generation = {
            let cache = self.lock();
            if let Some((tenant, at)) = cache.keys.get(&hash)
                && at.elapsed() < self.ttl
            {
                return Ok(Caller {
                    tenant: tenant.clone(),
                    key_id: key_id.map(str::to_owned),
                });
            }
            if cache
                .failed
                .get(&hash)
                .is_some_and(|at| at.elapsed() < FAILED_LOOKUP_TTL)
            {
                return Err(failed(key_id));
            }
            cache.generation
        };
        let found = self
            .store
            .tenant_for_key(&hash)
            .await
            .map_err(|error| Refusal::Failed(error.into()))?;
        let mut cache = self.lock();
        let current = cache.generation == generation;
        let Some(tenant) = found else {
            if cache.failed.len() >= MAX_CACHED_KEYS {
                cache.failed.clear();
            }
            if current {
                cache.failed.insert(hash, Instant::now());
            }
            return Err(failed(key_id));
        };
        if cache.keys.len() >= MAX_CACHED_KEYS {
            cache.keys.clear();
        }
        if current {
            cache.keys.insert(hash, (tenant.clone(), Instant::now()));
        }
        Ok(Caller {
            tenant,
            key_id: key_id.map(str::to_owned),
        })
    }

    /// Drops every cached lookup (a key was revoked or created somewhere).
    /// A server once closed stays closed.
    pub fn forget_all(&self) {
        let mut cache = self.lock();
        cache.keys.clear();
        cache.failed.clear();
        cache.open_checked = None;
        cache.generation += 1;
    }

    /// Whether the database holds no API key (checked at most once per
    /// `ttl` while open; once closed, never again).
    pub async fn is_open(&self) -> Result<bool, ApiError> {
        let generation = {
            let cache = self.lock();
            if cache.closed {
                return Ok(false);
            }
            if cache.open_checked.is_some_and(|at| at.elapsed() < self.ttl) {
                return Ok(true);
            }
            cache.generation
        };
        let open = !self.store.has_api_keys().await?;
        let mut cache = self.lock();
        if open {
            if cache.generation == generation {
                cache.open_checked = Some(Instant::now());
            }
        } else {
            cache.closed = true;
        }
        Ok(open)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The caller the gate found for `request`, recorded on the call's span,
/// and the request's message. Without one (a service reached around the
/// gate) the call is refused.
pub fn authenticated<T>(request: Request<T>) -> Result<(Caller, T), ApiError> {
    let caller = request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or(ApiError::Unauthenticated)?;
    tracing::Span::current().record("tenant", caller.tenant.as_str());
    Ok((caller, request.into_inner()))
}

/// The token of an `authorization` value of the `Bearer` scheme, whose
/// name is matched in any case (RFC 9110, section 11.1); `None` for
/// another scheme or an empty token.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case() {
        for value in [
            "Bearer hk_1",
            "bearer hk_1",
            "BEARER  hk_1 ",
            " Bearer hk_1",
        ] {
            assert_eq!(bearer_token(value), Some("hk_1"), "{value:?}");
        }
        for value in ["Basic hk_1", "Bearer", "Bearer ", "Bearerhk_1", "hk_1"] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }
}
