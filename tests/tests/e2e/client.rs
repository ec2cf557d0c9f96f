//! The Rust SDK against a real Herald.

use std::collections::HashSet;

use futures::{StreamExt, TryStreamExt};
use herald_client::{Client, DeliveryState, OutcomeKind, WatchOptions};
use herald_tests::{Backend, PATIENCE, Receiver, Reply, TestHerald, on_both_backends};

on_both_backends!(sdk_enqueues_reads_pages_and_watches);

async fn sdk_enqueues_reads_pages_and_watches(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let client = Client::connect(format!("http://{}", herald.addr()))
        .await
        .unwrap();
    let mut outcomes = client
        .watch_outcomes(WatchOptions::default())
        .await
        .unwrap();

    let order = || {
        client
            .enqueue(receiver.url("/sdk"))
            .json(&serde_json_value())
            .header("x-event-type", "order.created")
            .idempotency_key("sdk-1")
            .max_attempts(2)
            .send()
    };
    let enqueued = order().await.unwrap();
    assert!(enqueued.created);
    let again = order().await.unwrap();
    assert_eq!(
        (again.id.as_str(), again.created),
        (enqueued.id.as_str(), false)
    );
    let seen = receiver.wait_for("/sdk", 1).await.remove(0);
    assert_eq!(seen.body.as_ref(), br#"{"id":42,"type":"order.created"}"#);
    assert_eq!(seen.header("content-type"), "application/json");
    assert_eq!(seen.header("x-event-type"), "order.created");

    receiver.script("/sdk-reject", vec![Reply::Status(400); 5]);
    let mut rejected = HashSet::new();
    for _ in 0..5 {
        rejected.insert(
            client
                .enqueue(receiver.url("/sdk-reject"))
                .send()
                .await
                .unwrap()
                .id,
        );
    }
    let mut finished = HashSet::new();
    tokio::time::timeout(PATIENCE, async {
        while finished.len() < 6 {
            let outcome = outcomes.next().await.unwrap().unwrap();
            assert_ne!(outcome.kind, OutcomeKind::RetryScheduled, "{outcome:?}");
            finished.insert(outcome.delivery_id);
        }
    })
    .await
    .expect("six outcomes");

    let delivery = client.get_delivery(&enqueued.id).await.unwrap();
    assert_eq!(delivery.state, DeliveryState::Succeeded);
    assert_eq!(delivery.attempts.len(), 1);

    let listed: HashSet<String> = client
        .dead_letters_by_page(2)
        .map_ok(|delivery| delivery.id)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        listed, rejected,
        "three pages of two, every dead letter once"
    );

    let missing = client
        .get_delivery(&uuid::Uuid::now_v7().to_string())
        .await
        .unwrap_err();
    assert_eq!(
        missing.code(),
        Some(herald_client::Code::NotFound),
        "{missing}"
    );
    let invalid = client
        .enqueue("ftp://example.com")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        invalid.code(),
        Some(herald_client::Code::InvalidArgument),
        "{invalid}"
    );
    // The details a program acts on, in the SDK's own types.
    let status = invalid.status().expect("Herald's answer");
    assert_eq!(status.reason, "INVALID_FIELD");
    assert_eq!(status.field_violations.len(), 1, "{status:?}");
    assert_eq!(status.field_violations[0].field, "url");
    herald.stop().await;
}

fn serde_json_value() -> impl serde::Serialize {
    #[derive(serde::Serialize)]
    struct Event {
        id: u32,
        r#type: &'static str,
    }
    Event {
        id: 42,
        r#type: "order.created",
    }
}
