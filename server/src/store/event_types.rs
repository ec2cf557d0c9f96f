//! The event type catalogue: names a tenant documents, each with a
//! description and optionally the JSON Schema its payloads must match.
//! Publishing does not need a type to be in the catalogue.

use sea_orm::{ConnectionTrait, QueryResult, TransactionTrait, Value};

use super::{Actor, AuditKind, Store, StoreError};

/// One event type as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTypeRecord {
    /// Its name.
    pub name: String,
    /// For people.
    pub description: String,
    /// The JSON Schema payloads must match, as given.
    pub json_schema: Option<String>,
    /// When it was created, Unix ms.
    pub created_at_ms: i64,
    /// When it last changed, Unix ms.
    pub updated_at_ms: i64,
}

/// What an update changes; `None` keeps the field.
#[derive(Debug, Clone, Default)]
pub struct EventTypeChange {
    /// A new description.
    pub description: Option<String>,
    /// A new schema (`Some(None)` removes it).
    pub json_schema: Option<Option<String>>,
}

const COLUMNS: &str = "name, description, json_schema, created_at_ms, updated_at_ms";

const INSERT: &str = "\
INSERT INTO event_types (tenant_id, name, description, json_schema, created_at_ms, updated_at_ms) \
VALUES ($1, $2, $3, $4, {now}, {now}) ON CONFLICT (tenant_id, name) DO NOTHING";

const SCHEMA: &str = "SELECT json_schema FROM event_types WHERE tenant_id = $1 AND name = $2";

impl Store {
    /// Adds event type `name` to `actor`'s tenant's catalogue; `None` if
    /// it is there already.
    pub async fn create_event_type(
        &self,
        actor: &Actor,
        name: &str,
        description: &str,
        json_schema: Option<&str>,
    ) -> Result<Option<EventTypeRecord>, StoreError> {
        let tenant_id = actor.tenant_id.as_str();
        let _turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        let values: Vec<Value> = vec![
            tenant_id.into(),
            name.into(),
            description.into(),
            json_schema.map(str::to_owned).into(),
        ];
        let inserted = txn.execute_raw(self.statement(INSERT, values)).await?;
        if inserted.rows_affected() == 0 {
            txn.rollback().await?;
            return Ok(None);
        }
        let details = serde_json::json!({ "name": name, "schema": json_schema.is_some() });
        self.record_audit(&txn, actor, AuditKind::EventTypeSaved, details)
            .await?;
        let record = self.event_type_in(&txn, tenant_id, name).await?;
        txn.commit().await?;
        Ok(record)
    }

    /// Applies `change` to `actor`'s tenant's event type `name`; `None` if
    /// there is no such type.
    pub async fn update_event_type(
        &self,
        actor: &Actor,
        name: &str,
        change: &EventTypeChange,
    ) -> Result<Option<EventTypeRecord>, StoreError> {
        let tenant_id = actor.tenant_id.as_str();
        let _turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        let mut values: Vec<Value> = vec![tenant_id.into(), name.into()];
        let mut sets = vec!["updated_at_ms = {now}".to_owned()];
        if let Some(description) = &change.description {
            values.push(description.clone().into());
            sets.push(format!("description = ${}", values.len()));
        }
        if let Some(schema) = &change.json_schema {
            values.push(schema.clone().into());
            sets.push(format!("json_schema = ${}", values.len()));
        }
        let sql = format!(
            "UPDATE event_types SET {} WHERE tenant_id = $1 AND name = $2",
            sets.join(", ")
        );
        let updated = txn.execute_raw(self.statement(&sql, values)).await?;
        if updated.rows_affected() == 0 {
            txn.rollback().await?;
            return Ok(None);
        }
        let details = serde_json::json!({
            "name": name,
            "description": change.description.is_some(),
            "schema": change.json_schema.as_ref().map(Option::is_some),
        });
        self.record_audit(&txn, actor, AuditKind::EventTypeSaved, details)
            .await?;
        let record = self.event_type_in(&txn, tenant_id, name).await?;
        txn.commit().await?;
        Ok(record)
    }

    /// Removes `actor`'s tenant's event type `name` from the catalogue
    /// (events of the type stay, and may still be published); false if
    /// there was none.
    pub async fn delete_event_type(&self, actor: &Actor, name: &str) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        let deleted = txn
            .execute_raw(self.statement(
                "DELETE FROM event_types WHERE tenant_id = $1 AND name = $2",
                vec![actor.tenant_id.as_str().into(), name.into()],
            ))
            .await?;
        if deleted.rows_affected() == 0 {
            txn.rollback().await?;
            return Ok(false);
        }
        self.record_audit(
            &txn,
            actor,
            AuditKind::EventTypeDeleted,
            serde_json::json!({ "name": name }),
        )
        .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// `tenant_id`'s event type `name`, if it is in the catalogue.
    pub async fn get_event_type(
        &self,
        tenant_id: &str,
        name: &str,
    ) -> Result<Option<EventTypeRecord>, StoreError> {
        self.on_read_pool(async |txn| self.event_type_in(txn, tenant_id, name).await)
            .await
    }

    /// Up to `limit` of `tenant_id`'s event types named after `after`, by
    /// name.
    pub async fn list_event_types(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<EventTypeRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM event_types WHERE tenant_id = $1 AND name > $2 \
             ORDER BY name LIMIT $3"
        );
        let values: Vec<Value> = vec![
            tenant_id.into(),
            after.unwrap_or_default().into(),
            i64::try_from(limit).unwrap_or(i64::MAX).into(),
        ];
        let rows = self
            .on_read_pool(async |txn| Ok(txn.query_all_raw(self.statement(&sql, values)).await?))
            .await?;
        rows.iter().map(event_type).collect()
    }

    /// The JSON Schema `tenant_id`'s events of type `name` must match, if
    /// the type is in the catalogue with one.
    pub async fn event_type_schema(
        &self,
        tenant_id: &str,
        name: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = self
            .db
            .query_one_raw(self.statement(SCHEMA, vec![tenant_id.into(), name.into()]))
            .await?;
        Ok(row
            .map(|row| row.try_get_by_index::<Option<String>>(0))
            .transpose()?
            .flatten())
    }

    async fn event_type_in(
        &self,
        db: &impl ConnectionTrait,
        tenant_id: &str,
        name: &str,
    ) -> Result<Option<EventTypeRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM event_types WHERE tenant_id = $1 AND name = $2");
        db.query_one_raw(self.statement(&sql, vec![tenant_id.into(), name.into()]))
            .await?
            .as_ref()
            .map(event_type)
            .transpose()
    }
}

fn event_type(row: &QueryResult) -> Result<EventTypeRecord, StoreError> {
    Ok(EventTypeRecord {
        name: row.try_get_by_index(0)?,
        description: row.try_get_by_index(1)?,
        json_schema: row.try_get_by_index(2)?,
        created_at_ms: row.try_get_by_index(3)?,
        updated_at_ms: row.try_get_by_index(4)?,
    })
}
