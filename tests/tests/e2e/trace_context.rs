//! A W3C `traceparent` sent with Enqueue reaches the receiver on every
//! attempt, so the receiver's trace joins the caller's; it is not part of
//! the request an idempotency key protects.

use herald_proto::v1::{DeliveryState, EnqueueRequest};
use herald_tests::{Backend, Receiver, Reply, TestHerald, on_both_backends};
use tonic::Request;

on_both_backends!(traceparent_reaches_every_attempt);

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn traced(message: EnqueueRequest, traceparent: &str) -> Request<EnqueueRequest> {
    let mut request = Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert("traceparent", traceparent.parse().expect("ASCII"));
    metadata.insert("tracestate", "herald=test".parse().expect("ASCII"));
    request
}

async fn traceparent_reaches_every_attempt(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.script("/traced", [Reply::Status(503), Reply::Status(503)]);
    let message = EnqueueRequest {
        url: receiver.url("/traced"),
        idempotency_key: "traced-once".to_owned(),
        ..Default::default()
    };
    let id = herald
        .client()
        .enqueue(traced(message.clone(), TRACEPARENT))
        .await
        .expect("enqueue")
        .into_inner()
        .id;
    let seen = receiver.wait_for("/traced", 3).await;
    assert_eq!(
        herald.wait_terminal(&id).await.state,
        i32::from(DeliveryState::Succeeded)
    );
    for (n, attempt) in seen.iter().enumerate() {
        assert_eq!(
            attempt.header("traceparent"),
            TRACEPARENT,
            "attempt {}",
            n + 1
        );
        assert_eq!(attempt.header("tracestate"), "herald=test");
    }

    // The caller retries the enqueue from a new span: the same delivery.
    let retried = herald
        .client()
        .enqueue(traced(
            message,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01",
        ))
        .await
        .expect("an idempotent retry")
        .into_inner();
    assert_eq!((retried.id.as_str(), retried.created), (id.as_str(), false));

    // An invalid traceparent is ignored, as the W3C specification asks.
    let ignored = herald
        .client()
        .enqueue(traced(
            EnqueueRequest {
                url: receiver.url("/untraced"),
                ..Default::default()
            },
            "not-a-trace",
        ))
        .await
        .expect("enqueue")
        .into_inner()
        .id;
    herald.wait_terminal(&ignored).await;
    assert_eq!(receiver.requests("/untraced")[0].header("traceparent"), "");
    herald.stop().await;
}
