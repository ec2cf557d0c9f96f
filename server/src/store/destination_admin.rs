//! Destinations as operators see and change them: list and get one (its
//! row, what is in flight there, its recent attempts), set its policy, and
//! pause, resume or enable it.
//!
//! Each change locks the destination's row first (PostgreSQL: `FOR
//! UPDATE`), then writes it and, for a change of state, records its event
//! in the feed last, in the same transaction: the lock order of every
//! writer ([`super::destinations`]). A change that may let work start
//! makes the destination due at once, so the next claim looks at it.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseTransaction, QueryResult, TransactionTrait, Value};

use super::{
    Actor, AuditKind, Dialect, Store, StoreError,
    destinations::{
        CANDIDATE_COLUMNS, NewDestination, candidate, override_values, policy_overrides,
    },
    health::BUCKET,
    records::{DestinationRecord, DestinationRef, OutcomeRecord, RecentAttempts},
    unsigned,
};
use crate::{
    destinations::{
        policy::{Policy, PolicyUpdate},
        state::{StateChange, WrongState},
    },
    domain::DestinationStatus,
};

/// Stats buckets in the recent window: the current minute and those
/// before it.
const RECENT_BUCKETS: u32 = 5;

/// A destination's row with what is in flight there, its recent attempts
/// and the database's now; `{filter}` and `{limit}` finish it.
const SHOW: &str = "\
SELECT {columns}, d.host, d.state_reason, d.state_changed_at_ms, d.consecutive_failures, \
    d.last_success_at_ms, d.last_failure_at_ms, d.failing_since_ms, d.created_at_ms, \
    d.updated_at_ms, \
    (SELECT CAST(count(*) AS INTEGER) FROM deliveries x \
     WHERE x.tenant_id = d.tenant_id AND x.destination = d.destination AND x.state = 'pending' \
        AND x.lease_token IS NOT NULL AND x.next_attempt_at_ms > {now}), \
    {recent}, {now} \
FROM destinations d \
WHERE d.tenant_id = $1 {filter} \
ORDER BY d.destination {limit}";

/// One destination's row, locked on PostgreSQL (`{lock}`).
const LOCK: &str = "\
SELECT {columns} FROM destinations d WHERE d.tenant_id = $1 AND d.destination = $2 {lock}";

/// Writes a destination's own policy (`$3`.. in the order of
/// [`override_values`]); an active destination is due at once.
const SET_POLICY: &str = "\
UPDATE destinations SET max_in_flight = $3, rate_limit = $4, rate_period_ms = $5, \
    rate_burst = $6, circuit_failure_threshold = $7, circuit_cooldown_ms = $8, \
    circuit_cooldown_max_ms = $9, \
    next_due_at_ms = CASE WHEN state = 'active' THEN {now} ELSE next_due_at_ms END, \
    idle = CASE WHEN state = 'active' THEN FALSE ELSE idle END, \
    updated_at_ms = {now} \
WHERE tenant_id = $1 AND destination = $2";

/// Changes a destination's state (`{assignments}`, `$3` the reason).
const CHANGE_STATE: &str = "\
UPDATE destinations SET {assignments}, state_reason = $3, state_changed_at_ms = {now}, \
    idle = FALSE, updated_at_ms = {now} \
WHERE tenant_id = $1 AND destination = $2 \
RETURNING host, {now}";

/// What a change of state writes besides the state's own columns. A paused
/// destination is out of the claim's walk; an active one is due at once.
fn assignments(change: StateChange) -> &'static str {
    match change {
        StateChange::Pause => "state = 'paused', next_due_at_ms = NULL",
        StateChange::Resume => "state = 'active', next_due_at_ms = {now}",
        StateChange::Enable => {
            "state = 'active', next_due_at_ms = {now}, failing_since_ms = NULL, \
             circuit_open_until_ms = NULL, circuit_trips = 0, consecutive_failures = 0, \
             hold_until_ms = NULL"
        }
    }
}

/// Which destinations a listing shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationPage {
    /// Only those in this state.
    pub status: Option<DestinationStatus>,
    /// Only those named after this one (the last of the previous page).
    pub after: Option<String>,
    /// Most destinations in the page.
    pub limit: u64,
}

impl Store {
    /// `tenant_id`'s destinations as `page` selects them, in the order of
    /// their names, their policies resolved over `defaults`.
    pub async fn list_destinations(
        &self,
        tenant_id: &str,
        page: &DestinationPage,
        defaults: &Policy,
    ) -> Result<Vec<DestinationRecord>, StoreError> {
        let mut values: Vec<Value> = vec![tenant_id.into()];
        let mut filter = String::new();
        if let Some(after) = &page.after {
            values.push(after.clone().into());
            filter.push_str(&format!(" AND d.destination > ${}", values.len()));
        }
        if let Some(status) = page.status {
            values.push(status.as_str().into());
            filter.push_str(&format!(" AND d.state = ${}", values.len()));
        }
        values.push(i64::try_from(page.limit).unwrap_or(i64::MAX).into());
        let limit = format!("LIMIT ${}", values.len());
        let txn = self.read_only().await?;
        let rows = txn
            .query_all_raw(self.statement(&show(&filter, &limit), values))
            .await
            .map_err(super::read::timed_out)?;
        txn.commit().await?;
        rows.iter().map(|row| record(row, defaults)).collect()
    }

    /// One of `destination`'s tenant's destinations, its policy resolved
    /// over `defaults`; `None` if the tenant has no such destination.
    pub async fn get_destination(
        &self,
        destination: &DestinationRef,
        defaults: &Policy,
    ) -> Result<Option<DestinationRecord>, StoreError> {
        self.on_read_pool(async |txn| self.show_one(txn, destination, defaults).await)
            .await
    }

    /// Applies `update` to `destination`'s own policy, making its row if it
    /// has none (its URL host is `host`), provided the policy in force
    /// afterwards (over `defaults`) is within range.
    pub async fn set_destination_policy(
        &self,
        actor: &Actor,
        destination: &DestinationRef,
        host: &str,
        update: &PolicyUpdate,
        defaults: &Policy,
    ) -> Result<DestinationRecord, StoreError> {
        let _turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        let new = NewDestination {
            destination: destination.clone(),
            host: host.to_owned(),
            due_ms: None,
        };
        self.ensure_destinations(&txn, &[new]).await?;
        let row = self
            .lock_destination(&txn, destination)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a destination row just made is gone".into()))?;
        let overrides = policy_overrides(&row)?.updated(update);
        if let Err(error) = defaults.with(&overrides).validate() {
            txn.rollback().await?;
            return Err(error.into());
        }
        let mut values = key_values(destination);
        values.extend(override_values(&overrides));
        txn.execute_raw(self.statement(SET_POLICY, values)).await?;
        let details = serde_json::json!({
            "destination": destination.destination,
            "change": format!("{update:?}"),
        });
        self.record_audit(&txn, actor, AuditKind::DestinationPolicySet, details)
            .await?;
        let record = self.changed(&txn, destination, defaults).await?;
        txn.commit().await?;
        Ok(record)
    }

    /// Makes `change` to `destination` (with `reason` to show, for a
    /// pause) and records its event and `actor`'s audit event, if the destination is in the state
    /// the change starts from; returns the destination as changed and the
    /// event, recorded in the feed.
    pub async fn change_destination_state(
        &self,
        actor: &Actor,
        destination: &DestinationRef,
        change: StateChange,
        reason: Option<&str>,
        defaults: &Policy,
    ) -> Result<(DestinationRecord, OutcomeRecord), StoreError> {
        let _turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        let Some(row) = self.lock_destination(&txn, destination).await? else {
            txn.rollback().await?;
            return Err(StoreError::DestinationNotFound(
                destination.destination.clone(),
            ));
        };
        let state: DestinationStatus = row.try_get_by_index::<String>(2)?.parse()?;
        if state != change.from() {
            txn.rollback().await?;
            return Err(WrongState {
                destination: destination.destination.clone(),
                state,
                change,
            }
            .into());
        }
        let sql = CHANGE_STATE.replace("{assignments}", assignments(change));
        let mut values = key_values(destination);
        values.push(reason.map(str::to_owned).into());
        let changed = txn
            .query_one_raw(self.statement(&sql, values))
            .await?
            .ok_or_else(|| StoreError::Corrupt("a locked destination row is gone".into()))?;
        // Read before the event takes the feed's lock, which is held to
        // the commit.
        let record = self.changed(&txn, destination, defaults).await?;
        let event = OutcomeRecord {
            sequence: 0,
            tenant_id: destination.tenant_id.clone(),
            delivery_id: None,
            host: changed.try_get_by_index(0)?,
            destination: Some(destination.destination.clone()),
            kind: change.event(),
            attempt_number: 0,
            status_code: None,
            error_kind: None,
            error_message: reason.map(str::to_owned),
            next_attempt_at_ms: None,
            created_at_ms: changed.try_get_by_index(1)?,
            endpoint_id: None,
            event_type: None,
        };
        let kind = match change {
            StateChange::Pause => AuditKind::DestinationPaused,
            StateChange::Resume => AuditKind::DestinationResumed,
            StateChange::Enable => AuditKind::DestinationEnabled,
        };
        let details = serde_json::json!({
            "destination": destination.destination,
            "reason": reason,
        });
        self.record_audit(&txn, actor, kind, details).await?;
        let event = self.record_outcome(&txn, event).await?;
        txn.commit().await?;
        Ok((record, event))
    }

    /// Locks `destination`'s row (PostgreSQL) and reads it
    /// ([`CANDIDATE_COLUMNS`]); `None` if there is none.
    async fn lock_destination(
        &self,
        txn: &DatabaseTransaction,
        destination: &DestinationRef,
    ) -> Result<Option<QueryResult>, StoreError> {
        let lock = match self.dialect {
            Dialect::Postgres => "FOR UPDATE",
            Dialect::Sqlite => "",
        };
        let sql = LOCK
            .replace("{columns}", CANDIDATE_COLUMNS)
            .replace("{lock}", lock);
        Ok(txn
            .query_one_raw(self.statement(&sql, key_values(destination)))
            .await?)
    }

    /// `destination` as `txn` just changed it.
    async fn changed(
        &self,
        txn: &DatabaseTransaction,
        destination: &DestinationRef,
        defaults: &Policy,
    ) -> Result<DestinationRecord, StoreError> {
        self.show_one(txn, destination, defaults)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a changed destination row is gone".into()))
    }

    async fn show_one(
        &self,
        db: &impl ConnectionTrait,
        destination: &DestinationRef,
        defaults: &Policy,
    ) -> Result<Option<DestinationRecord>, StoreError> {
        let sql = show("AND d.destination = $2", "");
        db.query_one_raw(self.statement(&sql, key_values(destination)))
            .await?
            .map(|row| record(&row, defaults))
            .transpose()
    }
}

/// The tenant and name of `destination`, as `$1` and `$2`.
fn key_values(destination: &DestinationRef) -> Vec<Value> {
    vec![
        destination.tenant_id.clone().into(),
        destination.destination.clone().into(),
    ]
}

/// How long the recent window reaches back.
fn recent_window() -> Duration {
    BUCKET * RECENT_BUCKETS
}

/// [`SHOW`] with `filter` and `limit`.
fn show(filter: &str, limit: &str) -> String {
    let bucket = super::millis(BUCKET);
    // The buckets of the recent window: the current minute's and those
    // before it.
    let since = format!(
        "({{now}} / {bucket}) * {bucket} - {}",
        bucket * i64::from(RECENT_BUCKETS - 1)
    );
    let recent: Vec<String> = ["attempts", "successes", "duration_us"]
        .iter()
        .map(|column| {
            format!(
                "(SELECT CAST(COALESCE(SUM(s.{column}), 0) AS BIGINT) FROM destination_stats s \
                 WHERE s.tenant_id = d.tenant_id AND s.destination = d.destination \
                    AND s.bucket_ms >= {since})"
            )
        })
        .collect();
    SHOW.replace("{columns}", CANDIDATE_COLUMNS)
        .replace("{recent}", &recent.join(", "))
        .replace("{filter}", filter)
        .replace("{limit}", limit)
}

/// A row of [`SHOW`] as a record, its policy resolved over `defaults`.
fn record(row: &QueryResult, defaults: &Policy) -> Result<DestinationRecord, StoreError> {
    let candidate = candidate(row, defaults)?;
    let total = |index: usize| -> Result<u64, StoreError> {
        let total: i64 = row.try_get_by_index(index)?;
        u64::try_from(total).map_err(|_| StoreError::Corrupt(format!("negative stats {total}")))
    };
    Ok(DestinationRecord {
        destination: candidate.destination,
        host: row.try_get_by_index(16)?,
        status: candidate.status,
        state_reason: row.try_get_by_index(17)?,
        state_changed_at_ms: row.try_get_by_index(18)?,
        policy: candidate.policy,
        overrides: policy_overrides(row)?,
        circuit: candidate.circuit,
        consecutive_failures: unsigned(row.try_get_by_index(19)?, "consecutive_failures")?,
        hold_until_ms: candidate.hold_until_ms,
        last_success_at_ms: row.try_get_by_index(20)?,
        last_failure_at_ms: row.try_get_by_index(21)?,
        failing_since_ms: row.try_get_by_index(22)?,
        created_at_ms: row.try_get_by_index(23)?,
        updated_at_ms: row.try_get_by_index(24)?,
        in_flight: unsigned(row.try_get_by_index(25)?, "in_flight")?,
        recent: RecentAttempts {
            window: recent_window(),
            attempts: total(26)?,
            successes: total(27)?,
            duration_us: total(28)?,
        },
        now_ms: row.try_get_by_index(29)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_covers_five_minutes() {
        assert_eq!(recent_window(), Duration::from_secs(300));
        assert!(show("", "").contains("- 240000"));
    }
}
