//! Input limits over real gRPC: a request with every field at its limit
//! fits the gRPC message limit and is accepted; one byte more is refused
//! naming the field; headers that look like credentials are refused.

use herald_proto::v1::{EnqueueRequest, Header};
use herald_tests::{Backend, Receiver, TestHerald, on_both_backends};
use tonic::Code;

on_both_backends!(
    every_field_at_its_limit_fits_the_message_limit,
    secret_looking_headers_are_refused_over_grpc
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
