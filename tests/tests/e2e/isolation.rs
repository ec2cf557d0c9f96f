//! A receiver that hangs until the timeout must not hold up the others:
//! it gets its destination's share of the permits and no more, and the
//! rest keep flowing beside it. How fast they flow is the benchmark's to
//! say (`herald-bench`), not a test's.

use std::time::Duration;

use herald_proto::v1::{DeliveryState, EnqueueRequest};
use herald_tests::{Backend, Receiver, TestHerald, on_both_backends};

on_both_backends!(a_hanging_destination_keeps_its_hands_off_the_rest);

/// Enqueues `count` deliveries to `path` over 8 callers; their ids.
async fn burst(herald: &TestHerald, receiver: &Receiver, path: &str, count: usize) -> Vec<String> {
    let calls = (0..8).map(|task| {
        let mut client = herald.client();
        let url = receiver.url(path);
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in (task..count).step_by(8) {
                let request = EnqueueRequest {
                    url: url.clone(),
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
    let mut ids = Vec::new();
    for call in futures::future::join_all(calls).await {
        ids.extend(call.expect("enqueue task"));
    }
    ids
}

async fn a_hanging_destination_keeps_its_hands_off_the_rest(backend: Backend) {
    // The hanging receiver holds its slots for the whole test.
    let Some(herald) = TestHerald::start_with(backend, |c| {
        c.concurrency = 16;
        c.destination_concurrency = 4;
        c.request_timeout = Duration::from_secs(30);
        c.lease_duration = Duration::from_secs(40);
        c.shutdown_grace = Duration::from_millis(100);
    })
    .await
    else {
        return;
    };
    let fast = Receiver::start().await;
    let slow = Receiver::start().await;
    slow.hold("/hang");
    for _ in 0..40 {
        herald
            .enqueue(EnqueueRequest {
                url: slow.url("/hang"),
                max_attempts: Some(1),
                ..Default::default()
            })
            .await;
    }
    slow.wait_for("/hang", 4).await;
    let ids = burst(&herald, &fast, "/fast", 300).await;
    fast.wait_for("/fast", 300).await;
    for id in &ids {
        let delivery = herald.wait_terminal(id).await;
        assert_eq!(delivery.state, i32::from(DeliveryState::Succeeded));
        assert_eq!(delivery.attempt_count, 1);
    }
    assert_eq!(
        slow.requests("/hang").len(),
        4,
        "the hanging destination got only its share, all along"
    );
    herald.stop().await;
}
