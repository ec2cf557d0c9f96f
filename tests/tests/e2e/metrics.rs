//! The Prometheus endpoint, scraped after a known mix of outcomes: the
//! counters match exactly, the histograms have their buckets, the gauges
//! read the backlog.

use futures::StreamExt;
use herald_proto::v1::watch_outcomes_request::Start;
use herald_proto::v1::{CancelDeliveryRequest, EnqueueRequest, WatchOutcomesRequest};
use herald_tests::{Backend, PATIENCE, Receiver, Reply, TestHerald, on_both_backends, scrape};

on_both_backends!(counters_match_a_known_mix_of_outcomes);

async fn counters_match_a_known_mix_of_outcomes(backend: Backend) {
    let Some(herald) = TestHerald::start_with(backend, |c| {
        c.metrics_addr = Some("127.0.0.1:0".parse().expect("an address"));
    })
    .await
    else {
        return;
    };
    let metrics_addr = herald.metrics_addr().expect("metrics are on");
    let receiver = Receiver::start().await;
    receiver.script("/reject", [Reply::Status(400)]);
    receiver.script("/flaky", [Reply::Status(503)]);
    let mut outcomes = herald
        .client()
        .watch_outcomes(WatchOutcomesRequest {
            start: Some(Start::FromOldest(true)),
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    for path in ["/ok", "/ok", "/ok", "/reject", "/flaky"] {
        herald.post(receiver.url(path), b"{}").await;
    }
    let later = herald
        .enqueue(EnqueueRequest {
            url: receiver.url("/later"),
            not_before_time: Some(prost_types::Timestamp {
                seconds: 4_000_000_000,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await;
    herald
        .client()
        .cancel_delivery(CancelDeliveryRequest { id: later })
        .await
        .expect("cancel");
    // 4 succeeded, 1 retry scheduled, 1 dead-lettered, 1 cancelled. Each
    // is counted before it is announced to watchers.
    for _ in 0..7 {
        tokio::time::timeout(PATIENCE, outcomes.next())
            .await
            .expect("an outcome in time")
            .expect("stream open")
            .expect("an outcome");
    }

    let expected = [
        "herald_deliveries_enqueued_total 6",
        "herald_attempts_total{result=\"success\"} 4",
        "herald_attempts_total{result=\"retryable_status\"} 1",
        "herald_attempts_total{result=\"permanent_status\"} 1",
        "herald_deliveries_succeeded_total 4",
        "herald_deliveries_retried_total 1",
        "herald_deliveries_dead_lettered_total 1",
        "herald_deliveries_cancelled_total 1",
        "herald_attempt_duration_seconds_count 6",
        "herald_attempt_duration_seconds_bucket{le=\"+Inf\"} 6",
        "herald_enqueue_to_first_attempt_seconds_count 5",
        "herald_dead_letters 1",
        "herald_due_backlog 0",
        "herald_scheduled_retries 0",
        "herald_attempts_in_flight 0",
    ];
    // The completer counts an outcome just after its commit, and answers a
    // cancellation only after everything it received before: once this
    // cancel of an unknown delivery is answered, every count is in.
    let barrier = herald
        .client()
        .cancel_delivery(CancelDeliveryRequest {
            id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .expect_err("no such delivery");
    assert_eq!(barrier.code(), tonic::Code::NotFound);
    let page = scrape(metrics_addr).await;
    for line in expected {
        assert!(page.contains(line), "{line:?} missing from:\n{page}");
    }
    assert!(
        page.contains("herald_attempt_duration_seconds_bucket{le=\"0.001\"}"),
        "{page}"
    );
    assert!(
        !page.contains(&receiver.url("/")),
        "URLs never appear as label values"
    );
    herald.stop().await;
}
