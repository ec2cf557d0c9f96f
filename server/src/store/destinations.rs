//! Destination rows on the scheduler's path: reading a row's policy and
//! state, making sure a row exists for every destination with deliveries,
//! and waking a destination parked with nothing due when work arrives.
//! Also the columns of a destination's own policy, read here and written
//! by [`super::destination_admin`].
//!
//! Lock order: a transaction that writes both locks destination rows
//! before delivery rows, and several destination rows in key order; the
//! claim does the same, so none of them can wait on each other in a cycle.

use std::time::Duration;

use sea_orm::{ConnectionTrait, QueryResult, Value};

use super::{
    Store, StoreError,
    records::DestinationRef,
    sql::{placeholders, tuple},
};
use crate::destinations::{
    admission::Candidate,
    breaker::Circuit,
    policy::{Policy, PolicyOverrides, RateLimit, RatePeriod},
};

/// The columns [`policy_overrides`] and [`candidate`] read, in order, from
/// a row of `destinations` aliased `d`.
pub(super) const CANDIDATE_COLUMNS: &str = "d.tenant_id, d.destination, d.state, \
    d.max_in_flight, d.rate_limit, d.rate_period_ms, d.rate_burst, d.circuit_failure_threshold, \
    d.circuit_cooldown_ms, d.circuit_cooldown_max_ms, d.circuit_open_until_ms, d.circuit_trips, \
    d.hold_until_ms, d.rate_tat_us, d.next_due_at_ms, d.idle";

/// Creates the rows of destinations that have none, due when their first
/// delivery is: at once, or parked until its not-before time (so an
/// earlier delivery wakes it). A destination that exists is not touched
/// (no write, no lock).
const ENSURE: &str = "\
INSERT INTO destinations (tenant_id, destination, host, next_due_at_ms, idle, created_at_ms, \
    updated_at_ms) VALUES {rows} \
ON CONFLICT (tenant_id, destination) DO NOTHING";

/// Wakes destinations parked with nothing due (`idle`) whose next look is
/// later than the work that arrived. A destination that is busy,
/// rate-limited, open or paused is left alone: its next look comes
/// anyway, and it is not written. On PostgreSQL the rows are locked in key
/// order first; these are the common expressions, then the update.
const WAKE_LOCKED: &str = "\
woken (w_tenant, w_destination, w_due) AS (VALUES {rows}), \
locked AS ( \
    SELECT d.tenant_id, d.destination, w.w_due FROM destinations d \
    JOIN woken w ON d.tenant_id = w.w_tenant AND d.destination = w.w_destination \
    WHERE d.idle AND d.state = 'active' \
        AND (d.next_due_at_ms IS NULL OR d.next_due_at_ms > w.w_due) \
    ORDER BY d.tenant_id, d.destination \
    FOR UPDATE OF d \
)";

const WAKE_UPDATE: &str = "\
UPDATE destinations SET next_due_at_ms = locked.w_due, idle = FALSE \
FROM locked \
WHERE destinations.tenant_id = locked.tenant_id AND destinations.destination = locked.destination";

/// The same on SQLite, whose single writer needs no lock order.
const WAKE_SQLITE: &str = "\
WITH woken (w_tenant, w_destination, w_due) AS (VALUES {rows}) \
UPDATE destinations SET next_due_at_ms = woken.w_due, idle = FALSE \
FROM woken \
WHERE destinations.tenant_id = woken.w_tenant AND destinations.destination = woken.w_destination \
    AND destinations.idle AND destinations.state = 'active' \
    AND (destinations.next_due_at_ms IS NULL OR destinations.next_due_at_ms > woken.w_due)";

/// Gives every pending delivery's destination a row, if it has none (an
/// older release enqueued it).
const ADOPT: &str = "\
INSERT INTO destinations (tenant_id, destination, host, next_due_at_ms, created_at_ms, \
    updated_at_ms) \
SELECT tenant_id, destination, MIN(host), {now}, {now}, {now} FROM deliveries \
WHERE state = 'pending' GROUP BY tenant_id, destination \
ON CONFLICT (tenant_id, destination) DO NOTHING";

/// Has every destination parked with nothing due looked at once more.
const LOOK_AGAIN: &str = "\
UPDATE destinations SET next_due_at_ms = {now}, idle = FALSE \
WHERE idle AND state = 'active'";

/// Idle destinations with due deliveries, woken; in key order and passing
/// over rows others hold (`{lock}`), so it never waits on a claim or a
/// completer.
const WAKE_OVERLOOKED: &str = "\
WITH overlooked AS ( \
    SELECT d.tenant_id, d.destination FROM destinations d \
    WHERE d.idle AND d.state = 'active' \
        AND (d.next_due_at_ms IS NULL OR d.next_due_at_ms > {now}) \
        AND EXISTS ( \
            SELECT 1 FROM deliveries x \
            WHERE x.tenant_id = d.tenant_id AND x.destination = d.destination \
                AND x.state = 'pending' AND x.next_attempt_at_ms <= {now} \
        ) \
    ORDER BY d.tenant_id, d.destination {lock} \
) \
UPDATE destinations SET next_due_at_ms = {now}, idle = FALSE \
FROM overlooked \
WHERE destinations.tenant_id = overlooked.tenant_id \
    AND destinations.destination = overlooked.destination";

/// A destination to wake: work there is due at `at_ms` (Unix ms), or, when
/// that is `None`, `after` the statement's now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wake {
    /// The destination.
    pub destination: DestinationRef,
    /// When its work is due, if a time was given.
    pub at_ms: Option<i64>,
    /// Otherwise, how long after the statement's now.
    pub after: Duration,
}

impl Store {
    /// At start: every destination with pending deliveries has a row, and
    /// every one parked with nothing due is looked at again. Whatever an
    /// older release enqueued, or a wake-up missed, is found by the next
    /// claims. One pass over the pending deliveries' index.
    pub async fn look_at_every_destination(&self) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        self.db
            .execute_raw(self.statement(ADOPT, Vec::new()))
            .await?;
        self.db
            .execute_raw(self.statement(LOOK_AGAIN, Vec::new()))
            .await?;
        Ok(())
    }

    /// Wakes every idle destination that has due deliveries: a safety net
    /// for an enqueue whose wake-up came before a claim parked its
    /// destination and whose commit came after the claim's second look.
    /// Returns how many were woken.
    pub async fn wake_overlooked(&self) -> Result<u64, StoreError> {
        let lock = match self.dialect {
            super::Dialect::Postgres => "FOR UPDATE OF d SKIP LOCKED",
            super::Dialect::Sqlite => "",
        };
        let sql = WAKE_OVERLOOKED.replace("{lock}", lock);
        let _turn = self.write_turn().await;
        let result = self
            .db
            .execute_raw(self.statement(&sql, Vec::new()))
            .await?;
        Ok(result.rows_affected())
    }

    /// Makes sure each of `destinations` (with its host and the due time
    /// of its first delivery, now when `None`) has a row; existing rows are
    /// left as they are.
    pub(super) async fn ensure_destinations(
        &self,
        db: &impl ConnectionTrait,
        destinations: &[NewDestination],
    ) -> Result<(), StoreError> {
        if destinations.is_empty() {
            return Ok(());
        }
        let (sql, values) = ensure_statement(destinations, 1);
        db.execute_raw(self.statement(&sql, values)).await?;
        Ok(())
    }

    /// Wakes each of `wakes` that is parked with nothing due and would
    /// otherwise look later than its new work.
    pub(super) async fn wake(
        &self,
        db: &impl ConnectionTrait,
        wakes: &[Wake],
    ) -> Result<(), StoreError> {
        if wakes.is_empty() {
            return Ok(());
        }
        let (rows, values) = wake_rows(wakes, 1);
        let sql = match self.dialect {
            super::Dialect::Postgres => format!(
                "WITH {} {WAKE_UPDATE}",
                WAKE_LOCKED.replace("{rows}", &rows)
            ),
            super::Dialect::Sqlite => WAKE_SQLITE.replace("{rows}", &rows),
        };
        db.execute_raw(self.statement(&sql, values)).await?;
        Ok(())
    }

    /// PostgreSQL: `statement` (which starts with `WITH `) preceded by
    /// common expressions that make sure `destinations` have rows and wake
    /// `wakes`, all in one statement; its values follow `values`.
    pub(super) fn with_destinations(
        &self,
        statement: &str,
        mut values: Vec<Value>,
        destinations: &[NewDestination],
        wakes: &[Wake],
    ) -> (String, Vec<Value>) {
        let body = statement
            .strip_prefix("WITH ")
            .expect("a statement with common expressions");
        let mut ctes = Vec::new();
        if !destinations.is_empty() {
            let (ensure, ensure_values) = ensure_statement(destinations, values.len() + 1);
            values.extend(ensure_values);
            ctes.push(format!("ensured AS ({ensure})"));
        }
        if !wakes.is_empty() {
            let (rows, wake_values) = wake_rows(wakes, values.len() + 1);
            values.extend(wake_values);
            ctes.push(WAKE_LOCKED.replace("{rows}", &rows));
            ctes.push(format!("wake AS ({WAKE_UPDATE})"));
        }
        ctes.push(body.to_owned());
        (format!("WITH {}", ctes.join(", ")), values)
    }
}

/// A destination an enqueue may be the first to name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDestination {
    /// The destination.
    pub destination: DestinationRef,
    /// Its URL host.
    pub host: String,
    /// When its first delivery is due, Unix ms; now when `None`.
    pub due_ms: Option<i64>,
}

/// The insert of `destinations`' rows, placeholders from `first`.
fn ensure_statement(destinations: &[NewDestination], first: usize) -> (String, Vec<Value>) {
    let mut values: Vec<Value> = Vec::with_capacity(destinations.len() * 4);
    for new in destinations {
        values.extend([
            new.destination.tenant_id.clone().into(),
            new.destination.destination.clone().into(),
            new.host.clone().into(),
            new.due_ms.into(),
        ]);
    }
    let rows = placeholders(destinations.len(), 4, first, |names| {
        format!(
            "({}, {}, {}, COALESCE({due}, {{now}}), {due} IS NOT NULL, {{now}}, {{now}})",
            names[0],
            names[1],
            names[2],
            due = names[3]
        )
    });
    (ENSURE.replace("{rows}", &rows), values)
}

/// The rows of a wake, one per destination (the earliest of its wakes),
/// in key order, placeholders from `first`.
fn wake_rows(wakes: &[Wake], first: usize) -> (String, Vec<Value>) {
    let mut earliest: std::collections::BTreeMap<&DestinationRef, (Option<i64>, Duration)> =
        std::collections::BTreeMap::new();
    for wake in wakes {
        earliest
            .entry(&wake.destination)
            .and_modify(|(at, after)| {
                *at = match (*at, wake.at_ms) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    _ => None,
                };
                *after = (*after).min(wake.after);
            })
            .or_insert((wake.at_ms, wake.after));
    }
    let mut values: Vec<Value> = Vec::with_capacity(earliest.len() * 4);
    for (destination, (at_ms, after)) in &earliest {
        values.extend([
            destination.tenant_id.clone().into(),
            destination.destination.clone().into(),
            (*at_ms).into(),
            super::millis(*after).into(),
        ]);
    }
    let rows = placeholders(earliest.len(), 4, first, |names| {
        format!(
            "({}, {}, COALESCE({}, {{now}} + {}))",
            names[0], names[1], names[2], names[3]
        )
    });
    (rows, values)
}

/// The policy a row sets for itself, from [`CANDIDATE_COLUMNS`] index 3 on.
pub(super) fn policy_overrides(row: &QueryResult) -> Result<PolicyOverrides, StoreError> {
    let count = |index: usize| -> Result<Option<u32>, StoreError> {
        row.try_get_by_index::<Option<i32>>(index)?
            .map(|value| {
                u32::try_from(value)
                    .map_err(|_| StoreError::Corrupt(format!("negative policy value {value}")))
            })
            .transpose()
    };
    let duration = |index: usize| -> Result<Option<Duration>, StoreError> {
        Ok(row
            .try_get_by_index::<Option<i64>>(index)?
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))))
    };
    let rate_limit = match count(4)? {
        None => None,
        Some(0) => Some(None),
        Some(requests) => {
            let period_ms: Option<i64> = row.try_get_by_index(5)?;
            let period = period_ms
                .and_then(RatePeriod::from_millis)
                .ok_or_else(|| StoreError::Corrupt(format!("rate period {period_ms:?} ms")))?;
            Some(Some(RateLimit {
                requests,
                period,
                burst: count(6)?.unwrap_or(1),
            }))
        }
    };
    Ok(PolicyOverrides {
        max_in_flight: count(3)?,
        rate_limit,
        failure_threshold: count(7)?,
        cooldown: duration(8)?,
        cooldown_max: duration(9)?,
    })
}

/// The columns of a destination's own policy, `max_in_flight` to
/// `circuit_cooldown_max_ms`, as `overrides` sets them (NULL: the default;
/// a rate limit of 0: explicitly none).
pub(super) fn override_values(overrides: &PolicyOverrides) -> Vec<Value> {
    let count =
        |value: Option<u32>| Value::from(value.map(|n| i32::try_from(n).unwrap_or(i32::MAX)));
    let ms = |value: Option<Duration>| Value::from(value.map(super::millis));
    let (requests, period_ms, burst) = match overrides.rate_limit {
        None => (None, None, None),
        Some(None) => (Some(0), None, None),
        Some(Some(limit)) => (
            Some(limit.requests),
            Some(limit.period.as_millis()),
            Some(limit.burst),
        ),
    };
    vec![
        count(overrides.max_in_flight),
        count(requests),
        Value::from(period_ms),
        count(burst),
        count(overrides.failure_threshold),
        ms(overrides.cooldown),
        ms(overrides.cooldown_max),
    ]
}

/// A destination as a claim reads it, its policy resolved over `defaults`.
pub(super) fn candidate(row: &QueryResult, defaults: &Policy) -> Result<Candidate, StoreError> {
    let trips: i32 = row.try_get_by_index(11)?;
    Ok(Candidate {
        tenant_id: row.try_get_by_index(0)?,
        destination: row.try_get_by_index(1)?,
        status: row.try_get_by_index::<String>(2)?.parse()?,
        policy: defaults.with(&policy_overrides(row)?),
        circuit: Circuit {
            open_until_ms: row.try_get_by_index(10)?,
            trips: u32::try_from(trips).unwrap_or(0),
        },
        hold_until_ms: row.try_get_by_index(12)?,
        rate_tat_us: row.try_get_by_index(13)?,
        next_due_at_ms: row.try_get_by_index(14)?,
        idle: row.try_get_by_index(15)?,
    })
}

/// The `(tenant, destination)` pairs of `destinations` as one tuple per
/// row, numbered from `first`, with their values.
pub(super) fn pairs(destinations: &[&DestinationRef], first: usize) -> (String, Vec<Value>) {
    let mut values = Vec::with_capacity(destinations.len() * 2);
    for destination in destinations {
        values.push(destination.tenant_id.clone().into());
        values.push(destination.destination.clone().into());
    }
    (placeholders(destinations.len(), 2, first, tuple), values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_become_their_columns() {
        let (count, ms) = (Value::Int(None), Value::BigInt(None));
        let none = override_values(&PolicyOverrides::default());
        assert_eq!(
            none,
            [&count, &count, &ms, &count, &count, &ms, &ms].map(Clone::clone)
        );
        let unlimited = override_values(&PolicyOverrides {
            rate_limit: Some(None),
            ..PolicyOverrides::default()
        });
        assert_eq!(unlimited[1], Value::from(Some(0)));
        assert_eq!(unlimited[2], ms);
        let limited = override_values(&PolicyOverrides {
            max_in_flight: Some(4),
            rate_limit: Some(Some(RateLimit {
                requests: 50,
                period: RatePeriod::Minute,
                burst: 5,
            })),
            cooldown: Some(Duration::from_millis(1500)),
            ..PolicyOverrides::default()
        });
        assert_eq!(limited[0], Value::from(Some(4)));
        assert_eq!(limited[2], Value::from(Some(60_000_i64)));
        assert_eq!(limited[3], Value::from(Some(5)));
        assert_eq!(limited[5], Value::from(Some(1500_i64)));
    }
}
