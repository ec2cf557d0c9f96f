//! The database goes away. Through a [`FaultProxy`] that cuts Herald off
//! PostgreSQL: an enqueue meanwhile answers UNAVAILABLE at once, and works
//! again once the database is back.

use std::time::Duration;

use herald_proto::v1::EnqueueRequest;
use herald_server::Config;
use herald_tests::{Backend, FaultProxy, PATIENCE, Receiver, TestHerald};
use tonic::Code;

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
