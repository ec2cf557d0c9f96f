//! The audit trail: every operator action is recorded, in the transaction
//! that makes the change, with its tenant, the API key that acted, the
//! time (the database's), its kind and what changed (a JSON object).
//! Listed by tenant newest first, filtered by kind and time; pruned by the
//! janitor once older than the audit retention.

use sea_orm::{ConnectionTrait, Value};

use super::{Store, StoreError};

/// What an operator did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditKind {
    /// `herald tenant create`.
    TenantCreated,
    /// `herald key create`.
    KeyCreated,
    /// `herald key revoke`.
    KeyRevoked,
    /// `herald tenant rotate-secret`.
    SecretRotated,
    /// A pending delivery cancelled.
    DeliveryCancelled,
    /// Dead letters redriven.
    DeadLettersRedriven,
    /// A destination's policy set.
    DestinationPolicySet,
    /// A destination paused.
    DestinationPaused,
    /// A destination resumed.
    DestinationResumed,
    /// A disabled destination enabled.
    DestinationEnabled,
    /// An endpoint created.
    EndpointCreated,
    /// An endpoint changed.
    EndpointUpdated,
    /// An endpoint deleted (its pending deliveries cancelled).
    EndpointDeleted,
    /// An endpoint's signing secret rotated.
    EndpointSecretRotated,
    /// An event type added to the catalogue or changed.
    EventTypeSaved,
    /// An event type removed from the catalogue.
    EventTypeDeleted,
    /// An event sent again.
    EventReplayed,
    /// An endpoint's failed deliveries sent again.
    EndpointRecovered,
}

impl AuditKind {
    /// Every kind.
    pub const ALL: [Self; 18] = [
        Self::TenantCreated,
        Self::KeyCreated,
        Self::KeyRevoked,
        Self::SecretRotated,
        Self::DeliveryCancelled,
        Self::DeadLettersRedriven,
        Self::DestinationPolicySet,
        Self::DestinationPaused,
        Self::DestinationResumed,
        Self::DestinationEnabled,
        Self::EndpointCreated,
        Self::EndpointUpdated,
        Self::EndpointDeleted,
        Self::EndpointSecretRotated,
        Self::EventTypeSaved,
        Self::EventTypeDeleted,
        Self::EventReplayed,
        Self::EndpointRecovered,
    ];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TenantCreated => "tenant_created",
            Self::KeyCreated => "key_created",
            Self::KeyRevoked => "key_revoked",
            Self::SecretRotated => "secret_rotated",
            Self::DeliveryCancelled => "delivery_cancelled",
            Self::DeadLettersRedriven => "dead_letters_redriven",
            Self::DestinationPolicySet => "destination_policy_set",
            Self::DestinationPaused => "destination_paused",
            Self::DestinationResumed => "destination_resumed",
            Self::DestinationEnabled => "destination_enabled",
            Self::EndpointCreated => "endpoint_created",
            Self::EndpointUpdated => "endpoint_updated",
            Self::EndpointDeleted => "endpoint_deleted",
            Self::EndpointSecretRotated => "endpoint_secret_rotated",
            Self::EventTypeSaved => "event_type_saved",
            Self::EventTypeDeleted => "event_type_deleted",
            Self::EventReplayed => "event_replayed",
            Self::EndpointRecovered => "endpoint_recovered",
        }
    }
}

impl std::str::FromStr for AuditKind {
    type Err = StoreError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown audit event kind {text:?}")))
    }
}

/// Who acted: on which tenant, with which API key (`None` from the
/// command line, which works on the database directly, or while open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The tenant acted on.
    pub tenant_id: String,
    /// The id of the API key that acted.
    pub key_id: Option<String>,
}

impl Actor {
    /// An action taken on `tenant_id` from the command line.
    pub fn command_line(tenant_id: &str) -> Self {
        Self {
            tenant_id: tenant_id.to_owned(),
            key_id: None,
        }
    }
}

/// One recorded action.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    /// Increasing with the order of recording.
    pub id: i64,
    /// The API key that acted.
    pub key_id: Option<String>,
    /// When, Unix ms.
    pub at_ms: i64,
    /// What.
    pub kind: AuditKind,
    /// What changed.
    pub details: serde_json::Value,
}

/// Where a page of audit events starts: after this event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditCursor {
    /// The last event's time, Unix ms.
    pub at_ms: i64,
    /// The last event's id.
    pub id: i64,
}

/// Which audit events to list.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only these kinds; every kind when empty.
    pub kinds: Vec<AuditKind>,
    /// Only events at or after this time, Unix ms.
    pub after_ms: Option<i64>,
    /// Only events before this time, Unix ms.
    pub before_ms: Option<i64>,
    /// After this event (the previous page's last).
    pub cursor: Option<AuditCursor>,
    /// Most events.
    pub limit: u32,
}

const RECORD: &str = "\
INSERT INTO audit_events (tenant_id, key_id, at_ms, kind, details) VALUES ($1, $2, {now}, $3, $4)";

impl Store {
    /// Records `kind` by `actor`, with `details`, within `txn`.
    pub(super) async fn record_audit(
        &self,
        txn: &impl ConnectionTrait,
        actor: &Actor,
        kind: AuditKind,
        details: serde_json::Value,
    ) -> Result<(), StoreError> {
        let values: Vec<Value> = vec![
            actor.tenant_id.as_str().into(),
            actor.key_id.clone().into(),
            kind.as_str().into(),
            details.to_string().into(),
        ];
        txn.execute_raw(self.statement(RECORD, values)).await?;
        Ok(())
    }

    /// `tenant_id`'s audit events that `query` selects, newest first.
    pub async fn audit_events(
        &self,
        tenant_id: &str,
        query: &AuditQuery,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let mut sql = String::from(
            "SELECT id, key_id, at_ms, kind, details FROM audit_events WHERE tenant_id = $1",
        );
        let mut values: Vec<Value> = vec![tenant_id.into()];
        let mut bind = |sql: &mut String, clause: &str, value: Value| {
            values.push(value);
            sql.push_str(&clause.replace('?', &format!("${}", values.len())));
        };
        if let Some(after) = query.after_ms {
            bind(&mut sql, " AND at_ms >= ?", after.into());
        }
        if let Some(before) = query.before_ms {
            bind(&mut sql, " AND at_ms < ?", before.into());
        }
        if let Some(cursor) = query.cursor {
            bind(&mut sql, " AND (at_ms, id) < (?", cursor.at_ms.into());
            bind(&mut sql, ", ?)", cursor.id.into());
        }
        if !query.kinds.is_empty() {
            sql.push_str(" AND kind IN (");
            for (i, kind) in query.kinds.iter().enumerate() {
                let clause = if i == 0 { "?" } else { ", ?" };
                bind(&mut sql, clause, kind.as_str().into());
            }
            sql.push(')');
        }
        bind(
            &mut sql,
            " ORDER BY at_ms DESC, id DESC LIMIT ?",
            i64::from(query.limit).into(),
        );
        let txn = self.read_only().await?;
        let rows = txn
            .query_all_raw(self.statement(&sql, values))
            .await
            .map_err(super::read::timed_out)?;
        txn.commit().await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get_by_index(3)?;
                let details: String = row.try_get_by_index(4)?;
                Ok(AuditRecord {
                    id: row.try_get_by_index(0)?,
                    key_id: row.try_get_by_index(1)?,
                    at_ms: row.try_get_by_index(2)?,
                    kind: kind.parse()?,
                    details: serde_json::from_str(&details).map_err(|error| {
                        StoreError::Corrupt(format!("audit event details: {error}"))
                    })?,
                })
            })
            .collect()
    }

    /// Deletes up to `batch` audit events recorded before `before_ms`;
    /// returns how many.
    pub async fn prune_audit_events(&self, before_ms: i64, batch: u64) -> Result<u64, StoreError> {
        let sql = "DELETE FROM audit_events WHERE id IN \
            (SELECT id FROM audit_events WHERE at_ms < $1 ORDER BY at_ms LIMIT $2)";
        let values: Vec<Value> = vec![
            before_ms.into(),
            i64::try_from(batch).unwrap_or(i64::MAX).into(),
        ];
        let _turn = self.write_turn().await;
        let deleted = self.db.execute_raw(self.statement(sql, values)).await?;
        Ok(deleted.rows_affected())
    }
}
