//! Shutdown of a real process by SIGTERM: claiming stops at the signal and
//! the grace period counts from it, however long gRPC calls take to drain.

use std::time::Duration;

use futures::StreamExt;
use herald_proto::v1::watch_outcomes_request::Start;
use herald_proto::v1::{
    EnqueueRequest, OutcomeKind, WatchOutcomesRequest,
    delivery_service_client::DeliveryServiceClient,
};
use herald_tests::{Backend, HeraldProcess, PATIENCE, Receiver, Reply, TestDb, on_both_backends};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use tonic::transport::Endpoint;

on_both_backends!(a_stopping_replica_starts_nothing_and_gives_leases_back_within_the_grace);

/// How long a failed attempt waits for its retry.
const RETRY_AFTER: &str = "4s";
/// The shutdown grace: longer than the retry's wait, so the retry falls
/// due while the replica is still draining.
const GRACE: &str = "5s";

/// An attempt is held in flight and another delivery's retry falls due
/// after SIGTERM, while a caller that stopped reading its watch keeps a
/// gRPC call from draining. The retry must not be sent, and the held
/// attempt's lease must come back once the grace (from the signal) is out.
async fn a_stopping_replica_starts_nothing_and_gives_leases_back_within_the_grace(
    backend: Backend,
) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.script("/retry", [Reply::Status(503)]);
    receiver.hold("/held");
    let mut herald = HeraldProcess::spawn(
        crate::HERALD,
        db.url(),
        &[
            ("HERALD_SHUTDOWN_GRACE", GRACE.into()),
            ("HERALD_RETRY_MIN_BACKOFF", RETRY_AFTER.into()),
            ("HERALD_RETRY_MAX_BACKOFF", RETRY_AFTER.into()),
        ],
    )
    .await;
    let mut client = herald.client().await;
    let retry = enqueue(&mut client, receiver.url("/retry")).await;
    let mut outcomes = client
        .watch_outcomes(WatchOutcomesRequest {
            start: Some(Start::FromOldest(true)),
            delivery_ids: vec![retry],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(PATIENCE, outcomes.next())
        .await
        .expect("the first attempt is recorded in time")
        .expect("stream open")
        .expect("an outcome")
        .outcome
        .expect("outcome set");
    assert_eq!(first.kind, i32::from(OutcomeKind::RetryScheduled));

    // A caller whose stream window is full: its watch cannot end.
    let mut stalled = DeliveryServiceClient::new(
        Endpoint::from_shared(format!("http://{}", herald.addr()))
            .unwrap()
            .initial_stream_window_size(16)
            .connect()
            .await
            .unwrap(),
    );
    let stalled_watch = stalled
        .watch_outcomes(WatchOutcomesRequest {
            start: Some(Start::FromOldest(true)),
            ..Default::default()
        })
        .await
        .unwrap();
    enqueue(&mut client, receiver.url("/held")).await;
    receiver.wait_for("/held", 1).await;
    assert_eq!(
        receiver.requests("/retry").len(),
        1,
        "the retry is not due before the signal"
    );

    herald.terminate();
    let database = Database::connect(db.url()).await.unwrap();
    tokio::time::timeout(PATIENCE, async {
        while leased(&database).await > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the held attempt's lease is given back once the grace runs out");
    assert_eq!(
        receiver.requests("/retry").len(),
        1,
        "no attempt starts after the signal"
    );

    drop(stalled_watch);
    assert!(herald.exited().await.success());
    receiver.open_gate();
    database.close().await.unwrap();
    db.drop_database().await;
}

async fn enqueue(
    client: &mut DeliveryServiceClient<tonic::transport::Channel>,
    url: String,
) -> String {
    client
        .enqueue(EnqueueRequest {
            url,
            ..Default::default()
        })
        .await
        .expect("enqueue")
        .into_inner()
        .id
}

/// How many deliveries are leased.
async fn leased(database: &DatabaseConnection) -> i64 {
    database
        .query_one_raw(Statement::from_string(
            database.get_database_backend(),
            "SELECT count(*) FROM deliveries WHERE lease_token IS NOT NULL",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap()
}
