//! Pending deliveries that no claim will send: those bound for a disabled
//! destination, and those whose deadline passed while they waited (a
//! paused destination, an open circuit). They are dead-lettered here, a
//! batch per transaction, each with its outcome and a reason that says
//! why; one being attempted under a live lease is left to its attempt.
//! A deadline does not strand a row that still carries an expired lease:
//! its attempt was made but never recorded, and a claim makes it again
//! (invariant I4).

use sea_orm::{ConnectionTrait, TransactionTrait, Value};
use uuid::Uuid;

use super::{Store, StoreError, records::OutcomeRecord, unsigned};
use crate::domain::OutcomeKind;

/// Why a delivery is dead-lettered here, and which it picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stranding {
    /// Its destination is disabled.
    Disabled,
    /// Its deadline passed before an attempt could start.
    Deadline,
}

/// Dead-letters up to `$2` rows chosen by `{pick}`, with `$1` as the
/// reason; rows under a live lease are not picked.
const DEAD_LETTER: &str = "\
UPDATE deliveries SET state = 'dead_lettered', next_attempt_at_ms = NULL, lease_token = NULL, \
    last_error = $1, updated_at_ms = {now}, finished_at_ms = {now} \
WHERE id IN ({pick}) AND state = 'pending' \
    AND (lease_token IS NULL OR next_attempt_at_ms <= {now}) \
RETURNING id, tenant_id, host, destination, attempt_count, updated_at_ms";

const PICK_DISABLED: &str = "\
SELECT x.id FROM destinations d \
JOIN deliveries x ON x.tenant_id = d.tenant_id AND x.destination = d.destination \
WHERE d.state = 'disabled' AND x.state = 'pending' \
    AND (x.lease_token IS NULL OR x.next_attempt_at_ms <= {now}) \
LIMIT $2";

const PICK_DEADLINE: &str = "\
SELECT id FROM deliveries \
WHERE state = 'pending' AND deadline_at_ms IS NOT NULL AND deadline_at_ms <= {now} \
    AND lease_token IS NULL \
LIMIT $2";

impl Store {
    /// Dead-letters up to `batch` stranded deliveries (disabled
    /// destination first, then passed deadlines); returns their outcomes,
    /// recorded in the feed. Call until it returns fewer than `batch`.
    pub async fn dead_letter_stranded(&self, batch: u64) -> Result<Vec<OutcomeRecord>, StoreError> {
        let mut outcomes = self.dead_letter(Stranding::Disabled, batch).await?;
        let left = batch.saturating_sub(outcomes.len() as u64);
        if left > 0 {
            outcomes.extend(self.dead_letter(Stranding::Deadline, left).await?);
        }
        Ok(outcomes)
    }

    async fn dead_letter(
        &self,
        stranding: Stranding,
        batch: u64,
    ) -> Result<Vec<OutcomeRecord>, StoreError> {
        let (pick, reason) = match stranding {
            Stranding::Disabled => (
                PICK_DISABLED,
                "its destination is disabled; enable it (`herald destinations enable`), then redrive",
            ),
            Stranding::Deadline => (
                PICK_DEADLINE,
                "the deadline passed before an attempt could start",
            ),
        };
        let _turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        let values: Vec<Value> = vec![
            reason.into(),
            i64::try_from(batch).unwrap_or(i64::MAX).into(),
        ];
        let sql = DEAD_LETTER.replace("{pick}", pick);
        let rows = txn.query_all_raw(self.statement(&sql, values)).await?;
        if rows.is_empty() {
            txn.rollback().await?;
            return Ok(Vec::new());
        }
        let mut outcomes = Vec::with_capacity(rows.len());
        for row in &rows {
            outcomes.push(OutcomeRecord {
                sequence: 0,
                tenant_id: row.try_get_by_index(1)?,
                delivery_id: Some(row.try_get_by_index::<Uuid>(0)?),
                host: row.try_get_by_index(2)?,
                destination: row.try_get_by_index(3)?,
                kind: OutcomeKind::DeadLettered,
                attempt_number: unsigned(row.try_get_by_index(4)?, "attempt_count")?,
                status_code: None,
                error_kind: None,
                error_message: Some(reason.to_owned()),
                next_attempt_at_ms: None,
                created_at_ms: row.try_get_by_index(5)?,
                endpoint_id: None,
                event_type: None,
            });
        }
        let outcomes = self.record_outcomes(&txn, outcomes).await?;
        txn.commit().await?;
        Ok(outcomes)
    }
}
