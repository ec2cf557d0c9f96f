//! A receiver that hangs until the timeout must not slow the others.
//!
//! Throughput is compared within one run (the fast destination alone, then
//! beside a hanging one), so the ratio holds on a slow machine too; the
//! absolute figures belong to the benchmark tool.

use std::time::{Duration, Instant};

use herald_proto::v1::EnqueueRequest;
use herald_tests::{Backend, Receiver, TestHerald, on_both_backends};

on_both_backends!(a_hanging_destination_keeps_its_hands_off_the_rest);

/// Enqueues `count` deliveries to `path` and waits until `total` requests
/// have arrived there; returns the time taken.
async fn burst(
    herald: &TestHerald,
    receiver: &Receiver,
    path: &str,
    count: usize,
    total: usize,
) -> Duration {
    let start = Instant::now();
    let calls = (0..8).map(|task| {
        let mut client = herald.client();
        let url = receiver.url(path);
        tokio::spawn(async move {
            for _ in (task..count).step_by(8) {
                let request = EnqueueRequest {
                    url: url.clone(),
                    ..Default::default()
                };
                client.enqueue(request).await.expect("enqueue");
            }
        })
    });
    for call in futures::future::join_all(calls).await {
        call.expect("enqueue task");
    }
    receiver.wait_for(path, total).await;
    start.elapsed()
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

    burst(&herald, &fast, "/fast", 50, 50).await;
    let alone = burst(&herald, &fast, "/fast", 300, 350).await;
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
    let beside_hang = burst(&herald, &fast, "/fast", 300, 650).await;
    assert_eq!(
        slow.requests("/hang").len(),
        4,
        "the hanging destination got only its share"
    );
    let ratio = alone.as_secs_f64() / beside_hang.as_secs_f64();
    eprintln!(
        "isolation ({backend:?}): 300 fast deliveries alone {alone:?}, beside a hanging receiver {beside_hang:?}: {:.0}%",
        ratio * 100.0
    );
    assert!(
        ratio >= 0.8,
        "fast throughput beside a hanging receiver is {:.0}% of alone ({alone:?} vs {beside_hang:?})",
        ratio * 100.0
    );
    herald.stop().await;
}
