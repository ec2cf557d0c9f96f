//! The signing keys an attempt is sent with, read off the attempt's path.
//!
//! A claim reads each signer's keys once for all the deliveries it
//! leased, before any of their attempts starts, so attempts go out in the
//! order claimed instead of racing each other to the database. A slot
//! that passes on to its destination's next delivery keeps the keys it
//! holds while they are its signer's and still current (nothing rotated or
//! deleted since, younger than the credential cache's lifetime); otherwise
//! it reads them as it leases that delivery, beside the attempt in flight.

use std::sync::Arc;

use crate::{
    store::records::ClaimedDelivery,
    tenants::{Keyring, KeysStamp, Signer, SigningKeys},
};

/// A signer's keys as read for attempts: `None` for an endpoint that no
/// longer exists, or why they could not be read; and when they were read.
#[derive(Clone)]
pub(super) struct HeldKeys {
    signer: Signer,
    /// What the read found.
    pub(super) read: Result<Option<Arc<SigningKeys>>, String>,
    stamp: KeysStamp,
}

impl HeldKeys {
    /// Reads `signer`'s keys through `keyring` (its cache, or the database).
    pub(super) async fn read(keyring: &Keyring, signer: Signer) -> Self {
        let stamp = keyring.stamp();
        let read = keyring
            .keys(&signer)
            .await
            .map_err(|error| format!("{signer}: {error}"));
        Self {
            signer,
            read,
            stamp,
        }
    }

    /// The keys for `next`, which the slot holding these passes on to:
    /// these, while they are its signer's and still current; else read.
    pub(super) async fn for_next(&self, keyring: &Keyring, next: &ClaimedDelivery) -> Self {
        let signer = signer_of(next);
        if signer == self.signer && self.read.is_ok() && keyring.still_current(&self.stamp) {
            return self.clone();
        }
        Self::read(keyring, signer).await
    }
}

/// Who signs `delivery`: its endpoint, or its tenant for a raw URL.
pub(super) fn signer_of(delivery: &ClaimedDelivery) -> Signer {
    match delivery.endpoint_id {
        Some(id) => Signer::Endpoint {
            tenant_id: delivery.tenant_id.clone(),
            id,
        },
        None => Signer::Tenant(delivery.tenant_id.clone()),
    }
}
