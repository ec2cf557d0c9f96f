//! Scheduling end to end: work waits in the database, due, while there is
//! no room for it, and every delivery is sent once, whether it came alone
//! or in a backlog worth many claims.

use std::collections::HashSet;

use herald_proto::v1::{DeliveryState, EnqueueRequest};
use herald_tests::{Backend, Receiver, TestHerald, accepted, on_both_backends, wait_succeeded};

on_both_backends!(
    a_scheduler_without_room_holds_new_deliveries_in_the_database,
    an_enqueue_repeated_while_its_delivery_is_in_flight_sends_once,
    a_backlog_is_sent_once_each,
);

async fn start(backend: Backend, concurrency: usize) -> Option<TestHerald> {
    TestHerald::start_with(backend, |c| c.concurrency = concurrency).await
}

async fn a_scheduler_without_room_holds_new_deliveries_in_the_database(backend: Backend) {
    let Some(herald) = start(backend, 1).await else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.hold("/held");
    herald.post(receiver.url("/held"), b"{}").await;
    receiver.wait_for("/held", 1).await;
    // The only permit is taken: these wait in the database, due, unclaimed.
    let mut waiting = Vec::new();
    for _ in 0..3 {
        waiting.push(herald.post(receiver.url("/after"), b"{}").await);
    }
    for id in &waiting {
        assert_eq!(
            herald.get(id).await.attempt_count,
            0,
            "claimed without room"
        );
    }
    assert!(receiver.requests("/after").is_empty());
    receiver.open_gate();
    for id in &waiting {
        let delivery = herald.wait_terminal(id).await;
        assert_eq!(delivery.state, i32::from(DeliveryState::Succeeded));
        assert_eq!(delivery.attempt_count, 1);
    }
    assert_eq!(receiver.requests("/after").len(), 3);
    herald.stop().await;
}

async fn an_enqueue_repeated_while_its_delivery_is_in_flight_sends_once(backend: Backend) {
    let Some(herald) = start(backend, 16).await else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.hold("/once");
    let request = EnqueueRequest {
        url: receiver.url("/once"),
        idempotency_key: "order-1".into(),
        ..Default::default()
    };
    let first = herald
        .client()
        .enqueue(request.clone())
        .await
        .expect("enqueue");
    receiver.wait_for("/once", 1).await;
    let again = herald.client().enqueue(request).await.expect("enqueue");
    assert!(first.get_ref().created);
    assert!(!again.get_ref().created);
    assert_eq!(again.get_ref().id, first.get_ref().id);
    receiver.open_gate();
    let delivery = herald.wait_terminal(&first.get_ref().id).await;
    assert_eq!(delivery.state, i32::from(DeliveryState::Succeeded));
    assert_eq!(delivery.attempt_count, 1);
    // Another delivery to the same receiver, sent after the repeat: once it
    // has arrived, a second send of the first would have too.
    let marker = herald.post(receiver.url("/marker"), b"{}").await;
    herald.wait_terminal(&marker).await;
    assert_eq!(receiver.requests("/once").len(), 1);
    herald.stop().await;
}

/// A backlog of many claims' worth: claims come back full, so on
/// PostgreSQL a second claim runs while the first is in flight. Once every
/// success is recorded, each delivery has reached the receiver once.
async fn a_backlog_is_sent_once_each(backend: Backend) {
    const BACKLOG: usize = 600;
    let Some(herald) = start(backend, 256).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let mut outcomes = herald.watch_live().await;
    let deliveries = (0..BACKLOG)
        .map(|_| EnqueueRequest {
            url: receiver.url("/backlog"),
            ..Default::default()
        })
        .collect();
    let ids: HashSet<String> = herald
        .enqueue_batch(deliveries)
        .await
        .into_iter()
        .map(|result| accepted(&result).expect("accepted").id.clone())
        .collect();
    let succeeded = wait_succeeded(&mut outcomes, BACKLOG).await;
    assert_eq!(succeeded, ids);
    let seen = receiver.requests("/backlog");
    let unique: HashSet<String> = seen
        .iter()
        .map(|request| request.header("webhook-id").to_owned())
        .collect();
    assert_eq!(unique, ids, "every delivery arrived");
    assert_eq!(seen.len(), BACKLOG, "and none twice");
    herald.stop().await;
}
