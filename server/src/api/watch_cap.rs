//! The cap on concurrent `WatchOutcomes` streams per tenant, on this
//! replica: each stream may replay from storage, so one tenant's many
//! watchers must not crowd out everyone's database reads.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use super::error::ApiError;

/// Counts open streams per tenant; cheap to clone.
#[derive(Clone, Debug)]
pub struct WatchCap {
    limit: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open stream of a tenant; frees its place when dropped.
#[derive(Debug)]
pub struct WatchSlot {
    open: Arc<Mutex<HashMap<String, usize>>>,
    tenant: String,
}

impl WatchCap {
    /// At most `limit` open streams per tenant.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            open: Arc::default(),
        }
    }

    /// A place for one more stream of `tenant`, or
    /// [`ApiError::TooManyWatches`] when it has `limit` open already.
    pub fn take(&self, tenant: &str) -> Result<WatchSlot, ApiError> {
        let mut open = lock(&self.open);
        let count = open.entry(tenant.to_owned()).or_default();
        if *count >= self.limit {
            return Err(ApiError::TooManyWatches { limit: self.limit });
        }
        *count += 1;
        Ok(WatchSlot {
            open: Arc::clone(&self.open),
            tenant: tenant.to_owned(),
        })
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        if let Some(count) = open.get_mut(&self.tenant) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.tenant);
            }
        }
    }
}

/// The counts stay consistent even if a holder panicked: each update is
/// one step.
fn lock(open: &Mutex<HashMap<String, usize>>) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
    open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_at_its_limit_is_refused_until_a_stream_closes() {
        let cap = WatchCap::new(2);
        let first = cap.take("a").unwrap();
        let _second = cap.take("a").unwrap();
        assert!(matches!(
            cap.take("a"),
            Err(ApiError::TooManyWatches { limit: 2 })
        ));
        let _other = cap.take("b").expect("other tenants have their own limit");
        drop(first);
        cap.take("a").expect("a closed stream frees its place");
    }
}
