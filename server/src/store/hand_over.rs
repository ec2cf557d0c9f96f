//! Hand-over: attempts that succeeded pass their slots straight to their
//! destination's next due deliveries, leased in one statement, without a
//! claim.
//!
//! A claim costs a few round trips and locks the destination's row; a
//! destination with a small in-flight limit and a backlog would otherwise
//! wait that long between every attempt (16 in flight at 20 ms each could
//! never reach 800/s). The hand-over keeps the destination's count in
//! flight as it was (for each attempt that ends, one starts), so it never lets a
//! destination exceed its limit, and it checks in the same statement that
//! the destination still takes deliveries: active, circuit closed, not
//! asked to hold off, no rate limit (a rate-limited destination's every
//! request goes through a claim, which debits its limiter), and no more in
//! flight than its limit (which an operator may have lowered). FIFO holds:
//! it takes the oldest due rows the claims have not locked.
//!
//! On PostgreSQL the statement starts its scan where the destination's due
//! rows began at its last hand-over ([`Fronts`]). Rows leased and
//! recorded leave their index entries behind, dead, at the front of the
//! destination's range until a vacuum removes them: draining a backlog of
//! 60,000 to one destination, a scan from the range's start walked 400 to
//! 560 pages of them to find the next four rows (4 to 8 ms a statement,
//! from `EXPLAIN (ANALYZE, BUFFERS)`). A bound on the due time lets the
//! index descend past them. Nothing is lost by it: a row due before the
//! bound (an enqueue whose not-before time lies in the past, a row a failed
//! claim left) is still claimed, and every second one statement scans
//! from the start again and moves the bound back.
//!
//! On PostgreSQL the statement commits without waiting for the disk
//! (`synchronous_commit` off for its own transaction only). Draining one
//! destination, hand-overs spent most of their time waiting for their
//! commits' flushes (`WALWrite`, `WALSync` in `pg_stat_activity`). A lease
//! is the one write that may be lost this way: if PostgreSQL crashes before
//! the flush, the row comes back unleased and due with its attempt
//! uncounted, the attempt's result is refused by its lease token, and the
//! delivery is sent again under the same number, which is what a lease
//! lost to a crash of Herald already means (invariant I4). Results, like
//! enqueues, wait for the disk, and flushing a result flushes every lease
//! committed before it.
//!
//! The count is exact for this replica: every lease it hands out carries
//! its own prefix ([`Store::own_leases`]), so the statement counts only
//! other replicas' leases and adds this replica's attempts in flight as
//! the scheduler knows them. Counting its own leases in the database
//! instead would see, for a moment, both the old and the new lease of
//! another slot's concurrent hand-over, and end a slot for nothing.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use sea_orm::{ConnectionTrait, Value};
use tokio::time::Instant;

use super::{
    Dialect, Store, StoreError,
    claim::{LEASED_COLUMNS, RESEND},
    millis,
    records::{ClaimedDelivery, DestinationRef},
    unreadable::read_leased,
};
use crate::destinations::policy::Policy;

/// Leases `$3`/`$4`'s `$10` oldest due rows (on PostgreSQL, due at `$11`
/// or later), if
/// the destination still takes deliveries and has room: other replicas'
/// leases (outside `$7`..`$8`) and this replica's `$9` attempts within its
/// limit; `{lock}` keeps concurrent hand-overs and claims off each other's
/// rows. On PostgreSQL each row comes with the due time it had (`was`).
const HAND_OVER: &str = "\
WITH open AS ( \
    SELECT 1 FROM destinations d \
    WHERE d.tenant_id = $3 AND d.destination = $4 AND d.state = 'active' \
        AND d.circuit_open_until_ms IS NULL \
        AND (d.hold_until_ms IS NULL OR d.hold_until_ms <= {now}) \
        AND (d.rate_limit = 0 OR (d.rate_limit IS NULL AND $5)) \
        AND ( \
            SELECT count(*) FROM deliveries b \
            WHERE b.tenant_id = $3 AND b.destination = $4 AND b.state = 'pending' \
                AND b.lease_token IS NOT NULL AND b.next_attempt_at_ms > {now} \
                AND NOT (b.lease_token BETWEEN $7 AND $8) \
        ) + $9 <= COALESCE(d.max_in_flight, $6) {commit} \
), next AS ( \
    SELECT x.id AS next_id, x.next_attempt_at_ms AS was FROM deliveries x \
    WHERE EXISTS (SELECT 1 FROM open) \
        AND x.tenant_id = $3 AND x.destination = $4 AND x.state = 'pending' \
        AND x.next_attempt_at_ms <= {now} {scan_from} \
    ORDER BY x.next_attempt_at_ms, x.id \
    LIMIT $10 {lock} \
) \
UPDATE deliveries SET {resend}, \
    lease_token = $1, \
    next_attempt_at_ms = {now} + $2, \
    updated_at_ms = {now} \
{chosen} \
    AND (CASE WHEN state = 'pending' THEN next_attempt_at_ms END) <= {now} \
RETURNING {columns}{was}";

/// PostgreSQL's parts of [`HAND_OVER`]: the statement commits without
/// waiting for its WAL to reach the disk (see the module), the scan starts
/// at the front, and each row comes back with the due time it had.
const POSTGRES_PARTS: [(&str, &str); 5] = [
    ("{lock}", "FOR UPDATE SKIP LOCKED"),
    (
        "{commit}",
        "AND set_config('synchronous_commit', 'off', true) = 'off'",
    ),
    ("{scan_from}", "AND x.next_attempt_at_ms >= $11"),
    ("{chosen}", "FROM next WHERE id = next.next_id"),
    ("{was}", ", next.was"),
];

/// SQLite's parts of [`HAND_OVER`]: one writer, so no locks, and no dead
/// index entries to skip (SQLite removes them as it writes); its
/// `RETURNING` cannot name the `FROM` table.
const SQLITE_PARTS: [(&str, &str); 5] = [
    ("{lock}", ""),
    ("{commit}", ""),
    ("{scan_from}", ""),
    ("{chosen}", "WHERE id IN (SELECT next_id FROM next)"),
    ("{was}", ""),
];

/// Where `next.was` comes back on PostgreSQL: after [`LEASED_COLUMNS`].
const WAS_COLUMN: usize = 17;

/// How long a destination's front is trusted before a statement scans its
/// due rows from the start again.
const FRONT_LIFETIME: Duration = Duration::from_secs(1);

/// Destinations whose fronts are kept (the most recently handed over).
const FRONTS_KEPT: usize = 4096;

/// Where each destination's due rows began at its latest hand-over, and
/// until when that is trusted.
#[derive(Debug, Default)]
pub(super) struct Fronts(Mutex<HashMap<DestinationRef, Front>>);

/// One destination's front.
#[derive(Debug, Clone, Copy)]
struct Front {
    /// The oldest due time among the rows last leased.
    due_ms: i64,
    /// When a scan from the start was last made.
    scanned: Instant,
}

impl Fronts {
    /// The due time `destination`'s scan may start at (`i64::MIN`: from
    /// the start).
    fn bound(&self, destination: &DestinationRef) -> i64 {
        self.fronts()
            .get(destination)
            .filter(|front| front.scanned.elapsed() < FRONT_LIFETIME)
            .map_or(i64::MIN, |front| front.due_ms)
    }

    /// A statement scanning from `bound` found the oldest due row at
    /// `oldest` (`None`: none at all).
    fn found(&self, destination: &DestinationRef, bound: i64, oldest: Option<i64>) {
        let mut fronts = self.fronts();
        let Some(due_ms) = oldest else {
            fronts.remove(destination);
            return;
        };
        let scanned = match fronts.get(destination) {
            Some(front) if bound != i64::MIN => front.scanned,
            _ => Instant::now(),
        };
        if fronts.len() >= FRONTS_KEPT && !fronts.contains_key(destination) {
            fronts.clear();
        }
        fronts.insert(destination.clone(), Front { due_ms, scanned });
    }

    fn fronts(&self) -> std::sync::MutexGuard<'_, HashMap<DestinationRef, Front>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a hand-over asks for.
#[derive(Debug, Clone, Copy)]
pub struct HandOver<'a> {
    /// The destination whose attempts succeeded.
    pub destination: &'a DestinationRef,
    /// How long the next delivery's lease lasts.
    pub lease: Duration,
    /// The configured policy, for what the destination does not override.
    pub defaults: &'a Policy,
    /// This replica's attempts in flight at the destination, those whose
    /// slots pass on included.
    pub in_flight: u32,
    /// The slots passing on: the most deliveries to lease.
    pub count: u32,
    /// The destination's circuit threshold, for the next delivery.
    pub failure_threshold: u32,
}

impl Store {
    /// The destination's next due deliveries, oldest first, leased for the
    /// slots attempts that succeeded there leave: as many as there are
    /// slots or fewer, none when it has none due or no longer takes
    /// deliveries this way (see the module).
    pub async fn hand_over(
        &self,
        request: &HandOver<'_>,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let token = self.lease_token();
        let mut values: Vec<Value> = vec![
            token.into(),
            millis(request.lease).into(),
            request.destination.tenant_id.clone().into(),
            request.destination.destination.clone().into(),
            request.defaults.rate_limit.is_none().into(),
            i32::try_from(request.defaults.max_in_flight)
                .unwrap_or(i32::MAX)
                .into(),
        ];
        let (own_first, own_last) = self.own_leases();
        values.extend([
            own_first.into(),
            own_last.into(),
            i32::try_from(request.in_flight).unwrap_or(i32::MAX).into(),
            i64::from(request.count).into(),
        ]);
        let bound = self
            .fronts
            .as_ref()
            .map(|fronts| fronts.bound(request.destination));
        if let Some(bound) = bound {
            values.push(bound.into());
        }
        let parts = match self.dialect {
            Dialect::Postgres => POSTGRES_PARTS,
            Dialect::Sqlite => SQLITE_PARTS,
        };
        let sql = parts
            .iter()
            .fold(HAND_OVER.to_owned(), |sql, (part, text)| {
                sql.replace(part, text)
            })
            .replace("{resend}", RESEND)
            .replace("{columns}", LEASED_COLUMNS);
        let turn = self.write_turn().await;
        let lease_ends = tokio::time::Instant::now() + request.lease;
        let rows = self.db.query_all_raw(self.statement(&sql, values)).await?;
        drop(turn);
        if let (Some(fronts), Some(bound)) = (&self.fronts, bound) {
            let oldest = rows
                .iter()
                .filter_map(|row| row.try_get_by_index::<i64>(WAS_COLUMN).ok())
                .min();
            fronts.found(request.destination, bound, oldest);
        }
        let (mut deliveries, unreadable) = read_leased(&rows, token, lease_ends);
        self.dead_letter_unreadable(&unreadable, request.defaults)
            .await;
        for delivery in &mut deliveries {
            delivery.failure_threshold = request.failure_threshold;
            delivery.may_hand_over = true;
        }
        Ok(deliveries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destination() -> DestinationRef {
        DestinationRef {
            tenant_id: "default".into(),
            destination: "https://hooks.example.com:443".into(),
        }
    }

    #[test]
    fn the_due_time_a_row_had_follows_the_leased_columns() {
        assert_eq!(LEASED_COLUMNS.split(',').count(), WAS_COLUMN);
    }

    #[tokio::test(start_paused = true)]
    async fn a_front_moves_with_what_is_leased_and_is_scanned_past_every_second() {
        let fronts = Fronts::default();
        let at = destination();
        assert_eq!(fronts.bound(&at), i64::MIN, "no front: from the start");
        fronts.found(&at, i64::MIN, Some(100));
        assert_eq!(fronts.bound(&at), 100);
        tokio::time::advance(FRONT_LIFETIME / 2).await;
        fronts.found(&at, 100, Some(250));
        assert_eq!(fronts.bound(&at), 250, "it follows the oldest row leased");
        tokio::time::advance(FRONT_LIFETIME / 2).await;
        assert_eq!(
            fronts.bound(&at),
            i64::MIN,
            "a second after the last scan from the start, the next one is"
        );
        fronts.found(&at, i64::MIN, Some(40));
        assert_eq!(fronts.bound(&at), 40, "a row due before the front is found");
        fronts.found(&at, 40, None);
        assert_eq!(
            fronts.bound(&at),
            i64::MIN,
            "nothing at or after it: from the start"
        );
    }
}
