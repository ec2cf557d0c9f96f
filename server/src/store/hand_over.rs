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
//! The count is exact for this replica: every lease it hands out carries
//! its own prefix ([`Store::own_leases`]), so the statement counts only
//! other replicas' leases and adds this replica's attempts in flight as
//! the scheduler knows them. Counting its own leases in the database
//! instead would see, for a moment, both the old and the new lease of
//! another slot's concurrent hand-over, and end a slot for nothing.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Value};

use super::{
    Dialect, Store, StoreError,
    claim::{LEASED_COLUMNS, RESEND},
    millis,
    records::{ClaimedDelivery, DestinationRef},
    unreadable::read_leased,
};
use crate::destinations::policy::Policy;

/// Leases `$3`/`$4`'s `$10` oldest due rows if the destination still takes
/// deliveries and has room: other replicas' leases (outside `$7`..`$8`)
/// and this replica's `$9` attempts within its limit; `{lock}` keeps
/// concurrent hand-overs and claims off each other's rows.
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
        ) + $9 <= COALESCE(d.max_in_flight, $6) \
), next AS ( \
    SELECT x.id FROM deliveries x \
    WHERE EXISTS (SELECT 1 FROM open) \
        AND x.tenant_id = $3 AND x.destination = $4 AND x.state = 'pending' \
        AND x.next_attempt_at_ms <= {now} \
    ORDER BY x.next_attempt_at_ms, x.id \
    LIMIT $10 {lock} \
) \
UPDATE deliveries SET {resend}, \
    lease_token = $1, \
    next_attempt_at_ms = {now} + $2, \
    updated_at_ms = {now} \
WHERE id IN (SELECT id FROM next) \
    AND (CASE WHEN state = 'pending' THEN next_attempt_at_ms END) <= {now} \
RETURNING {columns}";

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
        let lock = match self.dialect {
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let sql = HAND_OVER
            .replace("{lock}", lock)
            .replace("{resend}", RESEND)
            .replace("{columns}", LEASED_COLUMNS);
        let turn = self.write_turn().await;
        let lease_ends = tokio::time::Instant::now() + request.lease;
        let rows = self.db.query_all_raw(self.statement(&sql, values)).await?;
        drop(turn);
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
