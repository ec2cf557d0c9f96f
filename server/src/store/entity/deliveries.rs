//! The `deliveries` table.

use sea_orm::entity::prelude::*;

/// One row of `deliveries`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: String,
    pub url: String,
    pub destination: String,
    pub host: String,
    pub method: String,
    pub headers: String,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub idempotency_key: Option<String>,
    pub request_hash: String,
    pub state: String,
    pub attempt_count: i32,
    pub max_attempts: i32,
    pub attempt_budget: i32,
    pub deadline_at_ms: Option<i64>,
    pub next_attempt_at_ms: Option<i64>,
    pub lease_token: Option<Uuid>,
    pub resend: bool,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub endpoint_id: Option<Uuid>,
    pub event_id: Option<Uuid>,
    pub event_type: Option<String>,
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
