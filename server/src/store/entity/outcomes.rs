//! The `outcomes` table: the durable outcome feed.

use sea_orm::entity::prelude::*;

/// One row of `outcomes`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outcomes")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub sequence: i64,
    pub tenant_id: String,
    pub delivery_id: Uuid,
    pub host: String,
    pub destination: Option<String>,
    pub kind: String,
    pub attempt_number: i32,
    pub status_code: Option<i32>,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub next_attempt_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub endpoint_id: Option<Uuid>,
    pub event_type: Option<String>,
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
