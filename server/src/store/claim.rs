//! Claim: lease due deliveries, only as many as can start now.
//!
//! One transaction walks destinations, not deliveries:
//! 1. it locks up to one candidate per free permit among the destinations
//!    due for a look, in fair order: each tenant's destinations take
//!    turns (the first of every tenant, then the second of every tenant,
//!    ...), ties broken at random so no tenant is always first (claims
//!    skip destinations another claim holds, on PostgreSQL);
//! 2. for each, [`Opening::of`] says what its state allows, and the
//!    store counts what is in flight there (unexpired leases, across every
//!    replica, minus this replica's attempts that finished and await
//!    recording) and fetches its oldest due rows, up to what may start;
//! 3. the rows are dealt one per destination per round, oldest first,
//!    until the permits run out, and leased: the attempt is counted, a
//!    fresh token stamped and the due time pushed to the lease's end, so a
//!    replica that dies mid-attempt needs no rescuer; a row that still
//!    carries an expired lease lost that attempt's result, and is leased
//!    to make the same attempt again ([`RESEND`]);
//! 4. each destination is parked ([`park`]) until it is next worth a look.
//!
//! So a claim never leases a row it must hand back, FIFO holds within a
//! destination, and a destination's in-flight limit, rate limit and
//! circuit hold across replicas: its row stays locked from the count to
//! the commit. PostgreSQL does steps 2 to 4 in two statements; SQLite,
//! in process and with one writer, in a few small ones per destination.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use sea_orm::{
    ConnectionTrait, DatabaseTransaction, QueryResult, TransactionTrait, Value,
    sea_query::ArrayType,
};
use uuid::Uuid;

use super::{
    Dialect, Store, StoreError,
    destinations::{CANDIDATE_COLUMNS, Wake, candidate},
    http_request, millis,
    records::{ClaimedDelivery, DestinationRef, Lease},
    sql::{list, placeholders, tuple},
    unreadable::read_leased,
    unsigned,
};
use crate::{
    destinations::{
        admission::{Candidate, Found, Opening, Park, park},
        policy::Policy,
    },
    domain::TraceContext,
};

/// Due destinations considered for fair order in one claim: the
/// candidates are the fairest among the soonest-due this many.
const WINDOW: i64 = 1024;

/// Candidates: destinations due for a look, `{skip}` left out, each
/// tenant's in turn. `$1`: the window; `$2`: how many.
const CANDIDATES: &str = "\
SELECT {columns}, {now} \
FROM destinations d \
JOIN ( \
    SELECT tenant_id, destination, \
        row_number() OVER (PARTITION BY tenant_id ORDER BY next_due_at_ms) AS turn \
    FROM ( \
        SELECT tenant_id, destination, next_due_at_ms FROM destinations \
        WHERE next_due_at_ms <= {now} {skip} \
        ORDER BY next_due_at_ms LIMIT $1 \
    ) soonest \
) fair ON fair.tenant_id = d.tenant_id AND fair.destination = d.destination \
WHERE d.next_due_at_ms <= {now} \
ORDER BY fair.turn, random() \
LIMIT $2 {lock}";

/// What PostgreSQL finds at each candidate in one statement, one row per
/// finding: `1` for a lease in flight (its id and token: whether it is one
/// of this replica's finished attempts is told apart in the claim), `2`
/// for a due row, oldest first (up to `c_room` plus one: what may start is
/// known once the leases are counted), `3` for the earliest pending row
/// not due yet. Candidates come as arrays (`$1`..`$4`), so the statement's
/// text, and its plan, stay the same from claim to claim.
const FIND_POSTGRES: &str = "\
WITH c AS ( \
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[]) \
        AS c (c_ord, c_tenant, c_destination, c_room) \
) \
SELECT c.c_ord, 1, x.id, x.lease_token, x.next_attempt_at_ms FROM c \
CROSS JOIN LATERAL ( \
    SELECT x.id, x.lease_token, x.next_attempt_at_ms FROM deliveries x \
    WHERE x.tenant_id = c.c_tenant AND x.destination = c.c_destination \
        AND x.state = 'pending' AND x.lease_token IS NOT NULL \
        AND x.next_attempt_at_ms > {now} \
) x \
UNION ALL \
SELECT c.c_ord, 2, r.id, NULL, r.next_attempt_at_ms FROM c \
CROSS JOIN LATERAL ( \
    SELECT x.id, x.next_attempt_at_ms FROM deliveries x \
    WHERE x.tenant_id = c.c_tenant AND x.destination = c.c_destination \
        AND x.state = 'pending' AND x.next_attempt_at_ms <= {now} \
    ORDER BY x.next_attempt_at_ms, x.id \
    LIMIT c.c_room + 1 \
) r \
UNION ALL \
SELECT c.c_ord, 3, NULL, NULL, ( \
    SELECT min(x.next_attempt_at_ms) FROM deliveries x \
    WHERE x.tenant_id = c.c_tenant AND x.destination = c.c_destination \
        AND x.state = 'pending' AND x.next_attempt_at_ms > {now} \
) FROM c";

/// SQLite, per candidate: what is in flight.
const BUSY_SQLITE: &str = "\
SELECT count(*) FROM deliveries x \
WHERE x.tenant_id = $1 AND x.destination = $2 AND x.state = 'pending' \
    AND x.lease_token IS NOT NULL AND x.next_attempt_at_ms > {now} {unrecorded}";

/// SQLite, per candidate: the earliest pending row not due yet.
const NEXT_PENDING_SQLITE: &str = "\
SELECT min(x.next_attempt_at_ms) FROM deliveries x \
WHERE x.tenant_id = $1 AND x.destination = $2 AND x.state = 'pending' \
    AND x.next_attempt_at_ms > {now}";

/// SQLite, per candidate: its oldest due rows.
const DUE_SQLITE: &str = "\
SELECT x.id FROM deliveries x \
WHERE x.tenant_id = $1 AND x.destination = $2 AND x.state = 'pending' \
    AND x.next_attempt_at_ms <= {now} \
ORDER BY x.next_attempt_at_ms, x.id LIMIT $3";

/// The columns of a leased row that [`claimed`] reads.
pub(super) const LEASED_COLUMNS: &str = "id, tenant_id, url, method, headers, body, content_type, \
    attempt_count, max_attempts, destination, deadline_at_ms, traceparent, tracestate, \
    created_at_ms, resend, endpoint_id, event_type";

/// How a lease counts its attempt, in the `SET` of every statement that
/// leases a row (a claim, a hand-over). A row still carrying a token (an
/// expired lease: only a claim sets one, and recording, cancelling or
/// giving it back clears it) holds an attempt that was made but whose
/// result was never recorded, so this lease makes that attempt again: it
/// keeps the number and is marked `resend`, and neither the attempt
/// budget nor a deadline that passed meanwhile stops it (invariant I4).
/// Once only: a resend whose own result is lost too (a delivery whose
/// sending crashes Herald every time, say) counts the next lease as a
/// new attempt, so such a delivery still reaches its budget and is
/// dead-lettered after at most twice `max_attempts` sends.
pub(super) const RESEND: &str = "\
    attempt_count = attempt_count + CASE WHEN lease_token IS NULL OR resend THEN 1 ELSE 0 END, \
    resend = (lease_token IS NOT NULL AND NOT resend)";

/// Leases the chosen rows (`{ids}`); one that changed since it was found
/// (a cancel, or a slot passed on to it) is left out. The check is written so that no index can serve
/// it: with statistics that lag a growing backlog, PostgreSQL otherwise
/// read every due row of the destination index to find these few, instead
/// of looking each up by its key (measured: 20-40 ms a claim at 20,000 due).
const LEASE: &str = "\
UPDATE deliveries SET {resend}, \
    lease_token = $1, \
    next_attempt_at_ms = {now} + $2, \
    updated_at_ms = {now} \
WHERE id {ids} AND (CASE WHEN state = 'pending' THEN next_attempt_at_ms END) <= {now} \
RETURNING {columns}";

/// PostgreSQL: the chosen rows, locked unless another transaction holds
/// one (a slot passed on to it, its result being recorded), which is left
/// to it. Updating a row another transaction changed would lock it even
/// though the check then leaves it out, and a claim that held such a row
/// while waiting for a completer that wanted it was a deadlock: a claim
/// never waits for a row.
const LOCK_CHOSEN_POSTGRES: &str = "IN ( \
    SELECT l.id FROM deliveries l WHERE l.id = ANY($3::uuid[]) \
        AND (CASE WHEN l.state = 'pending' THEN l.next_attempt_at_ms END) <= {now} \
    FOR UPDATE SKIP LOCKED)";

/// Where destinations are parked, from `{parked}`: rows of (tenant,
/// destination, next due, idle, rate tat).
const PARK: &str = "\
UPDATE destinations SET next_due_at_ms = parked.p_due, idle = parked.p_idle, \
    rate_tat_us = parked.p_tat, updated_at_ms = {now} \
FROM parked \
WHERE destinations.tenant_id = parked.p_tenant AND destinations.destination = parked.p_destination";

/// PostgreSQL's parked rows, from arrays `$4`..`$8` (-1 stands for NULL,
/// which arrays of the driver cannot hold).
const PARKED_POSTGRES: &str = "\
parked AS ( \
    SELECT p_tenant, p_destination, NULLIF(p_due, -1) AS p_due, p_idle, \
        NULLIF(p_tat, -1) AS p_tat \
    FROM unnest($4::text[], $5::text[], $6::bigint[], $7::bool[], $8::bigint[]) \
        AS p (p_tenant, p_destination, p_due, p_idle, p_tat) \
)";

/// SQLite's parked rows: `{rows}` of five values each.
const PARKED_SQLITE: &str = "\
parked (p_tenant, p_destination, p_due, p_idle, p_tat) AS (VALUES {rows})";

/// Gives leases back, `{leases}`, in one statement however many: the rows
/// are due again at once. `$1` says whether the attempts never started,
/// so their counts are returned too.
const RELEASE: &str = "\
UPDATE deliveries SET \
    lease_token = NULL, \
    next_attempt_at_ms = {now}, \
    attempt_count = CASE WHEN $1 THEN attempt_count - 1 ELSE attempt_count END, \
    updated_at_ms = {now} \
WHERE state = 'pending' AND (id, lease_token) IN ({leases})";

/// PostgreSQL's leases to give back: two arrays, ids and tokens.
const RELEASED_POSTGRES: &str = "SELECT * FROM unnest($2::uuid[], $3::uuid[])";

/// SQLite's leases to give back: one JSON array of `[id, token]` pairs in
/// hex, as the UUIDs' bytes are stored.
const RELEASED_SQLITE: &str = "SELECT unhex(value ->> 0), unhex(value ->> 1) FROM json_each($2)";

/// The soonest look any destination not in `{skip}` is due for.
const NEXT_DUE: &str = "\
SELECT next_due_at_ms - {now} FROM destinations \
WHERE next_due_at_ms IS NOT NULL {skip} \
ORDER BY next_due_at_ms LIMIT 1";

/// What a claim asks for.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRequest<'a> {
    /// Most rows to lease (the free permits).
    pub limit: usize,
    /// How long each lease lasts.
    pub lease: Duration,
    /// The configured policy, for what destinations do not override.
    pub defaults: &'a Policy,
    /// Destinations to leave out: full with this replica's attempts, or
    /// found full of other replicas' a moment ago.
    pub skip: &'a [DestinationRef],
    /// This replica's attempts that finished and await recording, by
    /// destination: their leases no longer count as in flight.
    pub unrecorded: &'a HashMap<DestinationRef, Vec<Lease>>,
}

/// What a claim leased and learned.
#[derive(Debug, Default)]
pub struct Claimed {
    /// The leased deliveries, ready to start.
    pub deliveries: Vec<ClaimedDelivery>,
    /// Destinations that are full after this claim: due rows there wait
    /// for attempts in flight.
    pub saturated: Vec<DestinationRef>,
}

/// One candidate through the claim.
struct Look {
    candidate: Candidate,
    opening: Opening,
    found: Found,
    /// Its due rows in FIFO order, up to what may start plus one.
    due: Vec<Uuid>,
}

impl Store {
    /// Leases up to `request.limit` due deliveries that may start now,
    /// in fair order across tenants and FIFO within each destination.
    /// Concurrent claimers (other replicas) never get the same row, and
    /// together never exceed a destination's limits.
    pub async fn claim(&self, request: &ClaimRequest<'_>) -> Result<Claimed, StoreError> {
        if request.limit == 0 {
            return Ok(Claimed::default());
        }
        let turn = self.write_turn().await;
        let lease_ends = tokio::time::Instant::now() + request.lease;
        let txn = self.db.begin().await?;
        let (candidates, now_ms) = self.candidates(&txn, request).await?;
        if candidates.is_empty() {
            txn.commit().await?;
            return Ok(Claimed::default());
        }
        let mut looks: Vec<Look> = candidates
            .into_iter()
            .map(|candidate| Look {
                opening: Opening::of(&candidate, now_ms),
                candidate,
                found: Found::default(),
                due: Vec::new(),
            })
            .collect();
        // Each destination fetches at most its share of the claim (and one
        // more, to learn whether more are due): rows are dealt round-robin,
        // so a destination rarely gets more, and one that does is looked
        // at again by the next claim.
        let open = looks
            .iter()
            .filter(|look| look.opening.blocked.is_none())
            .count()
            .max(1);
        let share = u32::try_from(request.limit.div_ceil(open)).unwrap_or(u32::MAX);
        match self.dialect {
            Dialect::Postgres => self.find_postgres(&txn, &mut looks, request, share).await?,
            Dialect::Sqlite => self.find_sqlite(&txn, &mut looks, request, share).await?,
        }
        let chosen = deal(&mut looks, request.limit, share);
        let lease_ms = millis(request.lease);
        let parks: Vec<(usize, Park)> = looks
            .iter()
            .enumerate()
            .map(|(i, look)| {
                let parked = park(
                    &look.candidate,
                    &look.opening,
                    &look.found,
                    now_ms,
                    lease_ms,
                );
                (i, parked)
            })
            .collect();
        let token = self.lease_token();
        let rows = self
            .lease(&txn, &looks, &parks, &chosen, token, request.lease)
            .await?;
        let passed_over = passed_over(&looks, &rows, now_ms)?;
        self.wake(&txn, &passed_over).await?;
        txn.commit().await?;
        drop(turn);
        let openings: HashMap<(&str, &str), (&Look, &Park)> = looks
            .iter()
            .zip(&parks)
            .map(|(look, (_, parked))| {
                let key = (
                    look.candidate.tenant_id.as_str(),
                    look.candidate.destination.as_str(),
                );
                (key, (look, parked))
            })
            .collect();
        let (mut deliveries, mut unreadable) = read_leased(&rows, token, lease_ends);
        for delivery in &mut deliveries {
            let key = (delivery.tenant_id.as_str(), delivery.destination.as_str());
            if let Some((look, parked)) = openings.get(&key) {
                delivery.probe = look.opening.probe;
                delivery.failure_threshold = look.candidate.policy.circuit.failure_threshold;
                // Only a destination this claim filled to its limit, with
                // more waiting, is worth a statement per delivery: where
                // there is room, claims take its rows many at a time.
                delivery.may_hand_over = parked.saturated
                    && !look.opening.probe
                    && look.candidate.policy.rate_limit.is_none();
            }
        }
        for row in &mut unreadable {
            let key = (
                row.destination.tenant_id.as_str(),
                row.destination.destination.as_str(),
            );
            row.probe = openings
                .get(&key)
                .is_some_and(|(look, _)| look.opening.probe);
        }
        self.dead_letter_unreadable(&unreadable, request.defaults)
            .await;
        let saturated = looks
            .iter()
            .zip(&parks)
            .filter(|(_, (_, parked))| parked.saturated)
            .map(|(look, _)| destination_of(&look.candidate))
            .collect();
        Ok(Claimed {
            deliveries,
            saturated,
        })
    }

    /// Locks the candidates, fairest first; with the database's now.
    async fn candidates(
        &self,
        txn: &DatabaseTransaction,
        request: &ClaimRequest<'_>,
    ) -> Result<(Vec<Candidate>, i64), StoreError> {
        let limit = i64::try_from(request.limit).unwrap_or(i64::MAX);
        let mut values: Vec<Value> = vec![WINDOW.into(), limit.into()];
        let skip = skip_clause(request.skip, &mut values);
        let lock = match self.dialect {
            Dialect::Postgres => "FOR UPDATE OF d SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let sql = CANDIDATES
            .replace("{columns}", CANDIDATE_COLUMNS)
            .replace("{skip}", &skip)
            .replace("{lock}", lock);
        let rows = txn.query_all_raw(self.statement(&sql, values)).await?;
        let mut now_ms = 0;
        let mut candidates = Vec::with_capacity(rows.len());
        for row in &rows {
            now_ms = row.try_get_by_index(16)?;
            candidates.push(candidate(row, request.defaults)?);
        }
        Ok((candidates, now_ms))
    }

    /// Fills in what each candidate has in flight and due, in one
    /// statement; each fetches at most its `share` of the claim.
    async fn find_postgres(
        &self,
        txn: &DatabaseTransaction,
        looks: &mut [Look],
        request: &ClaimRequest<'_>,
        share: u32,
    ) -> Result<(), StoreError> {
        let open: Vec<usize> = (0..looks.len())
            .filter(|&i| looks[i].opening.blocked.is_none())
            .collect();
        if open.is_empty() {
            return Ok(());
        }
        let array = |ty, items: Vec<Value>| Value::Array(ty, Some(Box::new(items)));
        let column = |field: &dyn Fn(&Look) -> Value| -> Vec<Value> {
            open.iter().map(|&i| field(&looks[i])).collect()
        };
        let values: Vec<Value> = vec![
            array(
                ArrayType::BigInt,
                open.iter()
                    .map(|&i| i64::try_from(i).unwrap_or(i64::MAX).into())
                    .collect(),
            ),
            array(
                ArrayType::String,
                column(&|look| look.candidate.tenant_id.clone().into()),
            ),
            array(
                ArrayType::String,
                column(&|look| look.candidate.destination.clone().into()),
            ),
            array(
                ArrayType::Int,
                column(&|look| {
                    let room = look.opening.limit.min(look.opening.rate_room).min(share);
                    clamp(room).into()
                }),
            ),
        ];
        let mut leased: Vec<Vec<Lease>> = vec![Vec::new(); looks.len()];
        for row in txn
            .query_all_raw(self.statement(FIND_POSTGRES, values))
            .await?
        {
            let index: i64 = row.try_get_by_index(0)?;
            let i = usize::try_from(index)
                .ok()
                .filter(|i| *i < looks.len())
                .ok_or_else(|| StoreError::Corrupt(format!("no candidate {index}")))?;
            let kind: i32 = row.try_get_by_index(1)?;
            match kind {
                1 => leased[i].push(Lease {
                    delivery_id: row.try_get_by_index(2)?,
                    token: row.try_get_by_index(3)?,
                }),
                2 => looks[i].due.push(row.try_get_by_index(2)?),
                _ => looks[i].found.next_pending_ms = row.try_get_by_index(4)?,
            }
        }
        // In flight: leases not of this replica's finished attempts.
        for (look, leases) in looks.iter_mut().zip(leased) {
            let finished = request.unrecorded.get(&destination_of(&look.candidate));
            let busy = leases
                .iter()
                .filter(|lease| !finished.is_some_and(|done| done.contains(lease)))
                .count();
            look.found.busy = count(busy);
        }
        Ok(())
    }

    /// Fills in what each candidate has in flight and due, a few small
    /// statements each (in process, so cheap).
    async fn find_sqlite(
        &self,
        txn: &DatabaseTransaction,
        looks: &mut [Look],
        request: &ClaimRequest<'_>,
        share: u32,
    ) -> Result<(), StoreError> {
        for look in looks
            .iter_mut()
            .filter(|look| look.opening.blocked.is_none())
        {
            let destination = destination_of(&look.candidate);
            let key = || -> Vec<Value> {
                vec![
                    destination.tenant_id.clone().into(),
                    destination.destination.clone().into(),
                ]
            };
            let mut values = key();
            let leases: Vec<&Lease> = request
                .unrecorded
                .get(&destination)
                .into_iter()
                .flatten()
                .collect();
            let unrecorded = unrecorded_clause(&leases, &mut values);
            let sql = BUSY_SQLITE.replace("{unrecorded}", &unrecorded);
            look.found.busy = match txn.query_one_raw(self.statement(&sql, values)).await? {
                Some(row) => count(row.try_get_by_index::<i64>(0)?),
                None => 0,
            };
            look.found.next_pending_ms = match txn
                .query_one_raw(self.statement(NEXT_PENDING_SQLITE, key()))
                .await?
            {
                Some(row) => row.try_get_by_index(0)?,
                None => None,
            };
            let wanted = look.opening.wanted(look.found.busy).min(share);
            let mut values = key();
            values.push((i64::from(wanted) + 1).into());
            for row in txn
                .query_all_raw(self.statement(DUE_SQLITE, values))
                .await?
            {
                look.due.push(row.try_get_by_index(0)?);
            }
        }
        Ok(())
    }

    /// Parks the destinations whose row changes and leases `chosen`.
    async fn lease(
        &self,
        txn: &DatabaseTransaction,
        looks: &[Look],
        parks: &[(usize, Park)],
        chosen: &[Uuid],
        token: Uuid,
        lease: Duration,
    ) -> Result<Vec<QueryResult>, StoreError> {
        let changed: Vec<(&Candidate, &Park)> = parks
            .iter()
            .map(|(i, parked)| (&looks[*i].candidate, parked))
            .filter(|(candidate, parked)| parked.changes(candidate))
            .collect();
        match self.dialect {
            Dialect::Postgres => {
                // One statement, its text the same whatever the counts.
                let values: Vec<Value> = vec![
                    token.into(),
                    millis(lease).into(),
                    chosen.to_vec().into(),
                    changed
                        .iter()
                        .map(|(c, _)| c.tenant_id.clone())
                        .collect::<Vec<_>>()
                        .into(),
                    changed
                        .iter()
                        .map(|(c, _)| c.destination.clone())
                        .collect::<Vec<_>>()
                        .into(),
                    changed
                        .iter()
                        .map(|(_, p)| p.next_due_at_ms.unwrap_or(-1))
                        .collect::<Vec<_>>()
                        .into(),
                    changed
                        .iter()
                        .map(|(_, p)| p.idle)
                        .collect::<Vec<_>>()
                        .into(),
                    changed
                        .iter()
                        .map(|(_, p)| p.rate_tat_us.unwrap_or(-1))
                        .collect::<Vec<_>>()
                        .into(),
                ];
                let sql = format!(
                    "WITH {PARKED_POSTGRES}, park AS ({PARK}) {}",
                    LEASE
                        .replace("{ids}", LOCK_CHOSEN_POSTGRES)
                        .replace("{resend}", RESEND)
                        .replace("{columns}", LEASED_COLUMNS)
                );
                Ok(txn.query_all_raw(self.statement(&sql, values)).await?)
            }
            Dialect::Sqlite => {
                if !changed.is_empty() {
                    let mut values: Vec<Value> = Vec::with_capacity(changed.len() * 5);
                    for (candidate, parked) in &changed {
                        values.extend([
                            candidate.tenant_id.clone().into(),
                            candidate.destination.clone().into(),
                            parked.next_due_at_ms.into(),
                            parked.idle.into(),
                            parked.rate_tat_us.into(),
                        ]);
                    }
                    let rows = placeholders(changed.len(), 5, 1, tuple);
                    let sql = format!("WITH {} {PARK}", PARKED_SQLITE.replace("{rows}", &rows));
                    txn.execute_raw(self.statement(&sql, values)).await?;
                }
                if chosen.is_empty() {
                    return Ok(Vec::new());
                }
                let mut values: Vec<Value> = vec![token.into(), millis(lease).into()];
                values.extend(chosen.iter().map(|id| Value::from(*id)));
                let ids = format!("IN {}", list(chosen.len(), 3));
                let sql = LEASE
                    .replace("{ids}", &ids)
                    .replace("{resend}", RESEND)
                    .replace("{columns}", LEASED_COLUMNS);
                Ok(txn.query_all_raw(self.statement(&sql, values)).await?)
            }
        }
    }

    /// Gives `leases` back so their deliveries are due again at once (on
    /// any replica), waking their destinations. With `unstarted`, the
    /// claims' attempt counts are returned as well. A lease that was lost
    /// meanwhile is left alone.
    pub async fn release(
        &self,
        leases: &[(Lease, DestinationRef)],
        unstarted: bool,
    ) -> Result<(), StoreError> {
        if leases.is_empty() {
            return Ok(());
        }
        let _turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        let wakes: Vec<Wake> = leases
            .iter()
            .map(|(_, destination)| Wake {
                destination: destination.clone(),
                at_ms: None,
                after: Duration::ZERO,
            })
            .collect();
        self.wake(&txn, &wakes).await?;
        // The leases travel as one or two values, not two per lease, so
        // no count of them exceeds what a statement may bind.
        let (released, values): (&str, Vec<Value>) = match self.dialect {
            Dialect::Postgres => (
                RELEASED_POSTGRES,
                vec![
                    unstarted.into(),
                    leases
                        .iter()
                        .map(|(lease, _)| lease.delivery_id)
                        .collect::<Vec<_>>()
                        .into(),
                    leases
                        .iter()
                        .map(|(lease, _)| lease.token)
                        .collect::<Vec<_>>()
                        .into(),
                ],
            ),
            Dialect::Sqlite => {
                let pairs: Vec<String> = leases
                    .iter()
                    .map(|(lease, _)| {
                        format!(
                            "[\"{}\",\"{}\"]",
                            lease.delivery_id.simple(),
                            lease.token.simple()
                        )
                    })
                    .collect();
                let json = format!("[{}]", pairs.join(","));
                (RELEASED_SQLITE, vec![unstarted.into(), json.into()])
            }
        };
        let sql = RELEASE.replace("{leases}", released);
        txn.execute_raw(self.statement(&sql, values)).await?;
        txn.commit().await?;
        Ok(())
    }

    /// How long until the soonest destination not in `skip` is due for a
    /// look (zero if one is due now); `None` when none has work.
    pub async fn next_due_in(
        &self,
        skip: &[DestinationRef],
    ) -> Result<Option<Duration>, StoreError> {
        let mut values = Vec::new();
        let skip = skip_clause(skip, &mut values);
        let sql = NEXT_DUE.replace("{skip}", &skip);
        let Some(row) = self.db.query_one_raw(self.statement(&sql, values)).await? else {
            return Ok(None);
        };
        let millis: Option<i64> = row.try_get_by_index(0)?;
        Ok(millis.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))))
    }
}

/// Deals the candidates' due rows out one per destination per round, in
/// candidate order, until `limit`, each destination at most what may start
/// there and its `share` (it fetched one row more, which says whether more
/// remain); records what each took and whether more remain. Returns the
/// rows to lease.
fn deal(looks: &mut [Look], limit: usize, share: u32) -> Vec<Uuid> {
    let wanted: Vec<usize> = looks
        .iter()
        .map(|look| look.opening.wanted(look.found.busy).min(share) as usize)
        .collect();
    let mut chosen = Vec::new();
    let mut round = 0;
    while chosen.len() < limit {
        let mut dealt = false;
        for (look, wanted) in looks.iter_mut().zip(&wanted) {
            if chosen.len() == limit {
                break;
            }
            if round < *wanted && round < look.due.len() {
                chosen.push(look.due[round]);
                look.found.taken += 1;
                dealt = true;
            }
        }
        if !dealt {
            break;
        }
        round += 1;
    }
    for look in looks.iter_mut() {
        look.found.more_due = look.due.len() > look.found.taken as usize;
    }
    chosen
}

/// The destinations of rows chosen but not leased (another transaction
/// held one, or it changed), to be woken at `now_ms`: each was parked as if
/// all its chosen rows were taken, and a row let go unchanged must not
/// wait for the destination's next look.
fn passed_over(looks: &[Look], rows: &[QueryResult], now_ms: i64) -> Result<Vec<Wake>, StoreError> {
    let leased = rows
        .iter()
        .map(|row| row.try_get_by_index::<Uuid>(0))
        .collect::<Result<HashSet<Uuid>, _>>()?;
    Ok(looks
        .iter()
        .filter(|look| {
            look.due
                .iter()
                .take(look.found.taken as usize)
                .any(|id| !leased.contains(id))
        })
        .map(|look| Wake {
            destination: destination_of(&look.candidate),
            at_ms: Some(now_ms),
            after: Duration::ZERO,
        })
        .collect())
}

/// `AND (tenant_id, destination) NOT IN (...)`, its values appended.
fn skip_clause(skip: &[DestinationRef], values: &mut Vec<Value>) -> String {
    if skip.is_empty() {
        return String::new();
    }
    let refs: Vec<&DestinationRef> = skip.iter().collect();
    let (rows, skip_values) = super::destinations::pairs(&refs, values.len() + 1);
    values.extend(skip_values);
    format!("AND (tenant_id, destination) NOT IN (VALUES {rows})")
}

/// `AND (x.id, x.lease_token) NOT IN (...)`, its values appended.
fn unrecorded_clause(leases: &[&Lease], values: &mut Vec<Value>) -> String {
    if leases.is_empty() {
        return String::new();
    }
    let rows = placeholders(leases.len(), 2, values.len() + 1, tuple);
    for lease in leases {
        values.extend([lease.delivery_id.into(), lease.token.into()]);
    }
    format!("AND (x.id, x.lease_token) NOT IN (VALUES {rows})")
}

fn destination_of(candidate: &Candidate) -> DestinationRef {
    DestinationRef {
        tenant_id: candidate.tenant_id.clone(),
        destination: candidate.destination.clone(),
    }
}

/// A count from the database as the unsigned number the domain uses.
fn count(value: impl TryInto<u32>) -> u32 {
    value.try_into().unwrap_or(0)
}

/// A limit as a SQL integer.
fn clamp(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// A leased row as a claimed delivery (its destination's policy filled in
/// by the caller).
pub(super) fn claimed(
    row: &QueryResult,
    lease_token: Uuid,
    lease_ends: tokio::time::Instant,
) -> Result<ClaimedDelivery, StoreError> {
    Ok(ClaimedDelivery {
        id: row.try_get_by_index(0)?,
        tenant_id: row.try_get_by_index(1)?,
        request: http_request(
            row.try_get_by_index(3)?,
            row.try_get_by_index(2)?,
            &row.try_get_by_index::<String>(4)?,
            row.try_get_by_index(5)?,
            row.try_get_by_index(6)?,
        )?,
        attempt_number: unsigned(row.try_get_by_index(7)?, "attempt_count")?,
        max_attempts: unsigned(row.try_get_by_index(8)?, "max_attempts")?,
        destination: row.try_get_by_index(9)?,
        probe: false,
        failure_threshold: u32::MAX,
        may_hand_over: false,
        deadline_at_ms: row.try_get_by_index(10)?,
        lease_token,
        lease_ends,
        trace: row
            .try_get_by_index::<Option<String>>(11)?
            .map(|traceparent| TraceContext {
                traceparent,
                tracestate: row.try_get_by_index(12).ok().flatten(),
            }),
        created_at_ms: row.try_get_by_index(13)?,
        resend: row.try_get_by_index(14)?,
        endpoint_id: row.try_get_by_index(15)?,
        event_type: row.try_get_by_index(16)?,
    })
}
