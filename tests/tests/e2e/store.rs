//! The store's conformance suite: the same claims and fenced completions
//! on SQLite and PostgreSQL, driven directly (no scheduler running).

use std::{collections::HashMap, time::Duration};

use bytes::Bytes;
use herald_migration::{Migrator, MigratorTrait};
use herald_server::janitor::{Janitor, RetentionWindows};
use herald_server::{
    destinations::policy::{CircuitPolicy, Policy},
    domain::{Decision, DeliveryState, Destination, HttpMethod, HttpRequest, OutcomeKind},
    endpoints::Subscription,
    secrets::Sealed,
    store::{
        Actor, Channel, ClaimRequest, NewEndpoint, NewEvent, Store, StoreError,
        records::{
            AttemptRecord, ClaimedDelivery, Completion, CompletionResult, DestinationRef, Enqueued,
            Lease, NewDelivery, RedriveSelection,
        },
    },
};
use herald_tests::{Backend, TestDb, on_both_backends};
use sea_orm::{ConnectionTrait, Database, Statement, TransactionTrait};
use uuid::Uuid;

on_both_backends!(
    claims_never_overlap_and_count_attempts,
    a_completion_from_an_expired_lease_changes_nothing,
    a_lost_attempt_is_made_again_once_uncounted,
    not_before_holds_a_delivery_back,
    retention_deletes_exactly_what_is_past_its_window,
    one_batch_sorts_fresh_from_stale_completions,
    a_batch_larger_than_one_statement_is_stored_whole,
    the_last_migration_goes_down_and_up_again,
    a_claim_takes_no_more_than_a_destination_has_room_for,
    an_idle_destination_wakes_for_new_work,
    an_idle_destination_with_due_work_is_found,
    a_redrive_wakes_its_parked_destination,
    an_unreadable_row_is_dead_lettered_and_its_claim_goes_on,
    leases_of_any_number_are_given_back_in_one_statement,
    an_event_is_kept_while_any_of_its_deliveries_is,
);

pub(crate) async fn store(backend: Backend) -> Option<(TestDb, Store)> {
    let db = TestDb::create(backend).await?;
    let store = Store::connect(db.url()).await.expect("connect");
    store.migrate().await.expect("migrate");
    Some((db, store))
}

/// Stores one delivery, as a batch of one.
pub(crate) async fn enqueue(store: &Store, delivery: NewDelivery) -> Enqueued {
    store
        .enqueue_batch(&[delivery])
        .await
        .expect("stored")
        .remove(0)
        .expect("accepted")
}

pub(crate) fn delivery(n: usize) -> NewDelivery {
    NewDelivery {
        tenant_id: "default".into(),
        request: HttpRequest {
            method: HttpMethod::Post,
            url: format!("http://127.0.0.1:9/{n}"),
            headers: vec![("x-n".into(), n.to_string())],
            content_type: None,
            body: Bytes::from(n.to_string()),
        },
        destination: Destination::of(&format!("http://127.0.0.1:9/{n}").parse().unwrap()).unwrap(),
        idempotency_key: None,
        max_attempts: 3,
        max_attempts_chosen: true,
        not_before_ms: None,
        deadline_ms: None,
        trace: None,
        event: None,
    }
}

fn completion(claimed: &ClaimedDelivery, decision: Decision) -> Completion {
    Completion {
        delivery_id: claimed.id,
        tenant_id: claimed.tenant_id.clone(),
        lease_token: claimed.lease_token,
        attempt_number: claimed.attempt_number,
        destination: claimed.destination.clone(),
        probe: claimed.probe,
        failure_threshold: claimed.failure_threshold,
        slow_down: None,
        reason: None,
        attempt: Some(AttemptRecord {
            number: claimed.attempt_number,
            started_at_ms: 1,
            duration_us: 10,
            status_code: Some(204),
            error_kind: None,
            error_message: None,
            response_excerpt: Bytes::new(),
        }),
        decision,
    }
}

pub(crate) const LEASE: Duration = Duration::from_secs(60);

/// Leases up to `limit` rows for `lease`, with the test policy.
pub(crate) async fn claim(store: &Store, limit: usize, lease: Duration) -> Vec<ClaimedDelivery> {
    claim_with(store, limit, lease, &policy()).await
}

/// Leases up to `limit` rows for `lease` under `defaults`.
async fn claim_with(
    store: &Store,
    limit: usize,
    lease: Duration,
    defaults: &Policy,
) -> Vec<ClaimedDelivery> {
    store
        .claim(&ClaimRequest {
            limit,
            lease,
            defaults,
            skip: &[],
            unrecorded: &HashMap::new(),
        })
        .await
        .expect("claim")
        .deliveries
}

/// Records `batch` with no destination changes.
async fn complete(store: &Store, batch: &[Completion]) -> Vec<CompletionResult> {
    store
        .complete(batch, &[], &policy())
        .await
        .expect("complete")
}

/// Every destination's policy in these tests: room for everything.
fn policy() -> Policy {
    Policy {
        max_in_flight: 100,
        rate_limit: None,
        circuit: CircuitPolicy {
            failure_threshold: 5,
            cooldown: Duration::from_millis(200),
            cooldown_max: Duration::from_secs(2),
        },
    }
}

async fn claims_never_overlap_and_count_attempts(backend: Backend) {
    let Some((_db, store)) = store(backend).await else {
        return;
    };
    for n in 0..10 {
        enqueue(&store, delivery(n)).await;
    }
    let first = claim(&store, 4, LEASE).await;
    let second = claim(&store, 10, LEASE).await;
    assert_eq!((first.len(), second.len()), (4, 6));
    assert!(
        claim(&store, 10, LEASE).await.is_empty(),
        "leased rows are not due"
    );
    let mut ids: Vec<_> = first.iter().chain(&second).map(|c| c.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10, "no row claimed twice");
    assert!(first.iter().chain(&second).all(|c| c.attempt_number == 1));
    let row = store
        .get_delivery("default", ids[0])
        .await
        .unwrap()
        .unwrap();
    let due_after = row.next_attempt_at_ms.unwrap() - row.updated_at_ms;
    assert!(
        (59_990..=60_010).contains(&due_after),
        "due again when the lease ends, not after {due_after} ms"
    );
    let look_in = store
        .next_due_in(&[])
        .await
        .unwrap()
        .expect("leased rows are pending");
    assert!(
        look_in <= Duration::from_secs(1),
        "an emptied destination is looked at again within the recheck: {look_in:?}"
    );
    store.close().await.unwrap();
}

async fn a_completion_from_an_expired_lease_changes_nothing(backend: Backend) {
    let Some((_db, store)) = store(backend).await else {
        return;
    };
    let enqueued = enqueue(&store, delivery(1)).await;
    // A zero lease expires at once: the row is due again and re-claimable,
    // as if the first holder had died.
    let stale = claim(&store, 1, Duration::ZERO).await.remove(0);
    let current = claim(&store, 1, LEASE).await.remove(0);
    assert_eq!(current.id, stale.id);
    assert_ne!(current.lease_token, stale.lease_token);
    assert_eq!(
        (stale.attempt_number, current.attempt_number),
        (1, 1),
        "the lost attempt is made again, not counted twice"
    );
    assert!(current.resend && !stale.resend);

    let results = complete(&store, &[completion(&stale, Decision::DeadLetter)]).await;
    assert_eq!(results, [CompletionResult::LeaseLost]);
    let row = store
        .get_delivery("default", enqueued.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.state,
        DeliveryState::Pending,
        "the stale holder changed the row"
    );
    assert!(row.attempts.is_empty());
    assert_eq!(
        store.latest_sequence().await.unwrap(),
        0,
        "no outcome recorded"
    );

    let results = complete(&store, &[completion(&current, Decision::Succeeded)]).await;
    assert!(matches!(results[0], CompletionResult::Recorded(ref o) if o.attempt_number == 1));
    let row = store
        .get_delivery("default", enqueued.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.state, DeliveryState::Succeeded);
    assert_eq!(row.attempts.len(), 1);
    // Completing twice with the same lease is also refused.
    let results = complete(&store, &[completion(&current, Decision::DeadLetter)]).await;
    assert_eq!(results, [CompletionResult::LeaseLost]);
    store.close().await.unwrap();
}

/// A lease that expires without a result is made again under the same
/// number, once: when the resend's result is lost as well, the next lease
/// counts, so a delivery whose sending kills Herald every time still
/// reaches its budget.
async fn a_lost_attempt_is_made_again_once_uncounted(backend: Backend) {
    let Some((_db, store)) = store(backend).await else {
        return;
    };
    enqueue(&store, delivery(1)).await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        // A zero lease expires at once, as if its holder had died.
        let claimed = claim(&store, 1, Duration::ZERO).await.remove(0);
        seen.push((claimed.attempt_number, claimed.resend));
    }
    assert_eq!(
        seen,
        [(1, false), (1, true), (2, false), (2, true), (3, false)],
        "each lost attempt is made again once, then the next lease counts"
    );
    store.close().await.unwrap();
}

async fn not_before_holds_a_delivery_back(backend: Backend) {
    let Some((_db, store)) = store(backend).await else {
        return;
    };
    let later = NewDelivery {
        not_before_ms: Some(i64::MAX / 4),
        ..delivery(1)
    };
    enqueue(&store, later).await;
    assert!(claim(&store, 10, LEASE).await.is_empty());
    let due_in = store.next_due_in(&[]).await.unwrap().unwrap();
    assert!(due_in > Duration::from_secs(365 * 24 * 3600));
    store.close().await.unwrap();
}

const DAY_MS: i64 = 24 * 3600 * 1000;

async fn retention_deletes_exactly_what_is_past_its_window(backend: Backend) {
    let Some((db, store)) = store(backend).await else {
        return;
    };
    // Six finished deliveries, each with an attempt or a cancellation.
    for n in 0..6 {
        enqueue(&store, delivery(n)).await;
    }
    let mut claimed = claim(&store, 6, LEASE).await;
    claimed.sort_by_key(|c| c.request.url.clone());
    let ids: Vec<Uuid> = claimed.iter().map(|c| c.id).collect();
    let finished: Vec<Completion> = claimed[..4]
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let decision = if i < 2 {
                Decision::Succeeded
            } else {
                Decision::DeadLetter
            };
            completion(c, decision)
        })
        .collect();
    complete(&store, &finished).await;
    for id in &ids[4..] {
        store
            .cancel(&Actor::command_line("default"), *id)
            .await
            .unwrap();
    }
    // Pending work, however old, is never touched.
    let pending = enqueue(&store, delivery(6)).await.id;

    // Age them: one of each state just past its window, one just inside.
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let ages_days = [8, 6, 31, 29, 31, 1];
    let raw = Database::connect(db.url()).await.unwrap();
    for (id, days) in ids.iter().zip(ages_days) {
        let finished_at = now_ms - days * DAY_MS;
        raw.execute_raw(Statement::from_sql_and_values(
            raw.get_database_backend(),
            if backend == Backend::Postgres {
                "UPDATE deliveries SET finished_at_ms = $1 WHERE id = $2"
            } else {
                "UPDATE deliveries SET finished_at_ms = ?1 WHERE id = ?2"
            },
            [finished_at.into(), (*id).into()],
        ))
        .await
        .unwrap();
    }
    raw.execute_raw(Statement::from_string(
        raw.get_database_backend(),
        format!(
            "UPDATE deliveries SET created_at_ms = {} WHERE state = 'pending'",
            now_ms - 400 * DAY_MS
        ),
    ))
    .await
    .unwrap();

    let day = Duration::from_secs(24 * 3600);
    Janitor {
        store: store.clone(),
        windows: RetentionWindows {
            outcomes: 7 * day,
            succeeded: 7 * day,
            dead_lettered: 30 * day,
            cancelled: 30 * day,
            audit: 90 * day,
        },
    }
    .round()
    .await;

    let mut kept = Vec::new();
    for id in ids.iter().chain([&pending]) {
        kept.push(store.get_delivery("default", *id).await.unwrap().is_some());
    }
    assert_eq!(
        kept,
        [false, true, false, true, false, true, true],
        "succeeded 8d/6d, dead-lettered 31d/29d, cancelled 31d/1d, pending"
    );
    let attempts = raw
        .query_one_raw(Statement::from_string(
            raw.get_database_backend(),
            "SELECT COUNT(*) FROM attempts".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap();
    assert_eq!(
        attempts, 2,
        "the deleted deliveries' attempts went with them"
    );
    raw.close().await.unwrap();
    store.close().await.unwrap();
}

async fn an_event_is_kept_while_any_of_its_deliveries_is(backend: Backend) {
    let Some((db, store)) = store(backend).await else {
        return;
    };
    let url = "http://127.0.0.1:9/events";
    let endpoint = NewEndpoint {
        id: Uuid::now_v7(),
        url: url.into(),
        destination: Destination::of(&url.parse().unwrap()).unwrap(),
        description: String::new(),
        headers: Vec::new(),
        subscription: Subscription::parse(&["kept.*"]).unwrap(),
        enabled: true,
        secret: Sealed::from_stored("unused".into()),
    };
    store
        .create_endpoint(&Actor::command_line("default"), &endpoint)
        .await
        .unwrap();
    let event = |event_type: &str| NewEvent {
        tenant_id: "default".into(),
        event_type: event_type.into(),
        payload: Bytes::from_static(b"{}"),
        content_type: None,
        idempotency_key: None,
        max_attempts: 3,
        trace: None,
    };
    let published = store
        .publish_batch(&[event("unwanted"), event("kept.one")])
        .await
        .unwrap();
    let unwanted = published[0].as_ref().unwrap();
    let kept = published[1].as_ref().unwrap();
    assert!(unwanted.deliveries.is_empty());
    assert_eq!(kept.deliveries.len(), 1);

    let raw = Database::connect(db.url()).await.unwrap();
    let run = |sql: &str| {
        raw.execute_raw(Statement::from_string(
            raw.get_database_backend(),
            sql.to_owned(),
        ))
    };
    // Both were published 8 days ago; the kept one's delivery is pending.
    run(&format!(
        "UPDATE events SET created_at_ms = created_at_ms - {}",
        8 * DAY_MS
    ))
    .await
    .unwrap();
    let day = Duration::from_secs(24 * 3600);
    let janitor = Janitor {
        store: store.clone(),
        windows: RetentionWindows {
            outcomes: 7 * day,
            succeeded: 7 * day,
            dead_lettered: 30 * day,
            cancelled: 30 * day,
            audit: 90 * day,
        },
    };
    janitor.round().await;
    let exists = |id: Uuid| {
        let store = store.clone();
        async move { store.get_event("default", id).await.unwrap().is_some() }
    };
    assert!(
        !exists(unwanted.event_id).await,
        "no delivery, past the window"
    );
    assert!(exists(kept.event_id).await, "its delivery is still there");
    // Once retention took its delivery, it goes too.
    run("DELETE FROM deliveries").await.unwrap();
    janitor.round().await;
    assert!(!exists(kept.event_id).await);
    raw.close().await.unwrap();
    store.close().await.unwrap();
}

async fn one_batch_sorts_fresh_from_stale_completions(backend: Backend) {
    let Some((_db, store)) = store(backend).await else {
        return;
    };
    for n in 0..3 {
        enqueue(&store, delivery(n)).await;
    }
    // One delivery claimed twice (its first lease expired at once), two
    // others claimed once: a batch mixes a stale completion, the fresh one
    // for the same delivery, and ordinary ones.
    let stale = claim(&store, 1, Duration::ZERO).await.remove(0);
    let mut claimed = claim(&store, 3, LEASE).await;
    claimed.sort_by_key(|c| c.id != stale.id);
    let fresh = claimed.remove(0);
    assert_eq!(fresh.id, stale.id);
    let batch = [
        completion(&stale, Decision::DeadLetter),
        completion(&claimed[0], Decision::Succeeded),
        completion(&fresh, Decision::Succeeded),
        completion(&claimed[1], Decision::DeadLetter),
    ];
    let results = complete(&store, &batch).await;
    let recorded: Vec<Option<i64>> = results
        .iter()
        .map(|result| match result {
            CompletionResult::Recorded(outcome) => Some(outcome.sequence),
            CompletionResult::LeaseLost => None,
        })
        .collect();
    assert_eq!(recorded[0], None, "the stale completion changes nothing");
    let mut sequences: Vec<i64> = recorded.iter().flatten().copied().collect();
    sequences.sort_unstable();
    assert_eq!(sequences, [1, 2, 3], "one outcome each, gap-free");
    for (claim, state) in [
        (&fresh, DeliveryState::Succeeded),
        (&claimed[0], DeliveryState::Succeeded),
        (&claimed[1], DeliveryState::DeadLettered),
    ] {
        let row = store
            .get_delivery("default", claim.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.state, state);
        assert_eq!(row.attempts.len(), 1, "one attempt recorded");
    }
    store.close().await.unwrap();
}

async fn a_batch_larger_than_one_statement_is_stored_whole(backend: Backend) {
    let Some((_db, store)) = store(backend).await else {
        return;
    };
    // More than one INSERT's worth, with a key used twice across them.
    let mut batch: Vec<NewDelivery> = (0..1200).map(delivery).collect();
    batch[3].idempotency_key = Some("twice".into());
    batch[1100] = batch[3].clone();
    let results = store.enqueue_batch(&batch).await.expect("stored");
    let results: Vec<Enqueued> = results
        .into_iter()
        .map(|result| result.expect("accepted"))
        .collect();
    assert_eq!(results.iter().filter(|r| r.created).count(), 1199);
    assert_eq!(
        (results[1100].id, results[1100].created),
        (results[3].id, false),
        "the key's second use finds the first"
    );
    assert_eq!(store.backlog().await.unwrap().due, 1199);
    store.close().await.unwrap();
}

/// The newest migration can be undone and redone (as this is written, the
/// one that stores destinations), and afterwards a key still names one
/// delivery while keyless deliveries never collide.
async fn the_last_migration_goes_down_and_up_again(backend: Backend) {
    let Some((db, store)) = store(backend).await else {
        return;
    };
    let schema = Database::connect(db.url()).await.expect("connect");
    Migrator::down(&schema, Some(1)).await.expect("down");
    Migrator::up(&schema, None).await.expect("up again");
    schema.close().await.expect("close");
    keys_name_one_delivery(&store).await;
    store.close().await.unwrap();
}

/// A key names one delivery: the same request under it gets that delivery
/// back, another request is refused. Keyless deliveries never collide.
async fn keys_name_one_delivery(store: &Store) {
    let keyed = |n| NewDelivery {
        idempotency_key: Some("order-42".into()),
        ..delivery(n)
    };
    let first = enqueue(store, keyed(1)).await;
    assert!(first.created);
    assert_eq!(
        enqueue(store, keyed(1)).await.id,
        first.id,
        "the same request"
    );
    let refused = store.enqueue_batch(&[keyed(2)]).await.expect("stored");
    assert!(
        matches!(&refused[0], Err(StoreError::IdempotencyConflict { existing, .. }) if *existing == first.id),
        "another request under the key: {refused:?}"
    );
    assert!(enqueue(store, delivery(3)).await.created);
    assert!(
        enqueue(store, delivery(3)).await.created,
        "keyless never collide"
    );
}

/// On PostgreSQL the keyed index is built concurrently, and a build that
/// was cut short leaves an invalid index under its name; migrating again
/// replaces that with a working one instead of keeping it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_keyed_index_build_is_redone() {
    let Some((db, store)) = store(Backend::Postgres).await else {
        return;
    };
    let schema = Database::connect(db.url()).await.expect("connect");
    enqueue(&store, delivery(1)).await;
    enqueue(&store, delivery(2)).await;
    // Back to before the keyed index (and the destinations after it).
    Migrator::down(&schema, Some(2)).await.expect("down");
    // Two deliveries of one tenant: a unique build on the tenant alone
    // fails, and leaves an invalid index behind, as a crash would.
    let failed = schema
        .execute_unprepared(
            "CREATE UNIQUE INDEX CONCURRENTLY deliveries_keyed_idempotency_idx \
             ON deliveries (tenant_id)",
        )
        .await;
    assert!(failed.is_err(), "the build should fail on duplicates");
    Migrator::up(&schema, None).await.expect("up again");
    let valid = schema
        .query_one_raw(Statement::from_string(
            schema.get_database_backend(),
            "SELECT indisvalid FROM pg_index JOIN pg_class ON pg_class.oid = indexrelid \
             WHERE relname = 'deliveries_keyed_idempotency_idx'",
        ))
        .await
        .expect("query")
        .expect("the index exists")
        .try_get_by_index::<bool>(0)
        .expect("a flag");
    assert!(valid, "the leftover was replaced by a valid index");
    schema.close().await.expect("close");
    keys_name_one_delivery(&store).await;
    store.close().await.unwrap();
}

/// A claim leaves a due row another transaction holds (a slot passing on
/// to it, its result being recorded) to that transaction instead of
/// waiting for it: a claim that waited while holding rows a completer
/// wanted was a deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_never_waits_for_a_row_another_transaction_holds() {
    let Some((db, store)) = store(Backend::Postgres).await else {
        return;
    };
    let held = enqueue(&store, delivery(1)).await.id;
    let free = enqueue(&store, delivery(2)).await.id;
    let other = Database::connect(db.url()).await.expect("connect");
    let holder = other.begin().await.expect("begin");
    holder
        .execute_unprepared(&format!(
            "SELECT id FROM deliveries WHERE id = '{held}' FOR UPDATE"
        ))
        .await
        .expect("lock the row");
    let claimed = tokio::time::timeout(Duration::from_secs(10), claim(&store, 10, LEASE))
        .await
        .expect("the claim waited for a row another transaction holds");
    let ids: Vec<Uuid> = claimed.iter().map(|c| c.id).collect();
    assert_eq!(ids, [free], "the held row is left to its holder");
    // Let go unchanged: its destination is due again at once, not at its
    // next look.
    holder.rollback().await.expect("rollback");
    let claimed = claim(&store, 10, LEASE).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, held, "and claimed once let go");
    other.close().await.expect("close");
    store.close().await.unwrap();
}

/// A store's listener hears other stores' announcements but passes over
/// its own (its waiters were woken in process already).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_passes_over_its_own_announcements() {
    let Some((db, own)) = store(Backend::Postgres).await else {
        return;
    };
    let other = Store::connect(db.url()).await.expect("connect");
    let mut listener = own
        .listen(Channel::Work)
        .await
        .expect("listen")
        .expect("PostgreSQL listens");
    own.announce(Channel::Work).await.unwrap();
    // Nothing signals that an announcement was passed over, so give the
    // echo far longer than a local NOTIFY takes to arrive.
    let echo = tokio::time::timeout(Duration::from_millis(300), listener.next()).await;
    assert!(echo.is_err(), "its own announcement woke the listener");
    other.announce(Channel::Work).await.unwrap();
    listener.next().await.expect("another store's announcement");
    // The listener holds one of the pool's connections until dropped.
    drop(listener);
    other.close().await.unwrap();
    own.close().await.unwrap();
}

/// Five deliveries to one destination allowing three in flight: a claim
/// takes the three oldest; the next, nothing, until a finished attempt is
/// said to be awaiting its recording (its slot is free) or is recorded.
async fn a_claim_takes_no_more_than_a_destination_has_room_for(backend: Backend) {
    let Some((_db, store)) = store(backend).await else {
        return;
    };
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(enqueue(&store, delivery(n)).await.id);
    }
    let three = Policy {
        max_in_flight: 3,
        ..policy()
    };
    let first = claim_with(&store, 10, LEASE, &three).await;
    let mut taken: Vec<Uuid> = first.iter().map(|c| c.id).collect();
    taken.sort();
    assert_eq!(taken, ids[..3], "the three oldest");
    assert!(
        claim_with(&store, 10, LEASE, &three).await.is_empty(),
        "full"
    );
    let finished = &first[0];
    let unrecorded = HashMap::from([(finished.destination_ref(), vec![finished.lease()])]);
    let freed = store
        .claim(&ClaimRequest {
            limit: 10,
            lease: LEASE,
            defaults: &three,
            skip: &[],
            unrecorded: &unrecorded,
        })
        .await
        .unwrap()
        .deliveries;
    assert_eq!(freed.len(), 1, "a finished attempt's slot is free");
    assert_eq!(freed[0].id, ids[3]);
    // Now the finished one is recorded, and one more of the first three.
    complete(
        &store,
        &[
            completion(&first[0], Decision::Succeeded),
            completion(&first[1], Decision::Succeeded),
        ],
    )
    .await;
    let next = claim_with(&store, 10, LEASE, &three).await;
    assert_eq!(next.len(), 1, "a recorded one's slot is free too");
    assert_eq!(next[0].id, ids[4]);
    store.close().await.unwrap();
}

/// A destination whose work ran out is parked; once it has looked twice
/// and found nothing, it waits for no time at all; new work wakes it.
async fn an_idle_destination_wakes_for_new_work(backend: Backend) {
    let Some((db, store)) = store(backend).await else {
        return;
    };
    enqueue(&store, delivery(1)).await;
    let claimed = claim(&store, 10, LEASE).await;
    complete(&store, &[completion(&claimed[0], Decision::Succeeded)]).await;
    assert!(claim(&store, 10, LEASE).await.is_empty());
    // The recheck is due a second later; as if it had passed:
    let raw = Database::connect(db.url()).await.unwrap();
    raw.execute_unprepared("UPDATE destinations SET next_due_at_ms = 0")
        .await
        .unwrap();
    assert!(claim(&store, 10, LEASE).await.is_empty());
    assert_eq!(
        store.next_due_in(&[]).await.unwrap(),
        None,
        "nothing pending: not looked at again until woken"
    );
    let woken = enqueue(&store, delivery(2)).await;
    let claimed = claim(&store, 10, LEASE).await;
    assert_eq!(claimed.len(), 1, "the enqueue woke it");
    assert_eq!(claimed[0].id, woken.id);
    raw.close().await.unwrap();
    store.close().await.unwrap();
}

/// A destination parked with nothing due (its last delivery dead-lettered)
/// is woken by the redrive of that dead letter, not left for the safety net.
async fn a_redrive_wakes_its_parked_destination(backend: Backend) {
    let Some((db, store)) = store(backend).await else {
        return;
    };
    enqueue(&store, delivery(1)).await;
    let claimed = claim(&store, 10, LEASE).await;
    complete(&store, &[completion(&claimed[0], Decision::DeadLetter)]).await;
    assert!(claim(&store, 10, LEASE).await.is_empty());
    // The recheck is due a second later; as if it had passed:
    let raw = Database::connect(db.url()).await.unwrap();
    raw.execute_unprepared("UPDATE destinations SET next_due_at_ms = 0")
        .await
        .unwrap();
    assert!(claim(&store, 10, LEASE).await.is_empty());
    assert_eq!(store.next_due_in(&[]).await.unwrap(), None, "parked");
    let report = store
        .redrive(
            &Actor::command_line("default"),
            &RedriveSelection::Ids(vec![claimed[0].id]),
            false,
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(report.count, 1);
    let again = claim(&store, 10, LEASE).await;
    assert_eq!(again.len(), 1, "the redrive woke its destination");
    assert_eq!(again[0].id, claimed[0].id);
    raw.close().await.unwrap();
    store.close().await.unwrap();
}

/// A destination parked idle while a delivery there is due (its wake-up
/// came before the claim parked it, its commit after the claim's second
/// look) is found by the safety net and claimed.
async fn an_idle_destination_with_due_work_is_found(backend: Backend) {
    let Some((db, store)) = store(backend).await else {
        return;
    };
    let id = enqueue(&store, delivery(1)).await.id;
    let schema = Database::connect(db.url()).await.expect("connect");
    schema
        .execute_unprepared("UPDATE destinations SET idle = TRUE, next_due_at_ms = NULL")
        .await
        .expect("park it as a claim that missed the delivery would");
    assert!(claim(&store, 10, LEASE).await.is_empty(), "overlooked");
    assert_eq!(store.wake_overlooked().await.unwrap(), 1);
    let claimed = claim(&store, 10, LEASE).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, id);
    assert_eq!(
        store.wake_overlooked().await.unwrap(),
        0,
        "nothing due is left at an idle destination"
    );
    schema.close().await.expect("close");
    store.close().await.unwrap();
}

/// A claimed row this build cannot read (its headers are not JSON) does
/// not fail its claim: the rows that read are returned, and the bad one is
/// dead-lettered at once, unsent, with an outcome saying why, instead of
/// being claimed again at every lease's end.
async fn an_unreadable_row_is_dead_lettered_and_its_claim_goes_on(backend: Backend) {
    let Some((db, store)) = store(backend).await else {
        return;
    };
    let ids: Vec<Uuid> = {
        let mut ids = Vec::new();
        for n in 0..3 {
            ids.push(enqueue(&store, delivery(n)).await.id);
        }
        ids
    };
    let bad = ids[1];
    let raw = Database::connect(db.url()).await.unwrap();
    let placeholder = if backend == Backend::Postgres {
        "$1"
    } else {
        "?1"
    };
    raw.execute_raw(Statement::from_sql_and_values(
        raw.get_database_backend(),
        format!("UPDATE deliveries SET headers = 'not json' WHERE id = {placeholder}"),
        [bad.into()],
    ))
    .await
    .unwrap();

    let mut claimed: Vec<Uuid> = claim(&store, 10, LEASE)
        .await
        .iter()
        .map(|c| c.id)
        .collect();
    claimed.sort();
    let mut good = vec![ids[0], ids[2]];
    good.sort();
    assert_eq!(claimed, good, "the rows that read are claimed");

    let row = raw
        .query_one_raw(Statement::from_sql_and_values(
            raw.get_database_backend(),
            format!(
                "SELECT state, last_error, attempt_count, lease_token IS NULL \
                 FROM deliveries WHERE id = {placeholder}"
            ),
            [bad.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    let state: String = row.try_get_by_index(0).unwrap();
    let error: String = row.try_get_by_index(1).unwrap();
    let attempts: i32 = row.try_get_by_index(2).unwrap();
    let released: bool = row.try_get_by_index(3).unwrap();
    assert_eq!(
        (state.as_str(), attempts, released),
        ("dead_lettered", 0, true)
    );
    assert!(
        error.contains("could not be read") && error.contains("headers"),
        "the error says the row could not be read, and why: {error}"
    );
    let outcomes = store
        .outcomes_after("default", &Default::default(), 0, 10)
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0].delivery_id, Some(bad));
    assert_eq!(outcomes[0].kind, OutcomeKind::DeadLettered);
    assert_eq!(outcomes[0].error_message.as_deref(), Some(error.as_str()));
    assert!(
        claim(&store, 10, LEASE).await.is_empty(),
        "the bad row is not claimed again"
    );
    raw.close().await.unwrap();
    store.close().await.unwrap();
}

/// Giving leases back takes one statement whatever their number: more
/// leases than one statement could bind two values each for are given
/// back together, each row due again with its attempt returned, and a
/// lease lost meanwhile left alone.
async fn leases_of_any_number_are_given_back_in_one_statement(backend: Backend) {
    let Some((_db, store)) = store(backend).await else {
        return;
    };
    for n in 0..3 {
        enqueue(&store, delivery(n)).await;
    }
    let stale = claim(&store, 1, Duration::ZERO).await.remove(0);
    let claimed = claim(&store, 10, LEASE).await;
    assert_eq!(
        claimed.len(),
        3,
        "the zero lease ran out: its row is due again"
    );
    let destination = claimed[0].destination_ref();
    // Past what PostgreSQL (65,535) or SQLite (32,766) binds in one statement.
    let mut leases: Vec<(Lease, DestinationRef)> = (0..40_000)
        .map(|_| {
            let lease = Lease {
                delivery_id: Uuid::new_v4(),
                token: Uuid::new_v4(),
            };
            (lease, destination.clone())
        })
        .collect();
    leases.extend(
        claimed
            .iter()
            .filter(|c| c.id != stale.id)
            .map(|c| (c.lease(), c.destination_ref())),
    );
    leases.push((stale.lease(), stale.destination_ref()));
    store.release(&leases, true).await.expect("released");

    let mut again: Vec<(Uuid, u32)> = claim(&store, 10, LEASE)
        .await
        .iter()
        .map(|c| (c.id, c.attempt_number))
        .collect();
    again.sort();
    let mut expected: Vec<(Uuid, u32)> = claimed
        .iter()
        .filter(|c| c.id != stale.id)
        .map(|c| (c.id, 1))
        .collect();
    expected.sort();
    assert_eq!(
        again, expected,
        "given back with their attempts; the row whose old lease was given back stays leased"
    );
    store.close().await.unwrap();
}

/// Watchers replaying from storage, however many and however slow, leave
/// the scheduler connections to claim with. PostgreSQL only: the replays
/// are held with a table lock, and SQLite readers never wait for a writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_proceed_while_every_replay_waits() {
    let Some((db, store)) = store(Backend::Postgres).await else {
        return;
    };
    let id = enqueue(&store, delivery(1)).await.id;
    let raw = Database::connect(db.url()).await.expect("connect");
    let backend = raw.get_database_backend();
    let lock = raw.begin().await.unwrap();
    lock.execute_unprepared("LOCK TABLE outcomes IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    // More replays than the pool has connections.
    let replays: Vec<_> = (0..32)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let filter = herald_server::store::records::OutcomeFilter::default();
                store.outcomes_after("default", &filter, 0, 10).await
            })
        })
        .collect();
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                   AND wait_event_type = 'Lock' AND query LIKE '%\"outcomes\".\"tenant_id\"%'";
    tokio::time::timeout(herald_tests::PATIENCE, async {
        loop {
            let row = raw
                .query_one_raw(Statement::from_string(backend, waiting))
                .await
                .unwrap()
                .unwrap();
            if row.try_get_by_index::<i64>(0).unwrap() >= 2 {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the replays reach the database");

    let claimed = tokio::time::timeout(herald_tests::PATIENCE, claim(&store, 10, LEASE))
        .await
        .expect("the claim is not stuck behind the replays");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, id);

    lock.commit().await.unwrap();
    for replay in replays {
        replay
            .await
            .unwrap()
            .expect("each replay reads once the lock is gone");
    }
    raw.close().await.expect("close");
    store.close().await.unwrap();
}
