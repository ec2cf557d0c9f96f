//! The store's conformance suite: the same claims and fenced completions
//! on SQLite and PostgreSQL, driven directly (no scheduler running).

use std::time::Duration;

use bytes::Bytes;
use herald_server::{
    domain::{Decision, DeliveryState, Destination, HttpMethod, HttpRequest},
    store::{
        Store,
        records::{AttemptRecord, ClaimedDelivery, Completion, CompletionResult, NewDelivery},
    },
};
use herald_tests::{Backend, TestDb, on_both_backends};

on_both_backends!(
    claims_never_overlap_and_count_attempts,
    a_completion_from_an_expired_lease_changes_nothing,
    not_before_holds_a_delivery_back,
);

async fn store(backend: Backend) -> Option<(TestDb, Store)> {
    let db = TestDb::create(backend).await?;
    let store = Store::connect(db.url()).await.expect("connect");
    store.migrate().await.expect("migrate");
    Some((db, store))
}

fn delivery(n: usize) -> NewDelivery {
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
        not_before_ms: None,
        deadline_ms: None,
        trace: None,
    }
}

fn completion(claimed: &ClaimedDelivery, decision: Decision) -> Completion {
    Completion {
        delivery_id: claimed.id,
        tenant_id: claimed.tenant_id.clone(),
        lease_token: claimed.lease_token,
        attempt_number: claimed.attempt_number,
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

const LEASE: Duration = Duration::from_secs(60);

async fn claims_never_overlap_and_count_attempts(backend: Backend) {
    let Some((_db, store)) = store(backend).await else {
        return;
    };
    for n in 0..10 {
        store.enqueue(&delivery(n)).await.unwrap();
    }
    let first = store.claim(4, LEASE, &[]).await.unwrap();
    let second = store.claim(10, LEASE, &[]).await.unwrap();
    assert_eq!((first.len(), second.len()), (4, 6));
    assert!(
        store.claim(10, LEASE, &[]).await.unwrap().is_empty(),
        "leased rows are not due"
    );
    let mut ids: Vec<_> = first.iter().chain(&second).map(|c| c.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10, "no row claimed twice");
    assert!(first.iter().chain(&second).all(|c| c.attempt_number == 1));
    let due_in = store
        .next_due_in(&[])
        .await
        .unwrap()
        .expect("leased rows are pending");
    assert!(
        due_in > LEASE - Duration::from_secs(5),
        "due again when the lease ends: {due_in:?}"
    );
    store.close().await.unwrap();
}

async fn a_completion_from_an_expired_lease_changes_nothing(backend: Backend) {
    let Some((_db, store)) = store(backend).await else {
        return;
    };
    let enqueued = store.enqueue(&delivery(1)).await.unwrap();
    // A zero lease expires at once: the row is due again and re-claimable,
    // as if the first holder had died.
    let stale = store.claim(1, Duration::ZERO, &[]).await.unwrap().remove(0);
    let current = store.claim(1, LEASE, &[]).await.unwrap().remove(0);
    assert_eq!(current.id, stale.id);
    assert_ne!(current.lease_token, stale.lease_token);
    assert_eq!((stale.attempt_number, current.attempt_number), (1, 2));

    let results = store
        .complete(&[completion(&stale, Decision::DeadLetter)])
        .await
        .unwrap();
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

    let results = store
        .complete(&[completion(&current, Decision::Succeeded)])
        .await
        .unwrap();
    assert!(matches!(results[0], CompletionResult::Recorded(ref o) if o.attempt_number == 2));
    let row = store
        .get_delivery("default", enqueued.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.state, DeliveryState::Succeeded);
    assert_eq!(row.attempts.len(), 1);
    // Completing twice with the same lease is also refused.
    let results = store
        .complete(&[completion(&current, Decision::DeadLetter)])
        .await
        .unwrap();
    assert_eq!(results, [CompletionResult::LeaseLost]);
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
    store.enqueue(&later).await.unwrap();
    assert!(store.claim(10, LEASE, &[]).await.unwrap().is_empty());
    let due_in = store.next_due_in(&[]).await.unwrap().unwrap();
    assert!(due_in > Duration::from_secs(365 * 24 * 3600));
    store.close().await.unwrap();
}
