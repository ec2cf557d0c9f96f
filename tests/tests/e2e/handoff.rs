//! The short way in: a scheduler that is idle is handed a new delivery
//! already leased at enqueue; a busy one takes new deliveries through
//! claims. Either way each is sent once, within the same limits.

use std::collections::HashSet;

use herald_proto::v1::{DeliveryState, EnqueueRequest};
use herald_tests::{Backend, Receiver, TestHerald, on_both_backends, wait_succeeded};

use super::metrics::scrape;

on_both_backends!(
    an_idle_scheduler_is_handed_new_deliveries,
    a_scheduler_without_room_claims_new_deliveries_instead,
    an_enqueue_repeated_while_its_delivery_is_in_flight_sends_once,
    a_backlog_is_sent_once_each,
);

/// A counter's value on the metrics page of `herald`.
async fn counter(herald: &TestHerald, name: &str) -> u64 {
    let page = scrape(herald.metrics_addr().expect("metrics are on")).await;
    let line = page
        .lines()
        .find(|line| line.split(' ').next() == Some(name))
        .unwrap_or_else(|| panic!("{name} missing from:\n{page}"));
    line.rsplit(' ').next().unwrap().parse().expect("a count")
}

async fn start(backend: Backend, concurrency: usize) -> Option<TestHerald> {
    TestHerald::start_with(backend, |c| {
        c.metrics_addr = Some("127.0.0.1:0".parse().expect("an address"));
        c.concurrency = concurrency;
    })
    .await
}

const HANDED_OFF: &str = "herald_deliveries_handed_off_total";

async fn an_idle_scheduler_is_handed_new_deliveries(backend: Backend) {
    let Some(herald) = start(backend, 16).await else {
        return;
    };
    let receiver = Receiver::start().await;
    for n in 0..20 {
        let path = format!("/serial/{n}");
        let id = herald.post(receiver.url(&path), b"{}").await;
        let delivery = herald.wait_terminal(&id).await;
        assert_eq!(delivery.state, i32::from(DeliveryState::Succeeded));
        assert_eq!(delivery.attempt_count, 1);
        assert_eq!(delivery.attempts.len(), 1, "{:?}", delivery.attempts);
        assert_eq!(receiver.requests(&path).len(), 1);
    }
    // Between serial enqueues nothing else is due, so the scheduler is idle
    // for nearly all of them (a safety-net poll may overlap a few).
    let handed_off = counter(&herald, HANDED_OFF).await;
    assert!(handed_off >= 10, "{handed_off} of 20 were handed off");
    assert_eq!(
        counter(&herald, "herald_deliveries_enqueued_total").await,
        20
    );
    herald.stop().await;
}

async fn a_scheduler_without_room_claims_new_deliveries_instead(backend: Backend) {
    let Some(herald) = start(backend, 1).await else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.hold("/held");
    herald.post(receiver.url("/held"), b"{}").await;
    receiver.wait_for("/held", 1).await;
    let before = counter(&herald, HANDED_OFF).await;
    // The only permit is taken: these wait in the database, due.
    let mut waiting = Vec::new();
    for _ in 0..3 {
        waiting.push(herald.post(receiver.url("/after"), b"{}").await);
    }
    assert_eq!(counter(&herald, HANDED_OFF).await, before);
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
        .map(|result| result.accepted.expect("accepted").id)
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
