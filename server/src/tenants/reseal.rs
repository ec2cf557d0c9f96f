//! The sealing pass: rewrites stored signing secrets under the keys of a
//! [`Sealer`]. `serve` runs it at start for secrets still in plain text
//! (stored before sealing existed); `herald secrets rotate-key` runs it
//! for every secret not sealed under exactly the configured keys.

use super::SigningSecret;
use crate::{
    secrets::{Sealed, Sealer},
    store::{Store, StoreError},
};

/// Which stored secrets a pass rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only plain-text ones.
    Plain,
    /// Every one not sealed under exactly the sealer's keys.
    NotUpToDate,
}

/// Rewrites the stored secrets `scope` selects, sealed under `sealer`'s
/// keys; returns how many values were rewritten. A secret none of the
/// sealer's keys opens stops the pass with an error naming the keys it
/// is sealed under; rows rewritten before stay rewritten (each is whole).
pub async fn reseal(store: &Store, sealer: &Sealer, scope: Scope) -> Result<usize, StoreError> {
    let selected = |sealed: &Sealed| match scope {
        Scope::Plain => sealed.key_ids().is_none(),
        Scope::NotUpToDate => !sealer.is_up_to_date(sealed),
    };
    let mut rewritten = 0;
    // A row changed between reading and rewriting (a rotation) is read
    // again; the loop ends once a whole pass met no change.
    loop {
        let mut raced = false;
        for row in store.stored_secrets().await? {
            let mut count = 0;
            let mut renew = |stored: &Option<Sealed>| -> Result<Option<Sealed>, StoreError> {
                match stored {
                    Some(sealed) if selected(sealed) => {
                        count += 1;
                        let secret = SigningSecret::open(sealed, sealer, &row.signer)?;
                        Ok(Some(secret.seal(sealer, &row.signer)))
                    }
                    other => Ok(other.clone()),
                }
            };
            let current = renew(&row.current)?;
            let previous = renew(&row.previous)?;
            if count == 0 {
                continue;
            }
            let replaced = store
                .replace_secrets(&row, current.as_ref(), previous.as_ref())
                .await?;
            if replaced {
                rewritten += count;
            } else {
                raced = true;
            }
        }
        if !raced {
            return Ok(rewritten);
        }
    }
}
