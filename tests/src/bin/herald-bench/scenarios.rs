//! The scenarios. Each starts from a fresh database and returns what it
//! measured; none asserts anything. Herald runs with its defaults unless
//! a scenario's note names a setting it changed, and why.

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
    server::{BenchDb, BenchServer, Settle},
};

/// The body every benchmark delivery carries.
const EVENT: &[u8] = br#"{"type":"bench.event","id":1}"#;

/// Destinations the "many destinations" scenarios spread over.
const DESTINATIONS: usize = 100;

/// Herald's default for HERALD_CONCURRENCY: attempts in flight per replica.
const DEFAULT_CONCURRENCY: u64 = 128;

/// Herald's default for HERALD_DESTINATION_CONCURRENCY: attempts in
/// flight to one destination.
const DEFAULT_DESTINATION_CONCURRENCY: u64 = 16;

/// Deliveries per EnqueueBatch call when the bench floods through the API.
const BATCH: usize = 500;

/// An enqueue of the benchmark's event to `url`.
fn event(client: &Client, url: impl Into<String>) -> EnqueueBuilder {
    client.enqueue(url).body(EVENT.to_vec())
}

/// The same, due in an hour: the scheduler stays idle, so only accepting
/// deliveries is measured.
fn later(client: &Client, url: impl Into<String>) -> EnqueueBuilder {
    event(client, url).not_before(std::time::SystemTime::now() + Duration::from_secs(3600))
}

/// The benchmark's event to `url` as the store takes it (the default
/// tenant, 5 attempts).
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
        max_attempts_chosen: true,
        not_before_ms: None,
        deadline_ms: None,
        trace: None,
        event: None,
    }
}

/// Queues `count` deliveries to `url`, 1,000 per transaction.
async fn prequeue(store: &Store, url: &str, count: u64) {
    prequeue_spread(store, &[url.to_owned()], count).await;
}

/// Queues `count` deliveries spread round-robin over `urls`, 1,000 per
/// transaction, through the store (no server running).
async fn prequeue_spread(store: &Store, urls: &[String], count: u64) {
    let mut queued = 0;
    while queued < count {
        let chunk = (count - queued).min(1000);
        let batch: Vec<NewDelivery> = (queued..queued + chunk)
            .map(|i| delivery(round_robin(urls, i)))
            .collect();
        for result in store.enqueue_batch(&batch).await.expect("queue a batch") {
            result.expect("queued");
        }
        queued += chunk;
    }
}

/// Enqueues `count` deliveries spread round-robin over `urls` through
/// EnqueueBatch calls of [`BATCH`], one call after another, as `client`'s
/// tenant.
async fn enqueue_spread(client: &Client, urls: &[String], count: u64) {
    let mut sent = 0;
    while sent < count {
        let chunk = (count - sent).min(BATCH as u64);
        let items = (sent..sent + chunk).map(|i| event(client, round_robin(urls, i)));
        for result in client.enqueue_batch(items).await.expect("batch") {
            result.expect("accepted");
        }
        sent += chunk;
    }
}

/// The `i`-th delivery's URL when deliveries go round-robin over `urls`.
fn round_robin(urls: &[String], i: u64) -> &str {
    &urls[(i % urls.len() as u64) as usize]
}

/// `count` enqueues to `receiver`, one after another, each waiting until
/// the receiver saw it: enqueue call to receipt, per delivery.
async fn probe(client: &Client, receiver: &BenchReceiver, count: u64) -> Vec<Duration> {
    let url = receiver.url();
    let mut samples = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let sent = Instant::now();
        let id = event(client, url.clone()).send().await.expect("enqueue").id;
        let arrived = receiver.wait_for(&id).await;
        samples.push(arrived - sent);
    }
    samples
}

/// How `count` deliveries ended, as WatchOutcomes told it.
#[derive(Debug, Clone, Copy)]
struct Finished {
    /// Deliveries that succeeded.
    succeeded: u64,
    /// Deliveries Herald gave up on.
    dead_lettered: u64,
    /// When the last of them ended.
    last: Instant,
}

/// Waits until `count` deliveries of `client`'s tenant succeeded or were
/// dead-lettered, reading outcomes recorded after feed sequence `after`.
async fn await_finished(client: &Client, after: u64, count: u64) -> Finished {
    let mut outcomes = client
        .watch_outcomes(
            WatchOptions::default()
                .after(after)
                .kinds([OutcomeKind::Succeeded, OutcomeKind::DeadLettered]),
        )
        .await
        .expect("watch");
    let mut finished = Finished {
        succeeded: 0,
        dead_lettered: 0,
        last: Instant::now(),
    };
    while finished.succeeded + finished.dead_lettered < count {
        let outcome = outcomes
            .next()
            .await
            .expect("stream open")
            .expect("outcome");
        if outcome.kind == OutcomeKind::Succeeded {
            finished.succeeded += 1;
        } else {
            finished.dead_lettered += 1;
        }
        finished.last = Instant::now();
    }
    finished
}

/// `"; N dead-lettered"` when some were, for a note.
fn dead_letters(finished: &Finished) -> String {
    if finished.dead_lettered == 0 {
        String::new()
    } else {
        format!("; {} dead-lettered", finished.dead_lettered)
    }
}

/// Commits per delivery between two counts (PostgreSQL).
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

/// A backlog queued before the server starts, then delivered to a
/// receiver: what burn-down, burn-down-one and hot-destination share.
struct Drain {
    /// The scenario's name.
    name: &'static str,
    /// Deliveries queued and measured.
    count: u64,
    /// Deliveries already finished (with their attempts and outcomes)
    /// before the run.
    finished: u64,
    /// Destinations (receiver ports) the backlog spreads over.
    destinations: usize,
    /// How the receiver answers.
    behaviour: Behaviour,
}

/// Queues `drain`'s backlog, starts the server with its defaults and
/// times it from serving to the last delivery recorded (seen on
/// WatchOutcomes). Fills everything but the note.
async fn drain(backend: Backend, drain: Drain) -> (Report, Finished) {
    let db = BenchDb::create(backend).await;
    let receiver = BenchReceiver::start_many(drain.behaviour, drain.destinations).await;
    let urls = receiver.urls();
    let store = db.store().await;
    let feed_start = if drain.finished > 0 {
        prequeue_spread(&store, &urls, drain.finished).await;
        db.finish_everything().await
    } else {
        0
    };
    prequeue_spread(&store, &urls, drain.count).await;
    store.close().await.expect("close");
    let before = db.stats(Settle::Closed).await;
    let server = BenchServer::start(&db, &[]).await;
    let started = Instant::now();
    let cpu = server.cpu_seconds();
    let client = server.client().await;
    let finished = await_finished(&client, feed_start, drain.count).await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = server.cpu_seconds() - cpu;
    let rss = server.peak_rss_mib();
    // Stopped first, so that its connections report their counts.
    server.stop().await;
    let after = db.stats(Settle::Closed).await;
    db.db.drop_database().await;
    let report = Report::new(drain.name, backend, drain.count, seconds)
        .server_costs(cpu, rss, drain.count)
        .database_costs(before, after, drain.count);
    (report, finished)
}

/// `"; N finished rows before"` when the run began on a grown database.
fn grown(finished: u64) -> String {
    if finished == 0 {
        String::new()
    } else {
        format!("; {finished} finished rows before")
    }
}

/// `count` deliveries queued round-robin over 100 destinations (after
/// `finished` ones already delivered), then delivered to receivers
/// answering 204 at once: deliveries per second with many destinations.
pub async fn burn_down(backend: Backend, count: u64, finished: u64) -> Report {
    let (report, ended) = drain(
        backend,
        Drain {
            name: "burn-down",
            count,
            finished,
            destinations: DESTINATIONS,
            behaviour: Behaviour::default(),
        },
    )
    .await;
    Report {
        note: format!(
            "{DESTINATIONS} destinations round-robin, receivers answer 204 at once{}{}",
            grown(finished),
            dead_letters(&ended)
        ),
        ..report
    }
}

/// The same backlog, every delivery to one destination answering 204 at
/// once: what the default per-destination limit leaves of it.
pub async fn burn_down_one(backend: Backend, count: u64, finished: u64) -> Report {
    let (report, ended) = drain(
        backend,
        Drain {
            name: "burn-down-one",
            count,
            finished,
            destinations: 1,
            behaviour: Behaviour::default(),
        },
    )
    .await;
    Report {
        note: format!(
            "one destination answering 204 at once, at most \
             {DEFAULT_DESTINATION_CONCURRENCY} in flight to it (the default){}{}",
            grown(finished),
            dead_letters(&ended)
        ),
        ..report
    }
}

/// `count` deliveries queued to one destination that answers after
/// 20 ms: at the default 16 in flight per destination, at most 800/s.
/// Reports the share of that bound reached, and the row writes each
/// delivery cost.
pub async fn hot_destination(backend: Backend, count: u64) -> Report {
    let delay = Duration::from_millis(20);
    let (report, ended) = drain(
        backend,
        Drain {
            name: "hot-destination",
            count,
            finished: 0,
            destinations: 1,
            behaviour: Behaviour::slow(delay),
        },
    )
    .await;
    let bound = DEFAULT_DESTINATION_CONCURRENCY as f64 / delay.as_secs_f64();
    Report {
        note: format!(
            "one destination answering after 20 ms; {DEFAULT_DESTINATION_CONCURRENCY} in flight \
             (the default) allow {bound:.0}/s: reached {:.0}%{}",
            report.per_second / bound * 100.0,
            dead_letters(&ended)
        ),
        ..report
    }
}

/// `concurrency` callers of unary Enqueue, `count` calls in all; then the
/// same number of deliveries through EnqueueBatch (8 callers, 100 each).
/// The deliveries are due in an hour, so the scheduler does not compete
/// for the two cores: this is what accepting costs.
pub async fn enqueue(backend: Backend, count: u64, concurrency: usize) -> Vec<Report> {
    let db = BenchDb::create(backend).await;
    let receiver = BenchReceiver::start(Behaviour::default()).await;
    let before = db.stats(Settle::Closed).await;
    let server = BenchServer::start(&db, &[]).await;
    let client = server.client().await;
    let url = receiver.url();

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
    let after = db.stats(Settle::Open).await;
    let samples = std::mem::take(&mut *latencies.lock().unwrap());
    let unary = Report {
        cpu_s_per_1000: Some(unary_cpu * 1000.0 / unary_calls as f64),
        note: format!("{concurrency} callers, unary; due in an hour, so acceptance only"),
        ..Report::new("enqueue", backend, unary_calls, seconds)
    }
    .database_costs(before, after, unary_calls)
    .latencies(samples);

    let before = after;
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
    let samples = std::mem::take(&mut *latencies.lock().unwrap());
    server.stop().await;
    let after = db.stats(Settle::Closed).await;
    db.db.drop_database().await;
    let batch = Report {
        note: "8 callers x 100 per batch, due in an hour; latency per batch call".into(),
        ..Report::new("enqueue-batch", backend, delivered, seconds)
    }
    .server_costs(batch_cpu, rss, delivered)
    .database_costs(before, after, delivered)
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
    let cpu = server.cpu_seconds();
    let started = Instant::now();
    let samples = probe(&client, &receiver, count).await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = server.cpu_seconds() - cpu;
    let rss = server.peak_rss_mib();
    server.stop().await;
    db.db.drop_database().await;
    Report {
        note: "serial, idle server; enqueue call to receipt".into(),
        ..Report::new("latency", backend, count, seconds)
    }
    .server_costs(cpu, rss, count)
    .latencies(samples)
}

/// An open-loop offered load: what sustained and sustained-one share.
struct Offer {
    /// The scenario's name.
    name: &'static str,
    /// Enqueues offered per second.
    rate: u64,
    /// How long the load is offered.
    duration: Duration,
    /// Destinations (receiver ports) the load spreads over, round-robin.
    destinations: usize,
    /// How the receiver answers.
    behaviour: Behaviour,
    /// The receiver, in words, for the note.
    described: &'static str,
}

/// `offer.rate` enqueues a second for `offer.duration`, whatever the
/// server does (open loop). Reports successes per second over the window,
/// enqueue-to-first-receipt latency, and the backlog left at the end.
async fn offer_load(backend: Backend, offer: Offer) -> Report {
    let db = BenchDb::create(backend).await;
    let receiver = BenchReceiver::start_many(offer.behaviour, offer.destinations).await;
    let before = db.stats(Settle::Closed).await;
    let server = BenchServer::start(&db, &[]).await;
    let client = server.client().await;
    let urls = Arc::new(receiver.urls());
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
    let per_tick = (offer.rate / 100).max(1);
    let total_ticks = (offer.duration.as_millis() / 10) as u64;
    let mut offered = 0;
    let mut in_flight = tokio::task::JoinSet::new();
    for _ in 0..total_ticks {
        ticks.tick().await;
        for _ in 0..per_tick {
            let client = client.clone();
            let urls = Arc::clone(&urls);
            let sent = Arc::clone(&sent);
            let failed = Arc::clone(&failed);
            in_flight.spawn(async move {
                let at = Instant::now();
                match event(&client, round_robin(&urls, offered)).send().await {
                    Ok(enqueued) => sent.lock().unwrap().push((enqueued.id, at, at.elapsed())),
                    Err(error) => failed.lock().unwrap().push(error.to_string()),
                }
            });
            offered += 1;
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
    let after = db.stats(Settle::Closed).await;
    db.db.drop_database().await;
    Report {
        note: format!(
            "offered {:.0}/s ({offered}), accepted {accepted}; {}; \
             at the end: {} due, {} retries waiting, {unattempted} never attempted; \
             latency = enqueue call to first arrival{calls}{failures}",
            offered as f64 / window,
            offer.described,
            backlog.due,
            backlog.scheduled_retries
        ),
        ..Report::new(offer.name, backend, succeeded, window)
    }
    .server_costs(cpu, rss, accepted)
    .database_costs(before, after, accepted)
    .latencies(samples)
}

/// `rate` enqueues a second for `duration`, round-robin over 100
/// destinations whose receivers take 20 ms and answer every tenth request
/// 503.
pub async fn sustained(backend: Backend, rate: u64, duration: Duration) -> Report {
    offer_load(
        backend,
        Offer {
            name: "sustained",
            rate,
            duration,
            destinations: DESTINATIONS,
            behaviour: Behaviour {
                delay: Duration::from_millis(20),
                fail_every: 10,
                fail_until: None,
            },
            described: "100 destinations round-robin, receivers 20 ms, every 10th 503",
        },
    )
    .await
}

/// `rate` enqueues a second for `duration`, all to one destination that
/// answers 204 at once.
pub async fn sustained_one(backend: Backend, rate: u64, duration: Duration) -> Report {
    offer_load(
        backend,
        Offer {
            name: "sustained-one",
            rate,
            duration,
            destinations: 1,
            behaviour: Behaviour::default(),
            described: "one destination answering 204 at once",
        },
    )
    .await
}

/// How long the failing destination answers 503, from the server's start.
const OUTAGE: Duration = Duration::from_secs(30);

/// `count` deliveries to one endpoint that answers 503 for the first 30 s
/// after the server starts, then 204; retries back off from 1 s to at
/// most 10 s. Reports the requests the endpoint took while failing, the
/// seconds from its recovery until every delivery succeeded (the seconds
/// column), and the deliveries dead-lettered.
pub async fn failing_destination(backend: Backend, count: u64) -> Report {
    let db = BenchDb::create(backend).await;
    let settings = [
        ("HERALD_RETRY_MIN_BACKOFF", "1s".to_owned()),
        ("HERALD_RETRY_MAX_BACKOFF", "10s".to_owned()),
    ];
    let server = BenchServer::start(&db, &settings).await;
    let recovery = Instant::now() + OUTAGE;
    let receiver = BenchReceiver::start(Behaviour {
        fail_until: Some(recovery),
        ..Behaviour::default()
    })
    .await;
    let client = server.client().await;
    enqueue_spread(&client, &receiver.urls(), count).await;
    let finished = await_finished(&client, 0, count).await;
    let during_outage = receiver
        .arrivals()
        .iter()
        .filter(|at| **at < recovery)
        .count();
    let seconds = finished
        .last
        .saturating_duration_since(recovery)
        .as_secs_f64();
    server.stop().await;
    db.db.drop_database().await;
    Report {
        note: format!(
            "one destination answering 503 for the first {}s, then 204; it took \
             {during_outage} requests while failing; every delivery ended {seconds:.1}s after \
             it recovered (seconds); {} dead-lettered; HERALD_RETRY_MIN_BACKOFF=1s and \
             HERALD_RETRY_MAX_BACKOFF=10s (defaults 5s, 6h), so that retries fall within \
             the outage",
            OUTAGE.as_secs(),
            finished.dead_lettered
        ),
        ..Report::new("failing-destination", backend, finished.succeeded, seconds)
    }
}

/// How long tenant A's receivers take to answer.
const SLOW: Duration = Duration::from_millis(500);

/// Tenant B's probes, one after another.
const PROBES: u64 = 20;

/// What one run of tenant A's flood measured.
struct Flood {
    /// Seconds from the flood's first enqueue until all of it succeeded.
    seconds: f64,
    /// Tenant B's enqueue-to-receipt latencies, when B probed.
    probes: Vec<Duration>,
}

/// On a fresh database with tenants A and B, A enqueues `count`
/// deliveries round-robin over `slow`'s destinations (EnqueueBatch);
/// once they are queued, B, if given a receiver, enqueues its probes to
/// it one at a time. Timed until all of A's succeeded.
async fn flood(
    backend: Backend,
    count: u64,
    slow: &BenchReceiver,
    probed: Option<&BenchReceiver>,
) -> Flood {
    let db = BenchDb::create(backend).await;
    let a_key = db.create_tenant("tenant-a");
    let b_key = db.create_tenant("tenant-b");
    let server = BenchServer::start(&db, &[]).await;
    let a = server.client_as(&a_key).await;
    let started = Instant::now();
    let watching = tokio::spawn({
        let a = a.clone();
        async move { await_finished(&a, 0, count).await }
    });
    enqueue_spread(&a, &slow.urls(), count).await;
    let probes = match probed {
        Some(receiver) => probe(&server.client_as(&b_key).await, receiver, PROBES).await,
        None => Vec::new(),
    };
    let finished = watching.await.expect("watching tenant A");
    server.stop().await;
    db.db.drop_database().await;
    Flood {
        seconds: (finished.last - started).as_secs_f64(),
        probes,
    }
}

/// Tenant A floods 100 slow destinations (receivers answering after
/// 500 ms), enough to hold every permit: first alone, then, on a fresh
/// database, with tenant B probing a fast destination one delivery at a
/// time once A's backlog is queued. Two reports: A alone, and A with B
/// (B's latency in the latency columns, A's throughput against alone in
/// the note).
pub async fn tenant_fairness(backend: Backend, count: u64) -> Vec<Report> {
    let slow = BenchReceiver::start_many(Behaviour::slow(SLOW), DESTINATIONS).await;
    let fast = BenchReceiver::start(Behaviour::default()).await;
    let solo = flood(backend, count, &slow, None).await;
    let shared = flood(backend, count, &slow, Some(&fast)).await;
    let bound = DEFAULT_CONCURRENCY as f64 / SLOW.as_secs_f64();
    let alone = Report {
        note: format!(
            "tenant A alone: {count} deliveries over {DESTINATIONS} destinations answering \
             after 500 ms (EnqueueBatch); {DEFAULT_CONCURRENCY} in flight (the default) \
             allow {bound:.0}/s"
        ),
        ..Report::new("tenant-fairness-alone", backend, count, solo.seconds)
    };
    let with_b = Report::new("tenant-fairness", backend, count, shared.seconds);
    let note = format!(
        "tenant A's flood as above, and once it was queued tenant B's {PROBES} serial \
         probes to a fast destination: latency = B's enqueue to receipt; A's throughput \
         with B is {:.2}x alone ({:.0}/s vs {:.0}/s)",
        with_b.per_second / alone.per_second,
        with_b.per_second,
        alone.per_second
    );
    vec![alone, Report { note, ..with_b }.latencies(shared.probes)]
}

/// The per-destination rate limit the rate-limit scenario sets, per second.
const RATE_LIMIT: u64 = 50;

/// Herald's default for HERALD_DESTINATION_RATE_BURST: requests a
/// destination may take at once above its steady rate.
const DEFAULT_RATE_BURST: u64 = 1;

/// Two replicas on one PostgreSQL database (one on SQLite), each with a
/// rate limit of 50/s per destination, draining a backlog to one
/// destination answering at once for `duration`. Reports the rate
/// delivered over the window and the most requests in any one second.
pub async fn rate_limit(backend: Backend, duration: Duration) -> Report {
    let db = BenchDb::create(backend).await;
    let receiver = BenchReceiver::start(Behaviour::default()).await;
    // A third more than the limit lets through in the window: the limit,
    // not the offer, bounds the rate.
    let backlog = (RATE_LIMIT * duration.as_secs() * 4 / 3).max(1);
    let store = db.store().await;
    prequeue(&store, &receiver.url(), backlog).await;
    store.close().await.expect("close");
    let (replicas, described) = match backend {
        Backend::Postgres => (2, "2 replicas on one database, each"),
        Backend::Sqlite => (1, "1 replica (two need PostgreSQL)"),
    };
    let settings = [("HERALD_DESTINATION_RATE_LIMIT", format!("{RATE_LIMIT}/s"))];
    let started = Instant::now();
    let mut servers = Vec::with_capacity(replicas);
    for _ in 0..replicas {
        servers.push(BenchServer::start(&db, &settings).await);
    }
    let end = started + duration;
    tokio::time::sleep_until(end.into()).await;
    for server in servers {
        server.stop().await;
    }
    db.db.drop_database().await;
    let mut arrivals: Vec<Instant> = receiver
        .arrivals()
        .into_iter()
        .filter(|at| *at < end)
        .collect();
    arrivals.sort();
    let delivered = arrivals.len() as u64;
    let most = most_within(&arrivals, Duration::from_secs(1));
    Report {
        note: format!(
            "{described} with HERALD_DESTINATION_RATE_LIMIT={RATE_LIMIT}/s (default \
             off) to measure the limit; one destination answering at once, {backlog} queued; \
             most in any 1 s: {most} (limit + default burst = {})",
            RATE_LIMIT + DEFAULT_RATE_BURST
        ),
        ..Report::new("rate-limit", backend, delivered, duration.as_secs_f64())
    }
}

/// The most of the sorted `arrivals` within any span shorter than `window`.
fn most_within(arrivals: &[Instant], window: Duration) -> usize {
    let mut first = 0;
    let mut most = 0;
    for (last, at) in arrivals.iter().enumerate() {
        while at.duration_since(arrivals[first]) >= window {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    most
}
