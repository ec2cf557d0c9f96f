//! GetBacklog counts what waits and what is under way, for the caller's
//! tenant alone: due (here, held by a paused destination), a scheduled
//! retry, an attempt in flight, a dead letter.

use std::time::Duration;

use herald_proto::v1::watch_outcomes_request::Start;
use herald_proto::v1::{
    GetBacklogRequest, GetBacklogResponse, PauseDestinationRequest, SetDestinationPolicyRequest,
    WatchOutcomesRequest, destination_service_client::DestinationServiceClient,
};
use herald_tests::{
    Backend, Receiver, Reply, TestHerald, create_tenant, next_outcomes, on_both_backends,
};
use tonic::{Code, Request};

use crate::HERALD;

on_both_backends!(the_backlog_counts_each_kind_of_wait_for_its_tenant_only);

async fn the_backlog_counts_each_kind_of_wait_for_its_tenant_only(backend: Backend) {
    let Some(herald) = TestHerald::start_with(backend, |c| {
        // A failed attempt's retry stays scheduled for the whole test.
        c.retry_min_backoff = Duration::from_secs(3600);
        c.retry_max_backoff = Duration::from_secs(7200);
        c.shutdown_grace = Duration::from_millis(100);
    })
    .await
    else {
        return;
    };
    let paused = Receiver::start().await;
    let receiver = Receiver::start().await;
    receiver.script("/dead", [Reply::Status(400)]);
    receiver.script("/retry", [Reply::Status(503)]);
    receiver.hold("/hold");
    let mut destinations = DestinationServiceClient::connect(format!("http://{}", herald.addr()))
        .await
        .expect("connect");
    // A policy keeps the destination before anything is sent to it.
    destinations
        .set_destination_policy(SetDestinationPolicyRequest {
            destination: paused.url("/"),
            max_in_flight: Some(4),
            ..Default::default()
        })
        .await
        .expect("set a policy");
    destinations
        .pause_destination(PauseDestinationRequest {
            destination: paused.url("/"),
            reason: "held for the count".into(),
        })
        .await
        .expect("pause");

    let mut outcomes = herald
        .client()
        .watch_outcomes(WatchOutcomesRequest {
            start: Some(Start::FromOldest(true)),
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    for path in ["/one", "/two"] {
        herald.post(paused.url(path), b"{}").await;
    }
    herald.post(receiver.url("/dead"), b"{}").await;
    herald.post(receiver.url("/retry"), b"{}").await;
    herald.post(receiver.url("/hold"), b"{}").await;
    // The pause, the dead letter and the scheduled retry.
    next_outcomes(&mut outcomes, 3).await;
    receiver.wait_for("/hold", 1).await;

    let backlog = herald
        .client()
        .get_backlog(GetBacklogRequest {})
        .await
        .expect("get backlog")
        .into_inner();
    assert_eq!(
        backlog,
        GetBacklogResponse {
            due: 2,
            scheduled_retries: 1,
            in_flight: 1,
            dead_letters: 1,
        }
    );

    // Everything above is the open server's default tenant's; a tenant
    // created now sees none of it.
    let beta = create_tenant(HERALD, herald.database_url(), "beta").api_key;
    let mut request = Request::new(GetBacklogRequest {});
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {beta}").parse().expect("metadata"),
    );
    let own = herald
        .client()
        .get_backlog(request)
        .await
        .expect("beta's backlog")
        .into_inner();
    assert_eq!(own, GetBacklogResponse::default());
    let refused = herald
        .client()
        .get_backlog(GetBacklogRequest {})
        .await
        .expect_err("no key, no count");
    assert_eq!(refused.code(), Code::Unauthenticated);
    receiver.open_gate();
}
