//! Input limits over real gRPC: a request with every field at its limit
//! fits the gRPC message limit and is accepted; one byte more is refused
//! naming the field; headers that look like credentials are refused;
//! repeated fields are bounded, and a repeat in a filter counts once.

use herald_proto::v1::watch_outcomes_request::Start;
use herald_proto::v1::{
    EnqueueRequest, Header, OutcomeKind, SetDestinationPolicyRequest, WatchOutcomesRequest,
    destination_service_client::DestinationServiceClient,
};
use herald_tests::{Backend, Receiver, TestHerald, next_outcomes, on_both_backends, redrive_ids};
use tonic::Code;

on_both_backends!(
    every_field_at_its_limit_fits_the_message_limit,
    a_message_over_the_message_limit_is_refused,
    secret_looking_headers_are_refused_over_grpc,
    repeated_fields_are_bounded_and_repeats_count_once,
);

async fn every_field_at_its_limit_fits_the_message_limit(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let limits = herald_tests::test_config("sqlite::memory:").limits;
    let receiver = Receiver::start().await;
    let base = receiver.url("/limits/");
    let url = format!("{base}{}", "a".repeat(limits.max_url_bytes - base.len()));
    let per_header = limits.max_header_bytes / limits.max_headers;
    let headers: Vec<Header> = (0..limits.max_headers)
        .map(|i| {
            let name = format!("x-h{i:03}");
            Header {
                value: "v".repeat(per_header - name.len()),
                name,
            }
        })
        .collect();
    let full = EnqueueRequest {
        url,
        headers,
        body: vec![b'x'; limits.max_body_bytes],
        idempotency_key: "k".repeat(limits.max_idempotency_key_bytes),
        max_attempts: Some(limits.max_attempts_limit),
        ..Default::default()
    };
    herald.enqueue(full.clone()).await;

    let over = EnqueueRequest {
        body: vec![b'x'; limits.max_body_bytes + 1],
        idempotency_key: String::new(),
        ..full
    };
    let refused = herald.client().enqueue(over).await.expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().starts_with("body: ")
            && refused.message().contains("HERALD_MAX_BODY_BYTES"),
        "{}",
        refused.message()
    );
    herald.stop().await;
}

/// A message larger than the gRPC message limit is refused by its length
/// alone, before it is decoded, with the limit in the answer.
async fn a_message_over_the_message_limit_is_refused(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    // Enqueue's own limit: one delivery with every field at its limit
    // (EnqueueBatch alone takes the larger batch limit).
    let limit = herald_tests::test_config("sqlite::memory:")
        .limits
        .max_enqueue_bytes();
    let receiver = Receiver::start().await;
    let over = EnqueueRequest {
        url: receiver.url("/too-large"),
        // With its field's framing the message is a few bytes over.
        body: vec![b'x'; limit],
        ..Default::default()
    };
    let refused = herald.client().enqueue(over).await.expect_err("refused");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused
            .message()
            .contains(&format!("over this method's limit of {limit} bytes")),
        "{}",
        refused.message()
    );
    assert!(receiver.requests("/too-large").is_empty());
    herald.stop().await;
}

async fn secret_looking_headers_are_refused_over_grpc(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let header = |name: &str| Header {
        name: name.to_owned(),
        value: "value".to_owned(),
    };
    for name in [
        "Authorization",
        "Cookie",
        "X-Api-Key",
        "x-webhook-token",
        "x-client-secret",
    ] {
        let refused = herald
            .client()
            .enqueue(EnqueueRequest {
                url: receiver.url("/secret"),
                headers: vec![header(name)],
                ..Default::default()
            })
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), Code::InvalidArgument, "{name}");
        assert!(
            refused
                .message()
                .contains(&format!("{:?}", name.to_ascii_lowercase()))
                && refused.message().contains("credential"),
            "{name}: {}",
            refused.message()
        );
    }
    herald
        .enqueue(EnqueueRequest {
            url: receiver.url("/benign"),
            headers: vec![header("x-idempotency-key"), header("x-request-id")],
            ..Default::default()
        })
        .await;
    let seen = receiver.wait_for("/benign", 1).await.remove(0);
    assert_eq!(seen.header("x-idempotency-key"), "value");
    assert_eq!(seen.header("x-request-id"), "value");
    herald.stop().await;
}

/// Each repeated field of a request is refused above its bound, naming
/// the field and the bound; below it, a repeat in a filter counts once.
async fn repeated_fields_are_bounded_and_repeats_count_once(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let refusal = |status: tonic::Status| {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        status.message().to_owned()
    };
    let succeeded: i32 = OutcomeKind::Succeeded.into();
    let id = uuid::Uuid::now_v7().to_string();
    let watch = |request| {
        let mut client = herald.client();
        async move { client.watch_outcomes(request).await.map(|_| ()) }
    };
    let kinds = watch(WatchOutcomesRequest {
        kinds: vec![succeeded; 12],
        ..Default::default()
    });
    assert_eq!(
        refusal(kinds.await.unwrap_err()),
        "kinds: has 12 values; the most is 11"
    );
    let ids = watch(WatchOutcomesRequest {
        delivery_ids: vec![id.clone(); 1001],
        ..Default::default()
    });
    assert_eq!(
        refusal(ids.await.unwrap_err()),
        "delivery_ids: has 1001 values; the most is 1000"
    );
    let redrive = herald
        .client()
        .redrive_dead_letters(redrive_ids(vec![id.clone(); 1001]))
        .await;
    assert_eq!(
        refusal(redrive.unwrap_err()),
        "deliveries.ids: has 1001 values; the most is 1000"
    );
    let mut destinations = DestinationServiceClient::connect(format!("http://{}", herald.addr()))
        .await
        .expect("connect");
    let reset = destinations
        .set_destination_policy(SetDestinationPolicyRequest {
            destination: "https://reset.example.test".into(),
            reset: vec!["max_in_flight".into(); 6],
            ..Default::default()
        })
        .await;
    assert_eq!(
        refusal(reset.unwrap_err()),
        "reset: has 6 values; the most is 5"
    );

    // Within the bounds, repeats are one filter value each.
    let receiver = Receiver::start().await;
    let delivered = herald
        .enqueue(EnqueueRequest {
            url: receiver.url("/repeats"),
            ..Default::default()
        })
        .await;
    let mut stream = herald
        .client()
        .watch_outcomes(WatchOutcomesRequest {
            start: Some(Start::FromOldest(true)),
            delivery_ids: vec![delivered.clone(); 1000],
            kinds: vec![succeeded; 11],
            ..Default::default()
        })
        .await
        .expect("a watch with repeats")
        .into_inner();
    let outcome = next_outcomes(&mut stream, 1).await.remove(0);
    assert_eq!(outcome.delivery_id, delivered);
    assert_eq!(outcome.kind, succeeded);
    herald.stop().await;
}
