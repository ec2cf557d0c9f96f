//! Idempotent enqueue and validation, over real gRPC.

use herald_proto::v1::{EnqueueRequest, Header, delivery_service_client::DeliveryServiceClient};
use herald_tests::{Backend, Receiver, TestHerald, on_both_backends, test_config};
use tonic::Code;

on_both_backends!(
    same_key_same_request_returns_the_same_delivery,
    same_key_different_request_is_refused,
    concurrent_duplicates_create_one_delivery,
    invalid_requests_name_the_field,
    replicas_with_different_defaults_agree_on_a_keyed_request,
);

fn keyed(url: String, key: &str, body: &[u8]) -> EnqueueRequest {
    EnqueueRequest {
        url,
        body: body.to_vec(),
        idempotency_key: key.to_owned(),
        ..Default::default()
    }
}

async fn same_key_same_request_returns_the_same_delivery(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let mut client = herald.client();
    let first = client
        .enqueue(keyed(receiver.url("/once"), "order-42", b"{}"))
        .await
        .unwrap()
        .into_inner();
    let second = client
        .enqueue(keyed(receiver.url("/once"), "order-42", b"{}"))
        .await
        .unwrap()
        .into_inner();
    assert!(first.created);
    assert!(!second.created);
    assert_eq!(first.id, second.id);
    herald.wait_terminal(&first.id).await;
    assert_eq!(receiver.requests("/once").len(), 1);
    herald.stop().await;
}

async fn same_key_different_request_is_refused(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let mut client = herald.client();
    let first = client
        .enqueue(keyed(receiver.url("/k"), "key-1", b"one"))
        .await
        .unwrap()
        .into_inner();
    let status = client
        .enqueue(keyed(receiver.url("/k"), "key-1", b"two"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    assert!(status.message().contains("key-1"), "{}", status.message());
    assert!(status.message().contains(&first.id), "{}", status.message());
    // The same key in use by another request does not block other keys.
    let other = client
        .enqueue(keyed(receiver.url("/k"), "key-2", b"two"))
        .await
        .unwrap()
        .into_inner();
    assert!(other.created);
    herald.stop().await;
}

/// The idempotency hash covers the request as the caller sent it: two
/// replicas whose default `max_attempts` differ answer the same keyed
/// request with the same delivery, whether or not it names its attempts.
async fn replicas_with_different_defaults_agree_on_a_keyed_request(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let mut config = test_config(herald.database_url());
    config.max_attempts += 2;
    let other = herald_server::start(config).await.expect("Herald starts");
    let mut other_client = DeliveryServiceClient::connect(format!("http://{}", other.local_addr()))
        .await
        .expect("connect to Herald");
    let receiver = Receiver::start().await;
    let chosen = |key: &str| EnqueueRequest {
        max_attempts: Some(3),
        ..keyed(receiver.url("/replicas"), key, b"{}")
    };
    for request in [
        keyed(receiver.url("/replicas"), "defaulted", b"{}"),
        chosen("chosen"),
    ] {
        let first = herald
            .client()
            .enqueue(request.clone())
            .await
            .unwrap()
            .into_inner();
        let again = other_client
            .enqueue(request)
            .await
            .expect("the same request on a replica with another default")
            .into_inner();
        assert!(first.created);
        assert_eq!((again.id, again.created), (first.id, false));
    }
    other.shutdown().await.expect("clean shutdown");
    herald.stop().await;
}

async fn concurrent_duplicates_create_one_delivery(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let url = receiver.url("/race");
    let calls = (0..16).map(|_| {
        let mut client = herald.client();
        let request = keyed(url.clone(), "race-key", b"same");
        tokio::spawn(async move { client.enqueue(request).await.map(|r| r.into_inner()) })
    });
    let responses: Vec<_> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|joined| joined.unwrap().expect("every duplicate is accepted"))
        .collect();
    assert_eq!(
        responses.iter().filter(|r| r.created).count(),
        1,
        "{responses:?}"
    );
    assert!(
        responses.iter().all(|r| r.id == responses[0].id),
        "{responses:?}"
    );
    herald.wait_terminal(&responses[0].id).await;
    assert_eq!(receiver.requests("/race").len(), 1);
    herald.stop().await;
}

async fn invalid_requests_name_the_field(backend: Backend) {
    let Some(herald) = TestHerald::start_with(backend, |c| c.limits.max_body_bytes = 1024).await
    else {
        return;
    };
    let header = |name: &str, value: &str| Header {
        name: name.into(),
        value: value.into(),
    };
    let valid = || EnqueueRequest {
        url: "http://127.0.0.1:9/hook".into(),
        ..Default::default()
    };
    let cases = [
        (
            "url",
            EnqueueRequest {
                url: "example.com/hook".into(),
                ..valid()
            },
        ),
        (
            "url",
            EnqueueRequest {
                url: "ftp://example.com/hook".into(),
                ..valid()
            },
        ),
        (
            "url",
            EnqueueRequest {
                url: String::new(),
                ..valid()
            },
        ),
        (
            "body",
            EnqueueRequest {
                body: vec![b'x'; 1025],
                ..valid()
            },
        ),
        (
            "headers",
            EnqueueRequest {
                headers: vec![header("bad header", "v")],
                ..valid()
            },
        ),
        (
            "headers",
            EnqueueRequest {
                headers: vec![header("x-ok", "line\r\nbreak")],
                ..valid()
            },
        ),
        (
            "headers",
            EnqueueRequest {
                headers: vec![header("content-length", "1")],
                ..valid()
            },
        ),
        (
            "max_attempts",
            EnqueueRequest {
                max_attempts: Some(0),
                ..valid()
            },
        ),
        (
            "method",
            EnqueueRequest {
                method: 42,
                ..valid()
            },
        ),
    ];
    let mut client = herald.client();
    for (field, request) in cases {
        let status = client.enqueue(request.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{request:?}");
        assert!(
            status.message().starts_with(&format!("{field}:")),
            "{field}: {}",
            status.message()
        );
    }
    let status = client
        .enqueue(EnqueueRequest {
            body: vec![b'x'; 1025],
            ..valid()
        })
        .await
        .unwrap_err();
    assert!(
        status.message().contains("1024"),
        "names the limit: {}",
        status.message()
    );
    herald.stop().await;
}
