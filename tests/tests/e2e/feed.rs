//! `WatchOutcomes` as something to build on (invariant I6): gap-free
//! across replicas, resumable, filtered, bounded for slow readers, and
//! honest about what retention removed.

use std::{collections::HashSet, time::SystemTime};

use futures::StreamExt;
use herald_client::{Client, OutcomeKind as Kind, WatchOptions};
use herald_proto::v1::watch_outcomes_request::Start;
use herald_proto::v1::{OutcomeKind, WatchOutcomesRequest};
use herald_server::store::{Store, records::OutcomeFilter};
use herald_tests::{
    Backend, HeraldProcess, PATIENCE, Receiver, Reply, TestDb, TestHerald, on_both_backends,
};
use tonic::Code;

use crate::{
    HERALD,
    faults::{enqueue_many, settings},
};

on_both_backends!(
    a_slow_watcher_catches_up_without_loss,
    filters_pick_deliveries_kinds_and_hosts,
    a_pruned_cursor_is_out_of_range,
    the_client_resumes_across_a_restart,
);

/// Reads `count` outcomes from `stream`, failing after [`PATIENCE`].
async fn take(
    stream: &mut (
             impl futures::Stream<Item = Result<herald_client::Outcome, herald_client::Error>> + Unpin
         ),
    count: usize,
) -> Vec<herald_client::Outcome> {
    let mut outcomes = Vec::with_capacity(count);
    let read = tokio::time::timeout(PATIENCE, async {
        while outcomes.len() < count {
            outcomes.push(
                stream
                    .next()
                    .await
                    .expect("stream open")
                    .expect("an outcome"),
            );
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "expected {count} outcomes, got {}",
        outcomes.len()
    );
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_committing_at_once_give_a_watcher_every_outcome_once() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let receiver = Receiver::start().await;
    // A third of the attempts fail once, so outcomes interleave more; the
    // failures come in a row, so the circuit is kept from opening.
    receiver.script("/mixed", vec![Reply::Status(503); 200]);
    // The destination's limit is above both replicas' permits, so neither
    // fills it and both keep claiming: at a destination held at its
    // limit, one replica's slots may keep it to themselves.
    let config = settings(&[
        ("HERALD_CIRCUIT_FAILURE_THRESHOLD", "10000"),
        ("HERALD_CONCURRENCY", "16"),
        ("HERALD_DESTINATION_CONCURRENCY", "64"),
        ("HERALD_REQUEST_TIMEOUT", "10s"),
        ("HERALD_LEASE_DURATION", "60s"),
    ]);
    let a = HeraldProcess::spawn(HERALD, db.url(), &config).await;
    let b = HeraldProcess::spawn(HERALD, db.url(), &config).await;
    // The watcher is on A; B's outcomes must reach it too.
    let watcher = Client::connect(format!("http://{}", a.addr()))
        .await
        .unwrap();
    let mut stream = watcher
        .watch_outcomes(WatchOptions::default().after(0))
        .await
        .unwrap();
    let url = receiver.url("/mixed");
    let (client_a, client_b) = (a.client().await, b.client().await);
    let (via_a, via_b) = tokio::join!(
        enqueue_many(&client_a, &url, 300, 4),
        enqueue_many(&client_b, &url, 300, 4)
    );
    let ids: HashSet<String> = via_a.into_iter().chain(via_b).collect();

    // 600 successes plus the 200 scheduled retries.
    let seen = take(&mut stream, 800).await;
    let sequences: Vec<u64> = seen.iter().map(|o| o.sequence).collect();
    assert!(
        sequences.windows(2).all(|pair| pair[0] < pair[1]),
        "in order, no repeats"
    );
    let succeeded: HashSet<&str> = seen
        .iter()
        .filter(|o| o.kind == Kind::Succeeded)
        .map(|o| o.delivery_id.as_str())
        .collect();
    assert_eq!(succeeded.len(), 600);
    assert!(ids.iter().all(|id| succeeded.contains(id.as_str())));

    let store = Store::connect(db.url()).await.unwrap();
    let stored = store
        .outcomes_after("default", &OutcomeFilter::default(), 0, 10_000)
        .await
        .unwrap();
    let stored: Vec<u64> = stored.iter().map(|o| o.sequence as u64).collect();
    assert_eq!(
        sequences, stored,
        "the watcher saw exactly what the table holds"
    );
    store.close().await.unwrap();
    // Every attempt is counted before its outcome is recorded.
    let (by_a, by_b) = (a.attempts().await, b.attempts().await);
    assert_eq!(by_a + by_b, 800, "one attempt per outcome");
    assert!(
        by_a > 0 && by_b > 0,
        "both replicas produced outcomes: {by_a} and {by_b}"
    );
}

async fn a_slow_watcher_catches_up_without_loss(backend: Backend) {
    // A ring of 8: the watcher below falls far behind it.
    let Some(herald) = TestHerald::start_with(backend, |c| c.feed_buffer = 8).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let client = Client::connect(format!("http://{}", herald.addr()))
        .await
        .unwrap();
    let mut slow = client
        .watch_outcomes(WatchOptions::default())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for n in 0..120 {
        ids.push(
            herald
                .post(receiver.url("/many"), format!("{n}").as_bytes())
                .await,
        );
    }
    receiver.wait_for("/many", 120).await;
    for id in &ids {
        herald.wait_terminal(id).await;
    }
    // Only now does the watcher read: everything is there, once, in order.
    let seen = take(&mut slow, 120).await;
    let seen_ids: HashSet<&str> = seen.iter().map(|o| o.delivery_id.as_str()).collect();
    assert_eq!(seen_ids.len(), 120);
    assert!(
        seen.windows(2)
            .all(|pair| pair[0].sequence < pair[1].sequence)
    );
    herald.stop().await;
}

async fn filters_pick_deliveries_kinds_and_hosts(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.script("/reject", [Reply::Status(400)]);
    let ok = herald.post(receiver.url("/ok"), b"").await;
    let rejected = herald.post(receiver.url("/reject"), b"").await;
    // Another host for the same receiver: "localhost" instead of the IP.
    let other_host = herald
        .post(receiver.url("/ok").replace("127.0.0.1", "localhost"), b"")
        .await;
    for id in [&ok, &rejected, &other_host] {
        herald.wait_terminal(id).await;
    }
    let client = Client::connect(format!("http://{}", herald.addr()))
        .await
        .unwrap();
    let first = |options: WatchOptions| {
        let client = client.clone();
        async move {
            let mut stream = client.watch_outcomes(options.after(0)).await.unwrap();
            take(&mut stream, 1).await.remove(0)
        }
    };
    assert_eq!(
        first(WatchOptions::default().kinds([Kind::DeadLettered]))
            .await
            .delivery_id,
        rejected
    );
    assert_eq!(
        first(WatchOptions::default().delivery_ids([other_host.clone()]))
            .await
            .delivery_id,
        other_host
    );
    let local = first(WatchOptions::default().destination_host("localhost")).await;
    assert_eq!(local.delivery_id, other_host);
    let mut by_host = client
        .watch_outcomes(
            WatchOptions::default()
                .after(0)
                .destination_host("127.0.0.1"),
        )
        .await
        .unwrap();
    let ip: HashSet<String> = take(&mut by_host, 2)
        .await
        .into_iter()
        .map(|o| o.delivery_id)
        .collect();
    // Both are sent at once, so either may finish (and be recorded) first.
    assert_eq!(ip, HashSet::from([ok, rejected]));

    let mut grpc = herald.client();
    let bad = grpc
        .watch_outcomes(WatchOutcomesRequest {
            kinds: vec![OutcomeKind::Unspecified.into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let not_oldest = grpc
        .watch_outcomes(WatchOutcomesRequest {
            start: Some(Start::FromOldest(false)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(not_oldest.code(), Code::InvalidArgument);
    assert!(
        not_oldest.message().starts_with("from_oldest: "),
        "{not_oldest:?}"
    );
    herald.stop().await;
}

async fn a_pruned_cursor_is_out_of_range(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let config = herald_tests::test_config(db.url());
    let herald = herald_server::start(config).await.unwrap();
    let receiver = Receiver::start().await;
    let client = Client::connect(format!("http://{}", herald.local_addr()))
        .await
        .unwrap();
    let mut all = client
        .watch_outcomes(WatchOptions::default().after(0))
        .await
        .unwrap();
    for _ in 0..3 {
        client.enqueue(receiver.url("/old")).send().await.unwrap();
    }
    let old = take(&mut all, 3).await;

    // Retention removes everything recorded so far.
    let store = Store::connect(db.url()).await.unwrap();
    let future = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 60_000;
    assert_eq!(store.prune_outcomes(future, 2).await.unwrap(), 3);
    store.close().await.unwrap();

    let Err(error) = client
        .watch_outcomes(WatchOptions::default().after(0))
        .await
    else {
        panic!("a cursor before the pruned outcomes must be refused");
    };
    assert_eq!(
        error.code(),
        Some(herald_client::Code::OutOfRange),
        "{error}"
    );
    let newest_pruned = old[2].sequence.to_string();
    assert!(
        error.to_string().contains(&newest_pruned),
        "names the oldest usable cursor: {error}"
    );
    let mut oldest = client
        .watch_outcomes(WatchOptions::default().from_oldest())
        .await
        .unwrap();
    client.enqueue(receiver.url("/new")).send().await.unwrap();
    let new = take(&mut oldest, 1).await.remove(0);
    assert!(
        new.sequence > old[2].sequence,
        "from_oldest starts after the pruned ones"
    );
    herald.shutdown().await.unwrap();
}

async fn the_client_resumes_across_a_restart(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    // One address for both processes, so the client can find the second.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = settings(&[("HERALD_LISTEN_ADDR", &addr.to_string())]);
    let mut first = HeraldProcess::spawn(HERALD, db.url(), &config).await;
    let client = Client::connect(format!("http://{addr}")).await.unwrap();
    let mut stream = client
        .watch_outcomes(WatchOptions::default().after(0))
        .await
        .unwrap();
    for _ in 0..3 {
        client
            .enqueue(receiver.url("/before"))
            .send()
            .await
            .unwrap();
    }
    let before = take(&mut stream, 3).await;

    first.terminate();
    assert_eq!(first.exited().await.code(), Some(0));
    let _second = HeraldProcess::spawn(HERALD, db.url(), &config).await;
    for _ in 0..3 {
        client.enqueue(receiver.url("/after")).send().await.unwrap();
    }
    let after = take(&mut stream, 3).await;
    let mut sequences: Vec<u64> = before.iter().chain(&after).map(|o| o.sequence).collect();
    let read = sequences.clone();
    sequences.dedup();
    assert_eq!(read, sequences, "no outcome twice");
    assert!(read.windows(2).all(|pair| pair[0] < pair[1]));
    let ids: HashSet<&str> = after.iter().map(|o| o.delivery_id.as_str()).collect();
    assert_eq!(ids.len(), 3, "the outcomes produced by the second process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_watch_prints_aligned_outcomes() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let Some(herald) = TestHerald::start(Backend::Sqlite).await else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.script("/reject", [Reply::Status(400)]);
    let ok = herald.post(receiver.url("/ok"), b"").await;
    let rejected = herald.post(receiver.url("/reject"), b"").await;
    herald.wait_terminal(&ok).await;
    herald.wait_terminal(&rejected).await;

    let mut watch = tokio::process::Command::from(herald_tests::herald_process(HERALD))
        .args([
            "watch",
            "--server",
            &format!("http://{}", herald.addr()),
            "--after",
            "0",
        ])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run herald watch");
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        while printed.len() < 3 {
            printed.push(
                lines
                    .next_line()
                    .await
                    .unwrap()
                    .expect("herald watch keeps printing"),
            );
        }
    })
    .await;
    assert!(read.is_ok(), "herald watch printed only {printed:?}");
    assert!(
        printed[0].contains("SEQUENCE") && printed[0].contains("DELIVERY"),
        "{printed:?}"
    );
    let of = |id: &str| {
        printed
            .iter()
            .find(|line| line.contains(id))
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        of(&ok).contains("succeeded") && of(&ok).ends_with("204"),
        "{printed:?}"
    );
    assert!(
        of(&rejected).contains("dead-lettered") && of(&rejected).contains("400"),
        "{printed:?}"
    );
    let column = |line: &str, id: &str| line.find(id);
    assert_eq!(
        column(&of(&ok), &ok),
        column(&printed[0], "DELIVERY"),
        "aligned: {printed:?}"
    );
    watch.kill().await.unwrap();
    herald.stop().await;
}
