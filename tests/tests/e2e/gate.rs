//! The gate in front of every call: a `herald.v1` call is authenticated
//! before its message is decoded (a refused caller's message is never
//! read), each method's message is held to its own size limit as it
//! arrives (only `EnqueueBatch` takes the large batch limit), and health
//! needs no key.

use herald_proto::v1::{EnqueueRequest, GetDeliveryRequest};
use herald_tests::{Backend, Receiver, TestHerald, accepted, create_tenant, on_both_backends};
use tonic::{Code, Request, metadata::MetadataValue, transport::Channel};

use crate::HERALD;

on_both_backends!(
    a_caller_is_authenticated_before_its_message_is_decoded,
    each_method_has_its_own_message_limit,
);

/// A message that cannot be decoded as an `EnqueueRequest`: its field 1,
/// the URL, a string there, holds bytes that are not UTF-8.
#[derive(Clone, PartialEq, prost::Message)]
struct Undecodable {
    #[prost(bytes = "vec", tag = "1")]
    url: Vec<u8>,
}

/// Sends `message` to `Enqueue` as raw protobuf, with `key` if given;
/// returns the status code of the answer.
async fn raw_enqueue(channel: Channel, message: Undecodable, key: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let mut request = Request::new(message);
    if let Some(key) = key {
        let value: MetadataValue<_> = format!("Bearer {key}").parse().expect("ascii");
        request.metadata_mut().insert("authorization", value);
    }
    let path = http::uri::PathAndQuery::from_static("/herald.v1.DeliveryService/Enqueue");
    let codec =
        tonic_prost::ProstCodec::<Undecodable, herald_proto::v1::EnqueueResponse>::default();
    match grpc.unary(request, path, codec).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

async fn channel(herald: &TestHerald) -> Channel {
    Channel::from_shared(format!("http://{}", herald.addr()))
        .expect("a URL")
        .connect()
        .await
        .expect("connect")
}

async fn a_caller_is_authenticated_before_its_message_is_decoded(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let created = create_tenant(HERALD, herald.database_url(), "alpha");
    let undecodable = Undecodable {
        url: vec![0xff, 0xfe, 0xfd],
    };
    for key in [None, Some("hk_k3x9a0b1c2d4_wrong"), Some("not a key")] {
        let code = raw_enqueue(channel(&herald).await, undecodable.clone(), key).await;
        assert_eq!(
            code,
            Code::Unauthenticated,
            "{key:?}: the message was decoded first"
        );
    }
    // With the right key the message is read, and fails to decode.
    let code = raw_enqueue(channel(&herald).await, undecodable, Some(&created.api_key)).await;
    assert_eq!(code, Code::Internal, "a right key's message is decoded");

    // Health needs no key, closed or not.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(&herald).await);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health answers without a key");
    herald.stop().await;
}

async fn each_method_has_its_own_message_limit(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    // A lookup far larger than any id: refused on its size, unread.
    let refused = herald
        .client()
        .get_delivery(GetDeliveryRequest {
            id: "x".repeat(100 * 1024),
        })
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("limit"), "{}", refused.message());

    // A batch several times that size is taken: only it has the large limit.
    let limits = herald_tests::test_config("sqlite::memory:").limits;
    let deliveries: Vec<EnqueueRequest> = (0..4)
        .map(|i| EnqueueRequest {
            url: receiver.url(&format!("/batch/{i}")),
            body: vec![b'x'; limits.max_body_bytes],
            ..Default::default()
        })
        .collect();
    let results = herald.enqueue_batch(deliveries).await;
    assert_eq!(results.len(), 4);
    assert!(
        results.iter().all(|result| accepted(result).is_some()),
        "{results:?}"
    );
    herald.stop().await;
}
