//! Reading and rewriting every stored signing secret (tenants' and
//! endpoints') as a whole, for the sealing pass at start and
//! `herald secrets rotate-key`. Each rewrite is
//! conditional on the row still holding what was read, so a secret
//! rotated meanwhile is not overwritten with the old one.

use sea_orm::{ConnectionTrait, Value};

use super::{Store, StoreError};
use crate::{secrets::Sealed, tenants::Signer};

/// A signer's stored signing secrets, as read.
#[derive(Debug, Clone)]
pub struct StoredSecrets {
    /// Whose they are.
    pub signer: Signer,
    /// Its current signing secret.
    pub current: Option<Sealed>,
    /// The secret it replaced, while (or after) its grace window.
    pub previous: Option<Sealed>,
}

/// Rewrites a row of `{table}` (`tenants` or `endpoints`) if it still
/// holds what was read.
const REPLACE: &str = "\
UPDATE {table} SET signing_secret = $2, previous_signing_secret = $3 \
WHERE id = $1 AND signing_secret IS NOT DISTINCT FROM $4 \
    AND previous_signing_secret IS NOT DISTINCT FROM $5";

impl Store {
    /// Every tenant's and every endpoint's stored signing secrets.
    pub async fn stored_secrets(&self) -> Result<Vec<StoredSecrets>, StoreError> {
        let sql = "SELECT id, signing_secret, previous_signing_secret FROM tenants ORDER BY id";
        let rows = self.db.query_all_raw(self.statement(sql, vec![])).await?;
        let mut stored = Vec::with_capacity(rows.len());
        for row in &rows {
            let current: Option<String> = row.try_get_by_index(1)?;
            let previous: Option<String> = row.try_get_by_index(2)?;
            stored.push(StoredSecrets {
                signer: Signer::Tenant(row.try_get_by_index(0)?),
                current: current.map(Sealed::from_stored),
                previous: previous.map(Sealed::from_stored),
            });
        }
        let sql = "SELECT id, tenant_id, signing_secret, previous_signing_secret FROM endpoints \
            ORDER BY id";
        let rows = self.db.query_all_raw(self.statement(sql, vec![])).await?;
        for row in &rows {
            let current: String = row.try_get_by_index(2)?;
            let previous: Option<String> = row.try_get_by_index(3)?;
            stored.push(StoredSecrets {
                signer: Signer::Endpoint {
                    id: row.try_get_by_index(0)?,
                    tenant_id: row.try_get_by_index(1)?,
                },
                current: Some(Sealed::from_stored(current)),
                previous: previous.map(Sealed::from_stored),
            });
        }
        Ok(stored)
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
        let (table, id) = match &read.signer {
            Signer::Tenant(tenant_id) => ("tenants", Value::from(tenant_id.as_str())),
            Signer::Endpoint { id, .. } => ("endpoints", Value::from(*id)),
        };
        let values = vec![
            id,
            text(current),
            text(previous),
            text(read.current.as_ref()),
            text(read.previous.as_ref()),
        ];
        let _turn = self.write_turn().await;
        let sql = REPLACE.replace("{table}", table);
        let updated = self.db.execute_raw(self.statement(&sql, values)).await?;
        Ok(updated.rows_affected() == 1)
    }
}
