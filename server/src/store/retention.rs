//! Deleting finished deliveries past their retention window, and the
//! events none of whose deliveries is left.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Value};

use super::{Store, StoreError, millis};
use crate::domain::DeliveryState;

/// One batch, oldest first, by the partial index on finished rows. On
/// PostgreSQL, rows another transaction holds (a redrive, say) are skipped
/// this round; the state is checked again on the rows deleted. Attempts go
/// with their delivery (`ON DELETE CASCADE`).
const DELETE_FINISHED: &str = "\
DELETE FROM deliveries WHERE state = $1 AND id IN ( \
    SELECT id FROM deliveries \
    WHERE state = $1 AND finished_at_ms IS NOT NULL AND finished_at_ms < {now} - $2 \
    ORDER BY finished_at_ms \
    LIMIT $3 {skip_locked} \
)";

/// One batch of events published before `$1` of which no delivery is
/// left, oldest first.
const DELETE_EVENTS: &str = "\
DELETE FROM events WHERE id IN ( \
    SELECT e.id FROM events e \
    WHERE e.created_at_ms < $1 \
        AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) \
    ORDER BY e.created_at_ms \
    LIMIT $2 \
)";

impl Store {
    /// Deletes at most `batch` events published before `cutoff_ms` of
    /// which no delivery is left (retention deleted them, or none was
    /// made). An event stays as long as any of its deliveries, so its
    /// dead letters can be recovered. Returns how many.
    pub async fn prune_events(&self, cutoff_ms: i64, batch: u64) -> Result<u64, StoreError> {
        let values: Vec<Value> = vec![
            cutoff_ms.into(),
            i64::try_from(batch).unwrap_or(i64::MAX).into(),
        ];
        let _turn = self.write_turn().await;
        let deleted = self
            .db
            .execute_raw(self.statement(DELETE_EVENTS, values))
            .await?;
        Ok(deleted.rows_affected())
    }

    /// Deletes at most `batch` deliveries in `state` (which must be
    /// terminal) that finished more than `older_than` ago, with their
    /// attempts. Returns how many.
    pub async fn delete_finished(
        &self,
        state: DeliveryState,
        older_than: Duration,
        batch: u64,
    ) -> Result<u64, StoreError> {
        if state == DeliveryState::Pending {
            return Err(StoreError::Corrupt(
                "refusing to delete pending deliveries".into(),
            ));
        }
        let values: Vec<Value> = vec![
            state.as_str().into(),
            millis(older_than).into(),
            i64::try_from(batch).unwrap_or(i64::MAX).into(),
        ];
        let sql = DELETE_FINISHED.replace("{skip_locked}", self.dialect.skip_locked());
        let _turn = self.write_turn().await;
        let deleted = self.db.execute_raw(self.statement(&sql, values)).await?;
        Ok(deleted.rows_affected())
    }
}
