//! Deleting finished deliveries past their retention window.

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

impl Store {
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
