//! The scenarios. Each starts from a fresh database and returns what it
//! measured; none asserts anything.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::StreamExt;
use herald_client::{Client, EnqueueBuilder, OutcomeKind, WatchOptions};
use herald_server::{
    destinations::policy::Policy,
    domain::{Decision, Destination, HttpMethod, HttpRequest},
    store::{
        ClaimRequest, Store,
        records::{AttemptRecord, Completion, NewDelivery},
    },
};
use herald_tests::Backend;

use crate::{
    receiver::{Behaviour, BenchReceiver},
    report::{Report, Spread},
    server::{BenchDb, BenchServer},
};

/// Concurrency settings that let one local receiver take everything.
fn wide_open() -> Vec<(&'static str, String)> {
    vec![
        ("HERALD_CONCURRENCY", "256".to_owned()),
        ("HERALD_DESTINATION_CONCURRENCY", "256".to_owned()),
    ]
}

/// The body every benchmark delivery carries.
const EVENT: &[u8] = br#"{"type":"bench.event","id":1}"#;

/// An enqueue of the benchmark's event to `url`.
fn event(client: &Client, url: impl Into<String>) -> EnqueueBuilder {
    client.enqueue(url).body(EVENT.to_vec())
}

/// The same, due in an hour: the scheduler stays idle, so only accepting
/// deliveries is measured.
fn later(client: &Client, url: impl Into<String>) -> EnqueueBuilder {
    event(client, url).not_before(std::time::SystemTime::now() + Duration::from_secs(3600))
}

fn delivery(url: &str) -> NewDelivery {
    let parsed = url::Url::parse(url).expect("a URL");
    NewDelivery {
        tenant_id: "default".into(),
        request: HttpRequest {
            method: HttpMethod::Post,
            url: url.to_owned(),
            headers: Vec::new(),
            content_type: Some("application/json".into()),
            body: Bytes::from_static(EVENT),
        },
        destination: Destination::of(&parsed).expect("a destination"),
        idempotency_key: None,
        max_attempts: 5,
        not_before_ms: None,
        deadline_ms: None,
        trace: None,
    }
}

/// Queues `count` deliveries to `url`, 1,000 per transaction.
async fn prequeue(store: &Store, url: &str, count: u64) {
    let mut left = count;
    while left > 0 {
        let chunk = left.min(1000);
        let batch: Vec<NewDelivery> = (0..chunk).map(|_| delivery(url)).collect();
        for result in store.enqueue_batch(&batch).await.expect("queue a batch") {
            result.expect("queued");
        }
        left -= chunk;
    }
}

fn commits_per(before: Option<i64>, after: Option<i64>, count: u64) -> Option<f64> {
    Some((after? - before?) as f64 / count.max(1) as f64)
}

/// Herald's claim and complete statements in a loop, four workers, no
/// HTTP and no server: what the database allows.
pub async fn ceiling(backend: Backend, count: u64) -> Report {
    let db = BenchDb::create(backend).await;
    let store = db.store().await;
    prequeue(&store, "http://127.0.0.1:9/ceiling", count).await;
    let before = db.commits().await;
    let started = Instant::now();
    // The database's limit: no destination limit gets in the way.
    let defaults = Policy {
        max_in_flight: 10_000,
        ..herald_server::Config::default().destination_policy()
    };
    let workers = (0..4).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let unrecorded = HashMap::new();
            loop {
                let claimed = store
                    .claim(&ClaimRequest {
                        limit: 64,
                        lease: Duration::from_secs(60),
                        defaults: &defaults,
                        skip: &[],
                        unrecorded: &unrecorded,
                    })
                    .await
                    .expect("claim")
                    .deliveries;
                if claimed.is_empty() {
                    return;
                }
                let done: Vec<Completion> = claimed
                    .iter()
                    .map(|c| Completion {
                        delivery_id: c.id,
                        tenant_id: c.tenant_id.clone(),
                        lease_token: c.lease_token,
                        attempt_number: c.attempt_number,
                        destination: c.destination.clone(),
                        probe: c.probe,
                        failure_threshold: c.failure_threshold,
                        attempt: Some(AttemptRecord {
                            number: c.attempt_number,
                            started_at_ms: c.created_at_ms,
                            duration_us: 500,
                            status_code: Some(204),
                            error_kind: None,
                            error_message: None,
                            response_excerpt: Bytes::new(),
                        }),
                        reason: None,
                        decision: Decision::Succeeded,
                        slow_down: None,
                    })
                    .collect();
                store
                    .complete(&done, &[], &defaults)
                    .await
                    .expect("complete");
            }
        })
    });
    for worker in futures::future::join_all(workers).await {
        worker.expect("worker");
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = db.commits().await;
    store.close().await.expect("close");
    db.db.drop_database().await;
    Report {
        commits_per_delivery: commits_per(before, after, count),
        note: "claim 64 + complete, 4 workers, no HTTP".into(),
        ..Report::new("ceiling", backend, count, seconds)
    }
}

/// `count` deliveries queued first, after `finished` ones already delivered;
/// then the server starts and delivers them to a receiver answering 204.
/// Timed from the server serving to the last success it recorded (seen on
/// WatchOutcomes).
pub async fn burn_down(backend: Backend, count: u64, finished: u64) -> Report {
    let db = BenchDb::create(backend).await;
    let receiver = BenchReceiver::start(Behaviour::default()).await;
    let store = db.store().await;
    let feed_start = if finished > 0 {
        prequeue(&store, &receiver.url(), finished).await;
        db.finish_everything().await
    } else {
        0
    };
    prequeue(&store, &receiver.url(), count).await;
    store.close().await.expect("close");
    let before = db.commits().await;
    let server = BenchServer::start(&db, &wide_open()).await;
    let started = Instant::now();
    let cpu = server.cpu_seconds();
    let client = server.client().await;
    let mut outcomes = client
        .watch_outcomes(
            WatchOptions::default()
                .after(feed_start)
                .kinds([OutcomeKind::Succeeded]),
        )
        .await
        .expect("watch");
    let mut seen = 0;
    while seen < count {
        outcomes
            .next()
            .await
            .expect("stream open")
            .expect("outcome");
        seen += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = server.cpu_seconds() - cpu;
    let rss = server.peak_rss_mib();
    server.stop().await;
    let after = db.commits().await;
    db.db.drop_database().await;
    Report {
        cpu_s_per_1000: Some(cpu * 1000.0 / count as f64),
        peak_rss_mib: Some(rss),
        commits_per_delivery: commits_per(before, after, count),
        note: if finished > 0 {
            format!("receiver answers 204; concurrency 256; {finished} finished rows before")
        } else {
            "receiver answers 204; concurrency 256".into()
        },
        ..Report::new("burn-down", backend, count, seconds)
    }
}

/// `concurrency` callers of unary Enqueue, `count` calls in all; then the
/// same number of deliveries through EnqueueBatch (8 callers, 100 each).
/// The deliveries are due in an hour, so the scheduler does not compete
/// for the two cores: this is what accepting costs.
pub async fn enqueue(backend: Backend, count: u64, concurrency: usize) -> Vec<Report> {
    let db = BenchDb::create(backend).await;
    let receiver = BenchReceiver::start(Behaviour::default()).await;
    let server = BenchServer::start(&db, &wide_open()).await;
    let client = server.client().await;
    let url = receiver.url();

    let before = db.commits().await;
    let cpu = server.cpu_seconds();
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(count as usize)));
    let started = Instant::now();
    let per_caller = count / concurrency as u64;
    let callers = (0..concurrency).map(|_| {
        let client = client.clone();
        let url = url.clone();
        let latencies = Arc::clone(&latencies);
        tokio::spawn(async move {
            for _ in 0..per_caller {
                let call = Instant::now();
                later(&client, url.clone()).send().await.expect("enqueue");
                latencies.lock().unwrap().push(call.elapsed());
            }
        })
    });
    for caller in futures::future::join_all(callers).await {
        caller.expect("caller");
    }
    let unary_calls = per_caller * concurrency as u64;
    let seconds = started.elapsed().as_secs_f64();
    let unary_cpu = server.cpu_seconds() - cpu;
    let after = db.commits().await;
    let samples = std::mem::take(&mut *latencies.lock().unwrap());
    let unary = Report {
        cpu_s_per_1000: Some(unary_cpu * 1000.0 / unary_calls as f64),
        commits_per_delivery: commits_per(before, after, unary_calls),
        note: format!("{concurrency} callers, unary; due in an hour, so acceptance only"),
        ..Report::new("enqueue", backend, unary_calls, seconds)
    }
    .latencies(samples);

    let before = db.commits().await;
    let cpu = server.cpu_seconds();
    let started = Instant::now();
    let batches = count / 100;
    let callers = (0..8).map(|caller| {
        let client = client.clone();
        let url = url.clone();
        let latencies = Arc::clone(&latencies);
        tokio::spawn(async move {
            for _ in (caller..batches).step_by(8) {
                let call = Instant::now();
                let items = (0..100).map(|_| later(&client, url.clone()));
                for result in client.enqueue_batch(items).await.expect("batch") {
                    result.expect("accepted");
                }
                latencies.lock().unwrap().push(call.elapsed());
            }
        })
    });
    for caller in futures::future::join_all(callers).await {
        caller.expect("caller");
    }
    let delivered = batches * 100;
    let seconds = started.elapsed().as_secs_f64();
    let batch_cpu = server.cpu_seconds() - cpu;
    let rss = server.peak_rss_mib();
    let after = db.commits().await;
    let samples = std::mem::take(&mut *latencies.lock().unwrap());
    server.stop().await;
    db.db.drop_database().await;
    let batch = Report {
        cpu_s_per_1000: Some(batch_cpu * 1000.0 / delivered as f64),
        peak_rss_mib: Some(rss),
        commits_per_delivery: commits_per(before, after, delivered),
        note: "8 callers x 100 per batch, due in an hour; latency per batch call".into(),
        ..Report::new("enqueue-batch", backend, delivered, seconds)
    }
    .latencies(samples);
    vec![unary, batch]
}

/// `count` enqueues one after another into an idle server, each waiting
/// for its receipt: enqueue call to the receiver seeing the request.
pub async fn latency(backend: Backend, count: u64) -> Report {
    let db = BenchDb::create(backend).await;
    let receiver = BenchReceiver::start(Behaviour::default()).await;
    let server = BenchServer::start(&db, &[]).await;
    let client = server.client().await;
    let url = receiver.url();
    let cpu = server.cpu_seconds();
    let mut samples = Vec::with_capacity(count as usize);
    let started = Instant::now();
    for _ in 0..count {
        let sent = Instant::now();
        let id = event(&client, url.clone())
            .send()
            .await
            .expect("enqueue")
            .id;
        let arrived = receiver.wait_for(&id).await;
        samples.push(arrived - sent);
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = server.cpu_seconds() - cpu;
    let rss = server.peak_rss_mib();
    server.stop().await;
    db.db.drop_database().await;
    Report {
        cpu_s_per_1000: Some(cpu * 1000.0 / count as f64),
        peak_rss_mib: Some(rss),
        note: "serial, idle server; enqueue call to receipt".into(),
        ..Report::new("latency", backend, count, seconds)
    }
    .latencies(samples)
}

/// `rate` enqueues a second for `duration`, whatever the server does
/// (open loop), to a receiver that takes 20 ms and answers every tenth
/// request 503. Reports successes per second over the window, first-attempt
/// latency, and the backlog left at the end.
pub async fn sustained(backend: Backend, rate: u64, duration: Duration) -> Report {
    let db = BenchDb::create(backend).await;
    let receiver = BenchReceiver::start(Behaviour {
        delay: Duration::from_millis(20),
        fail_every: 10,
    })
    .await;
    let server = BenchServer::start(&db, &wide_open()).await;
    let client = server.client().await;
    let url = receiver.url();
    let before = db.commits().await;
    let cpu = server.cpu_seconds();
    // Each accepted delivery: its id, when its enqueue call began, and how
    // long the call took.
    let sent: Arc<Mutex<Vec<(String, Instant, Duration)>>> = Arc::default();
    // Each enqueue call that failed: why.
    let failed: Arc<Mutex<Vec<String>>> = Arc::default();
    let started = Instant::now();
    // Every 10 ms, a tick's share of the rate, each enqueue its own task.
    let mut ticks = tokio::time::interval(Duration::from_millis(10));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let per_tick = (rate / 100).max(1);
    let total_ticks = (duration.as_millis() / 10) as u64;
    let mut offered = 0;
    let mut in_flight = tokio::task::JoinSet::new();
    for _ in 0..total_ticks {
        ticks.tick().await;
        for _ in 0..per_tick {
            offered += 1;
            let client = client.clone();
            let url = url.clone();
            let sent = Arc::clone(&sent);
            let failed = Arc::clone(&failed);
            in_flight.spawn(async move {
                let at = Instant::now();
                match event(&client, url).send().await {
                    Ok(enqueued) => sent.lock().unwrap().push((enqueued.id, at, at.elapsed())),
                    Err(error) => failed.lock().unwrap().push(error.to_string()),
                }
            });
        }
    }
    let window = started.elapsed().as_secs_f64();
    let succeeded = receiver.successes();
    let cpu = server.cpu_seconds() - cpu;
    let rss = server.peak_rss_mib();
    // The last calls may still be waiting for their commit.
    while in_flight.join_next().await.is_some() {}
    let store = db.store().await;
    let backlog = store.backlog().await.expect("backlog");
    store.close().await.expect("close");
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let accepted = sent.len() as u64;
    let samples: Vec<Duration> = sent
        .iter()
        .filter_map(|(id, at, _)| receiver.first_seen(id).map(|seen| seen - *at))
        .collect();
    let failed = std::mem::take(&mut *failed.lock().unwrap());
    let failures = failed.first().map_or_else(String::new, |first| {
        format!(
            "; {} enqueue calls failed, the first with: {first}",
            failed.len()
        )
    });
    let calls = Spread::of(sent.iter().map(|(_, _, call)| *call).collect()).map_or_else(
        String::new,
        |calls| {
            format!(
                "; enqueue call p50 {:.1} ms, p99 {:.1} ms",
                calls.p50_ms, calls.p99_ms
            )
        },
    );
    let unattempted = accepted - samples.len() as u64;
    server.stop().await;
    let after = db.commits().await;
    db.db.drop_database().await;
    Report {
        cpu_s_per_1000: Some(cpu * 1000.0 / accepted.max(1) as f64),
        peak_rss_mib: Some(rss),
        commits_per_delivery: commits_per(before, after, accepted),
        note: format!(
            "offered {:.0}/s ({offered}), accepted {accepted}; receiver 20 ms, every 10th 503; \
             at the end: {} due, {} retries waiting, {unattempted} never attempted; \
             latency = enqueue call to first arrival{calls}{failures}",
            offered as f64 / window,
            backlog.due,
            backlog.scheduled_retries
        ),
        ..Report::new("sustained", backend, succeeded, window)
    }
    .latencies(samples)
}
