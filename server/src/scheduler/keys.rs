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
    /// When they were read; `None` when the read failed.
    stamp: Option<KeysStamp>,
}

impl HeldKeys {
    /// Reads `signer`'s keys through `keyring` (its cache, or the database).
    pub(super) async fn read(keyring: &Keyring, signer: Signer) -> Self {
        let (read, stamp) = match keyring.keys(&signer).await {
            Ok((keys, stamp)) => (Ok(keys), Some(stamp)),
            Err(error) => (Err(format!("{signer}: {error}")), None),
        };
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
        let current = self
            .stamp
            .is_some_and(|stamp| keyring.still_current(&stamp));
        if signer == self.signer && current {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        secrets::{Sealer, SecretKey},
        store::Store,
    };

    #[tokio::test]
    async fn a_slot_keeps_its_keys_for_its_signer_until_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("herald.db").display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let sealer = Sealer::new(SecretKey::generate(), vec![]);
        let keyring = Keyring::new(store, sealer, Duration::ZERO);
        let ours = ClaimedDelivery::unsendable("default");
        let held = HeldKeys::read(&keyring, signer_of(&ours)).await;
        let keys = |held: &HeldKeys| held.read.clone().unwrap().unwrap();

        let next = held.for_next(&keyring, &ours).await;
        assert!(Arc::ptr_eq(&keys(&held), &keys(&next)), "kept, not read");

        // An endpoint's delivery reads its endpoint's keys: there is no
        // such endpoint here, which the read says.
        let theirs = ClaimedDelivery {
            endpoint_id: Some(uuid::Uuid::now_v7()),
            ..ClaimedDelivery::unsendable("default")
        };
        let other = held.for_next(&keyring, &theirs).await;
        assert_eq!(other.signer, signer_of(&theirs));
        assert!(matches!(other.read, Ok(None)), "its own, read");

        keyring.forget_all();
        let after = held.for_next(&keyring, &ours).await;
        assert!(!Arc::ptr_eq(&keys(&held), &keys(&after)), "read again");
    }
}
