//! Reading and rewriting every stored signing secret as a whole, for the
//! sealing pass at start and `herald secrets rotate-key`. Each rewrite is
//! conditional on the row still holding what was read, so a secret
//! rotated meanwhile is not overwritten with the old one.

use sea_orm::{ConnectionTrait, Value};

use super::{Store, StoreError};
use crate::secrets::Sealed;

/// A tenant's stored signing secrets, as read.
#[derive(Debug, Clone)]
pub struct StoredSecrets {
    /// The tenant.
    pub tenant_id: String,
    /// Its current signing secret.
    pub current: Option<Sealed>,
    /// The secret it replaced, while (or after) its grace window.
    pub previous: Option<Sealed>,
}

const REPLACE: &str = "\
UPDATE tenants SET signing_secret = $2, previous_signing_secret = $3 \
WHERE id = $1 AND signing_secret IS NOT DISTINCT FROM $4 \
    AND previous_signing_secret IS NOT DISTINCT FROM $5";

impl Store {
    /// Every tenant's stored signing secrets, by tenant.
    pub async fn stored_secrets(&self) -> Result<Vec<StoredSecrets>, StoreError> {
        let sql = "SELECT id, signing_secret, previous_signing_secret FROM tenants ORDER BY id";
        let rows = self.db.query_all_raw(self.statement(sql, vec![])).await?;
        rows.iter()
            .map(|row| {
                let current: Option<String> = row.try_get_by_index(1)?;
                let previous: Option<String> = row.try_get_by_index(2)?;
                Ok(StoredSecrets {
                    tenant_id: row.try_get_by_index(0)?,
                    current: current.map(Sealed::from_stored),
                    previous: previous.map(Sealed::from_stored),
                })
            })
            .collect()
    }

    /// Replaces `read`'s secrets with `current` and `previous` if the row
    /// still holds what was read; false if it changed meanwhile.
    pub async fn replace_secrets(
        &self,
        read: &StoredSecrets,
        current: Option<&Sealed>,
        previous: Option<&Sealed>,
    ) -> Result<bool, StoreError> {
        let text = |secret: Option<&Sealed>| Value::from(secret.map(|s| s.as_stored().to_owned()));
        let values = vec![
            read.tenant_id.as_str().into(),
            text(current),
            text(previous),
            text(read.current.as_ref()),
            text(read.previous.as_ref()),
        ];
        let _turn = self.write_turn().await;
        let updated = self.db.execute_raw(self.statement(REPLACE, values)).await?;
        Ok(updated.rows_affected() == 1)
    }
}
