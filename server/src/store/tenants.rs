//! Tenants, API keys and signing secrets: what `herald tenant` and
//! `herald key` change, what authentication looks up on every call, and
//! what the keyring reads to sign.

use std::time::Duration;

use sea_orm::{ConnectionTrait, TransactionTrait, Value};

use super::{Actor, AuditKind, Channel, Store, StoreError, millis};
use crate::{secrets::Sealed, tenants::api_key::NewApiKey};

/// One row of `herald tenant list`.
#[derive(Debug, Clone)]
pub struct TenantSummary {
    /// The tenant's name (its id).
    pub id: String,
    /// When it was created, Unix ms (0 for the built-in default tenant).
    pub created_at_ms: i64,
    /// API keys not revoked.
    pub active_keys: i64,
}

/// One row of `herald key list`.
#[derive(Debug, Clone)]
pub struct ApiKeySummary {
    /// The key's public id.
    pub id: String,
    /// When it was created, Unix ms.
    pub created_at_ms: i64,
    /// When it was revoked, Unix ms.
    pub revoked_at_ms: Option<i64>,
}

/// What revoking a key found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// The key was active and is now revoked.
    Now,
    /// The key had been revoked before.
    Already,
    /// No key has that id.
    Unknown,
}

/// How the tenant commands' audit events say where they came from.
const VIA_COMMAND_LINE: &str = "command line";

const INSERT_TENANT: &str = "\
INSERT INTO tenants (id, name, created_at_ms, signing_secret) VALUES ($1, $1, {now}, $2) \
ON CONFLICT (id) DO NOTHING";

const INSERT_KEY: &str = "\
INSERT INTO api_keys (id, tenant_id, key_hash, created_at_ms) VALUES ($1, $2, $3, {now})";

const TENANT_FOR_KEY: &str = "\
SELECT tenant_id FROM api_keys WHERE key_hash = $1 AND revoked_at_ms IS NULL";

const SIGNING_SECRETS: &str = "\
SELECT signing_secret, \
    CASE WHEN previous_secret_expires_at_ms > {now} THEN previous_signing_secret END \
FROM tenants WHERE id = $1";

const ROTATE_SECRET: &str = "\
UPDATE tenants SET \
    previous_signing_secret = signing_secret, \
    previous_secret_expires_at_ms = {now} + $3, \
    signing_secret = $2 \
WHERE id = $1";

impl Store {
    /// Creates tenant `id` with its first API key and its sealed signing
    /// secret; every replica is told (an open one closes).
    pub async fn create_tenant(
        &self,
        id: &str,
        key: &NewApiKey,
        secret: &Sealed,
    ) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        let values: Vec<Value> = vec![id.into(), secret.as_stored().into()];
        let inserted = txn
            .execute_raw(self.statement(INSERT_TENANT, values))
            .await?;
        if inserted.rows_affected() == 0 {
            txn.rollback().await?;
            return Err(StoreError::TenantExists(id.to_owned()));
        }
        txn.execute_raw(self.statement(INSERT_KEY, key_values(id, key)))
            .await?;
        let details = serde_json::json!({ "first_key_id": key.id, "via": VIA_COMMAND_LINE });
        self.record_audit(
            &txn,
            &Actor::command_line(id),
            AuditKind::TenantCreated,
            details,
        )
        .await?;
        // An open server closes at once.
        self.announce_in(&txn, Channel::Credentials).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Every tenant with its count of active keys, by name.
    pub async fn list_tenants(&self) -> Result<Vec<TenantSummary>, StoreError> {
        let sql = "SELECT t.id, t.created_at_ms, \
                (SELECT COUNT(*) FROM api_keys k WHERE k.tenant_id = t.id AND k.revoked_at_ms IS NULL) \
            FROM tenants t ORDER BY t.id";
        let rows = self.db.query_all_raw(self.statement(sql, vec![])).await?;
        rows.iter()
            .map(|row| {
                Ok(TenantSummary {
                    id: row.try_get_by_index(0)?,
                    created_at_ms: row.try_get_by_index(1)?,
                    active_keys: row.try_get_by_index(2)?,
                })
            })
            .collect()
    }

    /// Adds `key` to tenant `tenant_id`.
    pub async fn create_api_key(&self, tenant_id: &str, key: &NewApiKey) -> Result<(), StoreError> {
        self.require_tenant(tenant_id).await?;
        let _turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        txn.execute_raw(self.statement(INSERT_KEY, key_values(tenant_id, key)))
            .await?;
        let details = serde_json::json!({ "key_id": key.id, "via": VIA_COMMAND_LINE });
        let actor = Actor::command_line(tenant_id);
        self.record_audit(&txn, &actor, AuditKind::KeyCreated, details)
            .await?;
        self.announce_in(&txn, Channel::Credentials).await?;
        txn.commit().await?;
        Ok(())
    }

    /// `tenant_id`'s keys, newest first.
    pub async fn list_api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKeySummary>, StoreError> {
        self.require_tenant(tenant_id).await?;
        let sql = "SELECT id, created_at_ms, revoked_at_ms FROM api_keys \
            WHERE tenant_id = $1 ORDER BY created_at_ms DESC, id";
        let rows = self
            .db
            .query_all_raw(self.statement(sql, vec![tenant_id.into()]))
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ApiKeySummary {
                    id: row.try_get_by_index(0)?,
                    created_at_ms: row.try_get_by_index(1)?,
                    revoked_at_ms: row.try_get_by_index(2)?,
                })
            })
            .collect()
    }

    /// Revokes the key with public id `key_id`; on PostgreSQL every
    /// replica is told when it commits ([`Channel::Credentials`]), and
    /// drops its cached lookups.
    pub async fn revoke_api_key(&self, key_id: &str) -> Result<Revoked, StoreError> {
        let sql = "UPDATE api_keys SET revoked_at_ms = {now} \
            WHERE id = $1 AND revoked_at_ms IS NULL RETURNING tenant_id";
        let turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        let revoked = txn
            .query_one_raw(self.statement(sql, vec![key_id.into()]))
            .await?;
        if let Some(row) = &revoked {
            let tenant_id: String = row.try_get_by_index(0)?;
            let details = serde_json::json!({ "key_id": key_id, "via": VIA_COMMAND_LINE });
            let actor = Actor::command_line(&tenant_id);
            self.record_audit(&txn, &actor, AuditKind::KeyRevoked, details)
                .await?;
            self.announce_in(&txn, Channel::Credentials).await?;
        }
        txn.commit().await?;
        drop(turn);
        if revoked.is_some() {
            return Ok(Revoked::Now);
        }
        let exists = self
            .db
            .query_one_raw(
                self.statement("SELECT 1 FROM api_keys WHERE id = $1", vec![key_id.into()]),
            )
            .await?;
        Ok(if exists.is_some() {
            Revoked::Already
        } else {
            Revoked::Unknown
        })
    }

    /// The tenant whose active key hashes to `key_hash`.
    pub async fn tenant_for_key(&self, key_hash: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .db
            .query_one_raw(self.statement(TENANT_FOR_KEY, vec![key_hash.into()]))
            .await?;
        Ok(row.map(|row| row.try_get_by_index(0)).transpose()?)
    }

    /// A value that changes whenever a key is created or revoked or a
    /// signing secret rotated: what a SQLite server, which hears no
    /// `NOTIFY`, watches to drop its cached credentials.
    pub async fn credentials_fingerprint(&self) -> Result<(i64, i64, i64), StoreError> {
        let sql = "SELECT \
                (SELECT COUNT(*) FROM api_keys), \
                (SELECT COUNT(*) FROM api_keys WHERE revoked_at_ms IS NOT NULL), \
                (SELECT CAST(COALESCE(SUM(previous_secret_expires_at_ms), 0) AS BIGINT) FROM tenants)";
        let row = self
            .db
            .query_one_raw(self.statement(sql, vec![]))
            .await?
            .ok_or_else(|| StoreError::Corrupt("no credentials fingerprint".to_owned()))?;
        Ok((
            row.try_get_by_index(0)?,
            row.try_get_by_index(1)?,
            row.try_get_by_index(2)?,
        ))
    }

    /// Whether any API key was ever created. Revoked keys count: revoking
    /// every key must not reopen the server.
    pub async fn has_api_keys(&self) -> Result<bool, StoreError> {
        let row = self
            .db
            .query_one_raw(self.statement("SELECT 1 FROM api_keys LIMIT 1", vec![]))
            .await?;
        Ok(row.is_some())
    }

    /// The sealed secrets that sign `tenant_id`'s deliveries now: the
    /// current one and the previous one while its grace window lasts.
    /// Empty when the tenant has no secret yet (or does not exist).
    pub async fn signing_secrets(&self, tenant_id: &str) -> Result<Vec<Sealed>, StoreError> {
        let row = self
            .db
            .query_one_raw(self.statement(SIGNING_SECRETS, vec![tenant_id.into()]))
            .await?;
        let Some(row) = row else {
            return Ok(Vec::new());
        };
        let current: Option<String> = row.try_get_by_index(0)?;
        let previous: Option<String> = row.try_get_by_index(1)?;
        let Some(current) = current else {
            return Ok(Vec::new());
        };
        Ok(std::iter::once(current)
            .chain(previous)
            .map(Sealed::from_stored)
            .collect())
    }

    /// Gives `tenant_id` the sealed `secret` unless it already has one.
    pub async fn set_signing_secret_if_missing(
        &self,
        tenant_id: &str,
        secret: &Sealed,
    ) -> Result<(), StoreError> {
        let sql = "UPDATE tenants SET signing_secret = $2 WHERE id = $1 AND signing_secret IS NULL";
        let values: Vec<Value> = vec![tenant_id.into(), secret.as_stored().into()];
        let _turn = self.write_turn().await;
        self.db.execute_raw(self.statement(sql, values)).await?;
        Ok(())
    }

    /// Makes the sealed `secret` `tenant_id`'s signing secret; the one it
    /// replaces keeps signing too for `grace`. Every replica is told, as
    /// for a revocation.
    pub async fn rotate_signing_secret(
        &self,
        tenant_id: &str,
        secret: &Sealed,
        grace: Duration,
    ) -> Result<(), StoreError> {
        let values: Vec<Value> = vec![
            tenant_id.into(),
            secret.as_stored().into(),
            millis(grace).into(),
        ];
        let _turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        let updated = txn
            .execute_raw(self.statement(ROTATE_SECRET, values))
            .await?;
        if updated.rows_affected() == 0 {
            txn.rollback().await?;
            return Err(StoreError::TenantNotFound(tenant_id.to_owned()));
        }
        let details = serde_json::json!({ "grace_ms": millis(grace), "via": VIA_COMMAND_LINE });
        let actor = Actor::command_line(tenant_id);
        self.record_audit(&txn, &actor, AuditKind::SecretRotated, details)
            .await?;
        self.announce_in(&txn, Channel::Credentials).await?;
        txn.commit().await?;
        Ok(())
    }

    async fn require_tenant(&self, tenant_id: &str) -> Result<(), StoreError> {
        let found = self
            .db
            .query_one_raw(self.statement(
                "SELECT 1 FROM tenants WHERE id = $1",
                vec![tenant_id.into()],
            ))
            .await?;
        match found {
            Some(_) => Ok(()),
            None => Err(StoreError::TenantNotFound(tenant_id.to_owned())),
        }
    }
}

fn key_values(tenant_id: &str, key: &NewApiKey) -> Vec<Value> {
    vec![key.id.clone().into(), tenant_id.into(), key.hash().into()]
}
