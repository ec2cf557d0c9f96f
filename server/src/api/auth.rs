//! Who is calling: `authorization: Bearer <api key>` names the tenant.
//!
//! While no API key exists in the database, Herald runs open and every
//! caller is the default tenant (`start` allows that only on loopback).
//! The first `herald tenant create` closes it for good, revoked keys
//! included, so revoking every key cannot reopen it.
//!
//! Lookups are cached for the credential cache's time (the
//! `HERALD_CREDENTIAL_CACHE` setting), so an enqueue costs no extra
//! query; a revoked key stops working within that time. Only successful
//! lookups are cached, and the cache is bounded.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tonic::{Request, metadata::MetadataMap};

use super::error::ApiError;
use crate::{
    store::Store,
    tenants::{DEFAULT_TENANT, api_key},
};

/// Most keys remembered at once; the cache starts over beyond this.
const MAX_CACHED_KEYS: usize = 10_000;

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
    /// When the database last held no key at all.
    open_checked: Option<Instant>,
    /// Some key exists: never open again.
    closed: bool,
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

    /// The tenant of the caller whose request carries `metadata`, or
    /// UNAUTHENTICATED (which never says whether a tenant exists).
    pub async fn tenant(&self, metadata: &MetadataMap) -> Result<String, ApiError> {
        let Some(header) = metadata.get("authorization") else {
            return if self.is_open().await? {
                Ok(DEFAULT_TENANT.to_owned())
            } else {
                Err(ApiError::Unauthenticated)
            };
        };
        let key = header
            .to_str()
            .ok()
            .and_then(bearer_token)
            .ok_or(ApiError::Unauthenticated)?;
        let hash = api_key::hash(key);
        if let Some((tenant, at)) = self.lock().keys.get(&hash)
            && at.elapsed() < self.ttl
        {
            return Ok(tenant.clone());
        }
        let tenant = self
            .store
            .tenant_for_key(&hash)
            .await?
            .ok_or(ApiError::Unauthenticated)?;
        let mut cache = self.lock();
        if cache.keys.len() >= MAX_CACHED_KEYS {
            cache.keys.clear();
        }
        cache.keys.insert(hash, (tenant.clone(), Instant::now()));
        Ok(tenant)
    }

    /// The caller's tenant, recorded on the call's span, and the request's
    /// message.
    pub async fn authenticate<T>(&self, request: Request<T>) -> Result<(String, T), ApiError> {
        let tenant = self.tenant(request.metadata()).await?;
        tracing::Span::current().record("tenant", tenant.as_str());
        Ok((tenant, request.into_inner()))
    }

    /// Whether the database holds no API key (checked at most once per
    /// `ttl` while open; once closed, never again).
    pub async fn is_open(&self) -> Result<bool, ApiError> {
        {
            let cache = self.lock();
            if cache.closed {
                return Ok(false);
            }
            if cache.open_checked.is_some_and(|at| at.elapsed() < self.ttl) {
                return Ok(true);
            }
        }
        let open = !self.store.has_api_keys().await?;
        let mut cache = self.lock();
        if open {
            cache.open_checked = Some(Instant::now());
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
