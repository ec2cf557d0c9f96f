//! The database goes away (invariant I4). Through a [`FaultProxy`] that
//! cuts Herald off PostgreSQL: answers in hand are kept and recorded once
//! the database is back, so each delivery is sent once and none is
//! dead-lettered; an enqueue meanwhile answers UNAVAILABLE at once; an
//! outage longer than the lease ends in resends, not dead letters; a
//! shutdown meanwhile still ends within its grace. On both
//! backends, what a lost result leaves in the store: the attempt is made
//! again, uncounted, even past its deadline.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use futures::StreamExt;
use herald_proto::v1::watch_outcomes_request::Start;
use herald_proto::v1::{EnqueueRequest, OutcomeKind, WatchOutcomesRequest};
use herald_server::{Config, store::records::NewDelivery};
use herald_tests::{
    Backend, FaultProxy, PATIENCE, Receiver, TestHerald, accepted, on_both_backends,
};
use tonic::Code;

use crate::store::{LEASE, claim, delivery, enqueue, store};

on_both_backends!(a_lost_attempt_is_made_again_uncounted_past_its_deadline);

async fn a_lost_attempt_is_made_again_uncounted_past_its_deadline(backend: Backend) {
    let Some((_db, store)) = store(backend).await else {
        return;
    };
    let past_deadline = |n| NewDelivery {
        deadline_ms: Some(1),
        ..delivery(n)
    };
    let lost = enqueue(&store, past_deadline(1)).await;
    // A zero lease expires at once: the attempt was made, its result lost.
    let first = claim(&store, 1, Duration::ZERO).await.remove(0);
    assert_eq!(first.id, lost.id);
    let never_attempted = enqueue(&store, past_deadline(2)).await;

    let stranded = store.dead_letter_stranded(10).await.expect("upkeep");
    let stranded: Vec<_> = stranded.iter().filter_map(|o| o.delivery_id).collect();
    assert_eq!(
        stranded,
        [never_attempted.id],
        "only the delivery never attempted is dead-lettered for its deadline"
    );
    let again = claim(&store, 10, LEASE).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].id, lost.id);
    assert!(again[0].resend, "claimed as a resend");
    assert_eq!(
        again[0].attempt_number, first.attempt_number,
        "the lost attempt is made again under its number, not counted twice"
    );
    store.close().await.unwrap();
}

/// Herald on PostgreSQL through a [`FaultProxy`], with room for every
/// delivery of these tests in flight at once and `adjust` applied; `None`
/// when PostgreSQL is skipped.
async fn behind_proxy(adjust: impl FnOnce(&mut Config)) -> Option<(TestHerald, FaultProxy)> {
    let mut proxy = None;
    let herald = TestHerald::start_with(Backend::Postgres, |config| {
        let in_front = FaultProxy::in_front_of(&config.database_url);
        config.database_url = in_front.url().to_owned();
        config.concurrency = 128;
        config.destination_concurrency = 128;
        adjust(config);
        proxy = Some(in_front);
    })
    .await?;
    Some((herald, proxy.expect("the proxy started with Herald")))
}

/// Enqueues `count` POSTs to `url` in one batch, each shaped by `shape`;
/// returns their ids.
async fn enqueue_all(
    herald: &TestHerald,
    url: &str,
    count: usize,
    shape: impl Fn(&mut EnqueueRequest),
) -> Vec<String> {
    let requests = (0..count)
        .map(|n| {
            let mut request = EnqueueRequest {
                url: url.to_owned(),
                body: n.to_string().into_bytes(),
                ..Default::default()
            };
            shape(&mut request);
            request
        })
        .collect();
    herald
        .enqueue_batch(requests)
        .await
        .into_iter()
        .map(|result| accepted(&result).expect("accepted").id.clone())
        .collect()
}

/// Waits until each of `ids` has a terminal outcome and returns the
/// deliveries that did not succeed, with how they ended.
async fn not_succeeded(herald: &TestHerald, ids: &[String]) -> HashMap<String, OutcomeKind> {
    let mut waiting: Vec<&String> = ids.iter().collect();
    let mut failed = HashMap::new();
    let request = WatchOutcomesRequest {
        start: Some(Start::AfterSequence(0)),
        ..Default::default()
    };
    let mut outcomes = herald
        .client()
        .watch_outcomes(request)
        .await
        .expect("watch")
        .into_inner();
    tokio::time::timeout(PATIENCE, async {
        while !waiting.is_empty() {
            let outcome = outcomes
                .next()
                .await
                .expect("stream open")
                .expect("an outcome")
                .outcome
                .expect("outcome set");
            let kind = outcome.kind();
            if !matches!(
                kind,
                OutcomeKind::Succeeded | OutcomeKind::DeadLettered | OutcomeKind::Cancelled
            ) {
                continue;
            }
            waiting.retain(|id| **id != outcome.delivery_id);
            if kind != OutcomeKind::Succeeded {
                failed.insert(outcome.delivery_id, kind);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} deliveries did not finish in time", waiting.len()));
    failed
}

/// How many times `receiver` saw each `webhook-id` at `path`.
fn sends(receiver: &Receiver, path: &str) -> HashMap<String, usize> {
    let mut sends = HashMap::new();
    for request in receiver.requests(path) {
        *sends
            .entry(request.header("webhook-id").to_owned())
            .or_default() += 1;
    }
    sends
}

/// Keeps the database, already cut off, away for `outage` from when
/// Herald has found it gone, then lets it back.
async fn keep_cut(proxy: &FaultProxy, outage: Duration) {
    proxy.wait_refused(1).await;
    // The outage's length is the scenario, not a wait for a signal.
    tokio::time::sleep(outage).await;
    proxy.restore();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_in_hand_while_the_database_is_away_is_recorded_not_dead_lettered() {
    let Some((herald, proxy)) = behind_proxy(|config| {
        config.lease_duration = Duration::from_secs(10);
    })
    .await
    else {
        return;
    };
    let receiver = Receiver::start().await;
    // It de-duplicates: a second send of a delivery would get 409, and a
    // single allowed attempt makes that a dead letter.
    receiver.dedupe("/i4");
    receiver.hold("/i4");
    let ids = enqueue_all(&herald, &receiver.url("/i4"), 100, |request| {
        request.max_attempts = Some(1);
    })
    .await;
    receiver.wait_for("/i4", 100).await;
    proxy.cut();
    // Every answer, a 204, comes back while the database is away.
    receiver.open_gate();
    keep_cut(&proxy, Duration::from_secs(3)).await;

    let failed = not_succeeded(&herald, &ids).await;
    assert!(failed.is_empty(), "not succeeded: {failed:?}");
    let sends = sends(&receiver, "/i4");
    assert_eq!(sends.len(), 100);
    assert!(
        sends.values().all(|&count| count == 1),
        "sent again: {sends:?}"
    );
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_in_flight_across_a_five_second_outage_all_succeed_once() {
    let Some((herald, proxy)) = behind_proxy(|config| {
        // The later answers come within the request timeout.
        config.request_timeout = Duration::from_secs(9);
        config.lease_duration = Duration::from_secs(12);
    })
    .await
    else {
        return;
    };
    // One receiver answers during the outage, the other after it.
    let during = Receiver::start().await;
    let after = Receiver::start().await;
    during.hold("/b");
    after.hold("/b");
    let mut ids = enqueue_all(&herald, &during.url("/b"), 20, |_| {}).await;
    ids.extend(enqueue_all(&herald, &after.url("/b"), 20, |_| {}).await);
    during.wait_for("/b", 20).await;
    after.wait_for("/b", 20).await;
    proxy.cut();
    during.open_gate();
    keep_cut(&proxy, Duration::from_secs(5)).await;
    after.open_gate();

    let failed = not_succeeded(&herald, &ids).await;
    assert!(failed.is_empty(), "not succeeded: {failed:?}");
    for (answering, receiver) in [("during", &during), ("after", &after)] {
        let sends = sends(receiver, "/b");
        assert_eq!(sends.len(), 20);
        assert!(
            sends.values().all(|&count| count == 1),
            "answered {answering} the outage, sent again: {sends:?}"
        );
    }
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_while_the_database_is_away_answers_unavailable_then_works() {
    let Some((herald, proxy)) = behind_proxy(|_| {}).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let url = receiver.url("/c");
    let before = herald.post(url.clone(), b"before").await;
    herald.wait_terminal(&before).await;
    proxy.cut();
    // The first find the pool's connections closed under them, the later
    // ones find none to be had. Each answers within the caller's deadline:
    // an answer that came later would be DEADLINE_EXCEEDED.
    for _ in 0..4 {
        let mut request = tonic::Request::new(EnqueueRequest {
            url: url.clone(),
            body: b"during".to_vec(),
            ..Default::default()
        });
        request.set_timeout(Duration::from_secs(5));
        let status = herald
            .client()
            .enqueue(request)
            .await
            .expect_err("no enqueue while the database is away");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
    proxy.restore();

    // Pooled connections the outage broke are found, and replaced, one
    // statement at a time; a caller retries UNAVAILABLE, as gRPC asks.
    let after = tokio::time::timeout(PATIENCE, async {
        loop {
            let request = EnqueueRequest {
                url: url.clone(),
                body: b"after".to_vec(),
                ..Default::default()
            };
            match herald.client().enqueue(request).await {
                Ok(response) => return response.into_inner().id,
                Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
            }
        }
    })
    .await
    .expect("enqueue works again once the database is back");
    let delivered = herald.wait_terminal(&after).await;
    assert_eq!(
        delivered.state,
        i32::from(herald_proto::v1::DeliveryState::Succeeded)
    );
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_lease_ends_in_resends_not_dead_letters() {
    let lease = Duration::from_secs(3);
    let Some((herald, proxy)) = behind_proxy(|config| {
        config.request_timeout = Duration::from_secs(1);
        config.lease_duration = lease;
    })
    .await
    else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.hold("/d");
    // One attempt each, and a deadline that passes during the outage: a
    // lost attempt counted against either would dead-letter them.
    let deadline = SystemTime::now() + lease + Duration::from_secs(1);
    let ids = enqueue_all(&herald, &receiver.url("/d"), 20, |request| {
        request.max_attempts = Some(1);
        request.deadline_time = Some(deadline.into());
    })
    .await;
    receiver.wait_for("/d", 20).await;
    proxy.cut();
    receiver.open_gate();
    keep_cut(&proxy, lease + Duration::from_secs(3)).await;

    let failed = not_succeeded(&herald, &ids).await;
    assert!(failed.is_empty(), "not succeeded: {failed:?}");
    let sends = sends(&receiver, "/d");
    assert_eq!(sends.len(), 20, "every delivery reached the receiver");
    herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_within_its_grace_while_the_database_is_away() {
    let Some((herald, proxy)) = behind_proxy(|config| {
        // Results would be kept this long; the grace cuts it short.
        config.lease_duration = Duration::from_secs(60);
        config.shutdown_grace = Duration::from_secs(1);
    })
    .await
    else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.hold("/e");
    enqueue_all(&herald, &receiver.url("/e"), 10, |_| {}).await;
    receiver.wait_for("/e", 10).await;
    proxy.cut();
    receiver.open_gate();
    proxy.wait_refused(1).await;
    tokio::time::timeout(PATIENCE, herald.stop())
        .await
        .expect("shutdown ends, leaving unwritten results to their leases");
}
