//! Real processes, really killed: kill -9 mid-flight, graceful shutdown,
//! two replicas sharing PostgreSQL, and wake-ups across replicas.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use herald_proto::v1::watch_outcomes_request::Start;
use herald_proto::v1::{
    DeliveryState, EnqueueRequest, GetDeliveryRequest, OutcomeKind, WatchOutcomesRequest,
    delivery_service_client::DeliveryServiceClient,
};
use herald_server::store::{
    Store,
    records::{DeliveryFilter, DeliveryView},
};
use herald_tests::{Backend, HeraldProcess, PATIENCE, Receiver, Reply, TestDb, on_both_backends};
use sea_orm::{ConnectionTrait, Database, Statement};
use tonic::transport::Channel;

use crate::HERALD;

on_both_backends!(
    kill_9_mid_flight_loses_nothing,
    sigterm_records_in_flight_work_and_hands_over_the_rest
);

/// Short timings for child processes, as `HERALD_*` settings.
pub(crate) fn settings(extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut settings: HashMap<&'static str, String> = [
        ("HERALD_REQUEST_TIMEOUT", "3s"),
        ("HERALD_LEASE_DURATION", "4s"),
        ("HERALD_RETRY_MIN_BACKOFF", "5ms"),
        ("HERALD_RETRY_MAX_BACKOFF", "20ms"),
        ("HERALD_POLL_INTERVAL", "100ms"),
        ("HERALD_SHUTDOWN_GRACE", "1s"),
    ]
    .into_iter()
    .map(|(name, value)| (name, value.to_owned()))
    .collect();
    settings.extend(
        extra
            .iter()
            .map(|(name, value)| (*name, (*value).to_owned())),
    );
    settings.into_iter().collect()
}

/// Enqueues `count` POSTs to `url` over `tasks` concurrent callers.
pub(crate) async fn enqueue_many(
    client: &DeliveryServiceClient<Channel>,
    url: &str,
    count: usize,
    tasks: usize,
) -> Vec<String> {
    let calls = (0..tasks).map(|task| {
        let mut client = client.clone();
        let url = url.to_owned();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in (task..count).step_by(tasks) {
                let request = EnqueueRequest {
                    url: url.clone(),
                    body: b"{}".to_vec(),
                    ..Default::default()
                };
                ids.push(
                    client
                        .enqueue(request)
                        .await
                        .expect("enqueue")
                        .into_inner()
                        .id,
                );
            }
            ids
        })
    });
    futures::future::join_all(calls)
        .await
        .into_iter()
        .flat_map(|ids| ids.expect("enqueue task"))
        .collect()
}

/// Waits until every one of `ids` has SUCCEEDED, watching `client`'s
/// outcome stream from the start.
async fn all_succeed(client: &DeliveryServiceClient<Channel>, ids: &[String]) {
    let mut waiting: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let request = WatchOutcomesRequest {
        start: Some(Start::AfterSequence(0)),
        ..Default::default()
    };
    let mut outcomes = client
        .clone()
        .watch_outcomes(request)
        .await
        .expect("watch")
        .into_inner();
    let finished = tokio::time::timeout(PATIENCE, async {
        while !waiting.is_empty() {
            let outcome = outcomes
                .next()
                .await
                .expect("stream open")
                .expect("outcome")
                .outcome
                .unwrap();
            assert_ne!(
                outcome.kind,
                i32::from(OutcomeKind::DeadLettered),
                "{outcome:?}"
            );
            if outcome.kind == i32::from(OutcomeKind::Succeeded) {
                waiting.remove(outcome.delivery_id.as_str());
            }
        }
    })
    .await;
    assert!(
        finished.is_ok(),
        "{} deliveries did not succeed in time",
        waiting.len()
    );
}

async fn kill_9_mid_flight_loses_nothing(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.hold("/crash");
    let config = settings(&[
        ("HERALD_CONCURRENCY", "32"),
        ("HERALD_DESTINATION_CONCURRENCY", "32"),
    ]);
    let mut first = HeraldProcess::spawn(HERALD, db.url(), &config).await;
    let ids = enqueue_many(&first.client().await, &receiver.url("/crash"), 500, 8).await;
    receiver.wait_for("/crash", 32).await;
    first.kill_9().await;
    let in_flight_at_kill = receiver.requests("/crash").len();

    receiver.open_gate();
    // The first process's short leases must run out; the second's must not,
    // or a slow recording under load would add duplicates of its own.
    let mut steady = config.clone();
    steady.extend([
        ("HERALD_REQUEST_TIMEOUT", "10s".to_owned()),
        ("HERALD_LEASE_DURATION", "60s".to_owned()),
    ]);
    let second = HeraldProcess::spawn(HERALD, db.url(), &steady).await;
    all_succeed(&second.client().await, &ids).await;

    let seen = receiver.requests("/crash");
    let unique: HashSet<&str> = seen.iter().map(|r| r.header("webhook-id")).collect();
    let expected: HashSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(unique, expected, "every delivery reached the receiver");
    let duplicates = seen.len() - unique.len();
    assert!(
        duplicates <= in_flight_at_kill,
        "{duplicates} duplicates, but only {in_flight_at_kill} requests were in flight at the kill"
    );
}

async fn sigterm_records_in_flight_work_and_hands_over_the_rest(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.hold("/finish");
    receiver.script("/hang", [Reply::Hang, Reply::Hang]);
    // Leases far longer than the test: the hand-over must not wait for them.
    let config = settings(&[
        ("HERALD_LEASE_DURATION", "60s"),
        ("HERALD_REQUEST_TIMEOUT", "30s"),
    ]);
    let mut first = HeraldProcess::spawn(HERALD, db.url(), &config).await;
    let client = first.client().await;
    let finishing = enqueue_many(&client, &receiver.url("/finish"), 3, 1).await;
    let hanging = enqueue_many(&client, &receiver.url("/hang"), 2, 1).await;
    receiver.wait_for("/finish", 3).await;
    receiver.wait_for("/hang", 2).await;

    first.terminate();
    receiver.open_gate();
    let status = first.exited().await;
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");

    let second = HeraldProcess::spawn(HERALD, db.url(), &config).await;
    let mut client = second.client().await;
    for id in &finishing {
        let delivery = client
            .get_delivery(GetDeliveryRequest { id: id.clone() })
            .await
            .unwrap()
            .into_inner()
            .delivery
            .unwrap();
        assert_eq!(
            delivery.state,
            i32::from(DeliveryState::Succeeded),
            "in-flight attempt recorded"
        );
        assert_eq!(delivery.attempts.len(), 1);
    }
    // The attempts cut off by the grace period were given back: the second
    // process takes them at once, not after the 60 s lease.
    all_succeed(&client, &hanging).await;
    let retried = receiver.requests("/hang");
    assert_eq!(retried.len(), 4);
    assert!(
        retried[2..]
            .iter()
            .all(|r| r.header("herald-attempt") == "2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_work_and_send_each_delivery_once() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let receiver = Receiver::start().await;
    // No crash here, so no lease may run out: a lease like production's.
    let config = settings(&[
        ("HERALD_CONCURRENCY", "16"),
        ("HERALD_REQUEST_TIMEOUT", "10s"),
        ("HERALD_LEASE_DURATION", "60s"),
    ]);
    let mut a = HeraldProcess::spawn(HERALD, db.url(), &config).await;
    let mut b = HeraldProcess::spawn(HERALD, db.url(), &config).await;
    let url = receiver.url("/shared");
    let (client_a, client_b) = (a.client().await, b.client().await);
    let (via_a, via_b) = tokio::join!(
        enqueue_many(&client_a, &url, 1000, 4),
        enqueue_many(&client_b, &url, 1000, 4)
    );
    assert_eq!(via_a.len() + via_b.len(), 2000);
    let ids: Vec<String> = via_a.into_iter().chain(via_b).collect();
    all_succeed(&client_a, &ids).await;
    // Every attempt is counted before its result is recorded.
    let (by_a, by_b) = (a.attempts().await, b.attempts().await);
    assert_eq!(by_a + by_b, 2000, "one attempt per delivery");
    assert!(
        by_a > 0 && by_b > 0,
        "both replicas worked: {by_a} and {by_b}"
    );
    a.terminate();
    b.terminate();
    assert_eq!(
        (a.exited().await.code(), b.exited().await.code()),
        (Some(0), Some(0))
    );

    let seen = receiver.requests("/shared");
    let unique: HashSet<&str> = seen.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(unique.len(), 2000, "every delivery arrived");
    assert_eq!(seen.len(), 2000, "no delivery arrived twice");
    let store = Store::connect(db.url()).await.unwrap();
    let succeeded = DeliveryFilter {
        state: Some(herald_server::domain::DeliveryState::Succeeded),
        ..Default::default()
    };
    let mut listed = 0;
    store
        .list_deliveries(
            "default",
            &succeeded,
            None,
            5000,
            DeliveryView::Basic,
            |_| {
                listed += 1;
                true
            },
        )
        .await
        .unwrap();
    assert_eq!(listed, 2000, "every delivery recorded as succeeded");
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let config = settings(&[]);
    let (a, b, c) = tokio::join!(
        HeraldProcess::spawn(HERALD, db.url(), &config),
        HeraldProcess::spawn(HERALD, db.url(), &config),
        HeraldProcess::spawn(HERALD, db.url(), &config)
    );
    for replica in [&a, &b, &c] {
        let mut client = replica.client().await;
        let listed = client
            .list_deliveries(herald_proto::v1::ListDeliveriesRequest::default())
            .await
            .expect("every replica serves on the migrated schema");
        assert!(listed.into_inner().deliveries.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_on_one_replica_wakes_another() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let receiver = Receiver::start().await;
    // Polls, timeouts and leases too slow to matter within this test.
    let patient = [
        ("HERALD_POLL_INTERVAL", "5m"),
        ("HERALD_REQUEST_TIMEOUT", "1m"),
        ("HERALD_LEASE_DURATION", "2m"),
    ];
    let busy = settings(&[&patient[..], &[("HERALD_CONCURRENCY", "1")]].concat());
    let a = HeraldProcess::spawn(HERALD, db.url(), &busy).await;
    let mut client_a = a.client().await;
    // A's only slot is taken by a receiver that never answers.
    receiver.script("/hang-a", [Reply::Hang]);
    enqueue_many(&client_a, &receiver.url("/hang-a"), 1, 1).await;
    receiver.wait_for("/hang-a", 1).await;
    let b = HeraldProcess::spawn(HERALD, db.url(), &settings(&patient)).await;
    // B finds nothing due: once it has parked the destination until A's
    // lease ends, minutes away, only NOTIFY can wake it for new work.
    parked_for_long(db.url()).await;

    let id = client_a
        .enqueue(EnqueueRequest {
            url: receiver.url("/woken"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    let seen = receiver.wait_for("/woken", 1).await;
    assert_eq!(seen[0].header("webhook-id"), id);
    all_succeed(&client_a, std::slice::from_ref(&id)).await;
    assert_eq!(
        (a.attempts().await, b.attempts().await),
        (0, 1),
        "A's only slot stayed taken; B sent the new delivery"
    );
}

/// Waits until every destination is parked, with nothing due, for at
/// least a minute: whoever looked at them last has gone idle. The state
/// is the database's, and nothing announces it, so it is read until it
/// holds.
async fn parked_for_long(database_url: &str) {
    let db = Database::connect(database_url).await.expect("connect");
    let parked = tokio::time::timeout(PATIENCE, async {
        loop {
            let soon = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_millis() as i64
                + 60_000;
            let row = db
                .query_one_raw(Statement::from_sql_and_values(
                    db.get_database_backend(),
                    "SELECT count(*) FROM destinations WHERE NOT idle OR next_due_at_ms < $1",
                    [soon.into()],
                ))
                .await
                .expect("read destinations")
                .expect("a count");
            if row.try_get_by_index::<i64>(0).expect("a count") == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        parked.is_ok(),
        "destinations were not parked within {PATIENCE:?}"
    );
    db.close().await.expect("close");
}
