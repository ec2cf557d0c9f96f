//! Destinations end to end: each receiver gets at most its in-flight limit
//! and its rate, FIFO; a failing one is probed, not hammered, and its
//! waiting deliveries use no attempts; a receiver that asks to slow down
//! slows its whole destination; one that fails for too long is disabled;
//! one tenant's flood does not hold up another; a busy destination's
//! slots, passed from each delivery to the next, keep to its limit and
//! heed a lowered limit or a pause, which also reaches the deliveries
//! they leased ahead; and on PostgreSQL two replicas share every limit,
//! the circuit, and a pause that reaches what either leased ahead.

use std::{collections::HashMap, time::Duration};

use futures::StreamExt;
use herald_client::{Client, WatchOptions};
use herald_proto::v1::{DeliveryState, EnqueueRequest, Outcome, OutcomeKind};
use herald_tests::{
    Backend, HeraldProcess, PATIENCE, Receiver, Recorded, Reply, TestDb, TestHerald, accepted,
    create_tenant, next_outcomes, on_both_backends, test_config,
};
use tonic::Code;

use crate::{
    HERALD,
    faults::{enqueue_many, settings},
};

on_both_backends!(
    a_destination_never_has_more_than_its_limit_in_flight,
    a_rate_limit_spaces_a_destination_out,
    a_failing_destination_is_probed_not_hammered,
    a_receiver_asking_to_slow_down_holds_its_whole_destination,
    a_destination_failing_too_long_is_disabled,
    one_tenants_flood_does_not_hold_up_another,
    a_busy_destination_stays_within_its_limit_as_slots_pass_on,
    a_lowered_limit_and_a_pause_reach_slots_that_pass_on,
    a_pause_reaches_deliveries_leased_ahead,
    a_delivery_due_before_a_busy_backlog_is_not_left_behind,
);

/// Enqueues `count` deliveries to `url` in one batch; their ids in order.
async fn enqueue(herald: &TestHerald, url: &str, count: usize, max_attempts: u32) -> Vec<String> {
    let deliveries = (0..count)
        .map(|n| EnqueueRequest {
            url: url.to_owned(),
            body: format!("{n}").into_bytes(),
            max_attempts: Some(max_attempts),
            ..Default::default()
        })
        .collect();
    herald
        .enqueue_batch(deliveries)
        .await
        .into_iter()
        .map(|result| accepted(&result).expect("accepted").id.clone())
        .collect()
}

/// The `webhook-id`s of `requests`, in arrival order.
fn ids(requests: &[Recorded]) -> Vec<String> {
    requests
        .iter()
        .map(|request| request.header("webhook-id").to_owned())
        .collect()
}

/// FIFO within a destination: no delivery of `arrived` overtakes `width`
/// or more of those enqueued before it (`enqueued`, in order).
fn assert_fifo_within(arrived: &[String], enqueued: &[String], width: usize) {
    for (position, id) in arrived.iter().enumerate() {
        let index = enqueued.iter().position(|x| x == id).unwrap();
        assert!(
            position.abs_diff(index) < width,
            "delivery {index} arrived {position}th: {arrived:?}"
        );
    }
}

/// The most of `requests` that arrived within any one `window`.
fn most_within(requests: &[Recorded], window: Duration) -> usize {
    let times: Vec<_> = requests.iter().map(|request| request.at).collect();
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|at| **at < times[i] + window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// The SDK on `herald`.
async fn sdk(herald: &TestHerald) -> Client {
    Client::connect(format!("http://{}", herald.addr()))
        .await
        .expect("connect")
}

/// Reads outcomes from `stream` until one of `kind` arrives; returns all
/// read, that one last.
async fn until_kind(
    stream: &mut tonic::Streaming<herald_proto::v1::WatchOutcomesResponse>,
    kind: OutcomeKind,
) -> Vec<Outcome> {
    let mut seen = Vec::new();
    loop {
        let outcome = next_outcomes(stream, 1).await.remove(0);
        let done = outcome.kind == i32::from(kind);
        seen.push(outcome);
        if done {
            return seen;
        }
    }
}

async fn a_destination_never_has_more_than_its_limit_in_flight(backend: Backend) {
    let Some(herald) = TestHerald::start_with(backend, |c| c.destination_concurrency = 3).await
    else {
        return;
    };
    let held = Receiver::start().await;
    held.hold("/held");
    let other = Receiver::start().await;
    let ids_in_order = enqueue(&herald, &held.url("/held"), 10, 5).await;
    held.wait_for("/held", 3).await;
    // Another destination still flows; once its delivery is done, claims
    // have come and gone while the full one stayed full.
    let marker = herald.post(other.url("/marker"), b"{}").await;
    herald.wait_terminal(&marker).await;
    let in_flight = held.requests("/held");
    assert_eq!(in_flight.len(), 3, "never more than the limit in flight");
    let mut first: Vec<String> = ids(&in_flight);
    first.sort();
    let mut oldest = ids_in_order[..3].to_vec();
    oldest.sort();
    assert_eq!(first, oldest, "the oldest go first");
    for id in &ids_in_order[3..] {
        assert_eq!(
            herald.get(id).await.attempt_count,
            0,
            "waiting uses no attempts"
        );
    }
    held.open_gate();
    for id in &ids_in_order {
        let delivery = herald.wait_terminal(id).await;
        assert_eq!(delivery.state, i32::from(DeliveryState::Succeeded));
        assert_eq!(delivery.attempt_count, 1);
    }
    // FIFO within the destination: nothing overtakes more than the
    // limit's width of deliveries enqueued before it.
    let arrived = ids(&held.requests("/held"));
    assert_eq!(arrived.len(), 10, "each sent once");
    assert_fifo_within(&arrived, &ids_in_order, 3);
    herald.stop().await;
}

/// A receiver busy for a while with each request keeps every slot of its
/// destination going from one delivery to the next: never more than the
/// limit open at once, each sent once, FIFO within the limit's width.
async fn a_busy_destination_stays_within_its_limit_as_slots_pass_on(backend: Backend) {
    let Some(herald) = TestHerald::start_with(backend, |c| c.destination_concurrency = 3).await
    else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.slow("/busy", Duration::from_millis(15));
    let ids_in_order = enqueue(&herald, &receiver.url("/busy"), 60, 1).await;
    for id in &ids_in_order {
        let delivery = herald.wait_terminal(id).await;
        assert_eq!(delivery.state, i32::from(DeliveryState::Succeeded));
        assert_eq!(delivery.attempt_count, 1);
    }
    let arrived = receiver.requests("/busy");
    assert_eq!(arrived.len(), 60, "each sent once");
    let most = arrived.iter().map(|request| request.open).max().unwrap();
    assert!(most <= 3, "{most} open at once with a limit of 3");
    let arrived = ids(&arrived);
    assert_fifo_within(&arrived, &ids_in_order, 3);
    herald.stop().await;
}

/// A busy destination's slots pass from delivery to delivery without a
/// claim; an operator lowering its limit or pausing it still takes effect
/// at the next pass.
async fn a_lowered_limit_and_a_pause_reach_slots_that_pass_on(backend: Backend) {
    let Some(herald) = TestHerald::start_with(backend, |c| c.destination_concurrency = 3).await
    else {
        return;
    };
    let client = sdk(&herald).await;
    let receiver = Receiver::start().await;
    let url = receiver.url("/busy");
    receiver.slow("/busy", Duration::from_millis(150));
    let ids_in_order = enqueue(&herald, &url, 24, 1).await;
    receiver.wait_for("/busy", 3).await;
    client
        .set_destination_policy(&url)
        .max_in_flight(1)
        .send()
        .await
        .expect("lower the limit");
    // The three in flight when it was lowered finish; from then on, one
    // at a time.
    let arrived = receiver.wait_for("/busy", 9).await;
    for request in &arrived[6..] {
        assert_eq!(request.open, 1, "one at a time once the limit is 1");
    }
    client
        .pause_destination(&url, "deploy")
        .await
        .expect("pause");
    pause_is_kept(&herald, &client, &receiver, &ids_in_order, 1).await;
    let arrived = receiver.requests("/busy");
    assert!(arrived[6..].iter().all(|request| request.open == 1));
    herald.stop().await;
}

/// Slots that came to their deliveries from a success lease the next one
/// while their attempts are in flight; a pause landing then gives those
/// back instead of sending them, their attempts uncounted.
async fn a_pause_reaches_deliveries_leased_ahead(backend: Backend) {
    let Some(herald) = TestHerald::start_with(backend, |c| c.destination_concurrency = 4).await
    else {
        return;
    };
    let receiver = Receiver::start().await;
    let url = receiver.url("/busy");
    receiver.slow("/busy", Duration::from_millis(150));
    let ids_in_order = enqueue(&herald, &url, 40, 1).await;
    // The third round is in flight, its slots with the fourth leased.
    receiver.wait_for("/busy", 12).await;
    let client = sdk(&herald).await;
    client
        .pause_destination(&url, "deploy")
        .await
        .expect("pause");
    pause_is_kept(&herald, &client, &receiver, &ids_in_order, 1).await;
    herald.stop().await;
}

/// A delivery due before the rows a busy destination's slots are passing
/// through (its not-before time lies in the past) goes out while they are
/// still being sent, not after the last of them.
async fn a_delivery_due_before_a_busy_backlog_is_not_left_behind(backend: Backend) {
    let Some(herald) = TestHerald::start_with(backend, |c| c.destination_concurrency = 3).await
    else {
        return;
    };
    let receiver = Receiver::start().await;
    let url = receiver.url("/busy");
    receiver.slow("/busy", Duration::from_millis(10));
    let backlog = enqueue(&herald, &url, 600, 1).await;
    receiver.wait_for("/busy", 30).await;
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    let early = herald
        .enqueue(EnqueueRequest {
            url: url.clone(),
            not_before_time: Some(prost_types::Timestamp::from(an_hour_ago)),
            ..Default::default()
        })
        .await;
    let delivered = herald.wait_terminal(&early).await;
    assert_eq!(delivered.state, i32::from(DeliveryState::Succeeded));
    let last = backlog.last().expect("a backlog");
    assert!(
        !ids(&receiver.requests("/busy")).contains(last),
        "the delivery due first went out after the whole backlog"
    );
    for id in &backlog {
        herald.wait_terminal(id).await;
    }
    herald.stop().await;
}

/// After a pause through `operator` of the destination `receiver`'s
/// `/busy` stands for: what was in flight finishes, at most one more per
/// replica of `replicas` (passed on as the pause landed, or as it reached
/// that replica) is sent, nothing else is, and what
/// waits has used no attempts; after a resume, every delivery of
/// `ids_in_order` succeeds. `watcher` is any replica.
async fn pause_is_kept(
    watcher: &TestHerald,
    operator: &Client,
    receiver: &Receiver,
    ids_in_order: &[String],
    replicas: usize,
) {
    let at_pause = ids(&receiver.requests("/busy"));
    for id in &at_pause {
        watcher.wait_terminal(id).await;
    }
    // A delivery elsewhere gives every slot time to act on the pause.
    let other = Receiver::start().await;
    let marker = watcher.post(other.url("/marker"), b"{}").await;
    watcher.wait_terminal(&marker).await;
    for id in ids(&receiver.requests("/busy")) {
        watcher.wait_terminal(&id).await;
    }
    let marker = watcher.post(other.url("/marker"), b"{}").await;
    watcher.wait_terminal(&marker).await;
    let sent = ids(&receiver.requests("/busy"));
    assert!(
        sent.len() <= at_pause.len() + replicas,
        "{} sent after the pause",
        sent.len() - at_pause.len()
    );
    for id in ids_in_order.iter().filter(|id| !sent.contains(id)) {
        assert_eq!(
            watcher.get(id).await.attempt_count,
            0,
            "waiting, or leased ahead and given back, uses no attempts"
        );
    }
    operator
        .resume_destination(&receiver.url("/busy"))
        .await
        .expect("resume");
    for id in ids_in_order {
        let delivery = watcher.wait_terminal(id).await;
        assert_eq!(delivery.state, i32::from(DeliveryState::Succeeded));
        assert_eq!(delivery.attempt_count, 1, "sent once");
    }
}

async fn a_rate_limit_spaces_a_destination_out(backend: Backend) {
    let Some(herald) = TestHerald::start_with(backend, |c| {
        c.destination_rate_limit = "5/s".parse().unwrap();
        c.destination_rate_burst = 1;
    })
    .await
    else {
        return;
    };
    let receiver = Receiver::start().await;
    let ids_in_order = enqueue(&herald, &receiver.url("/limited"), 8, 5).await;
    let arrived = receiver.wait_for("/limited", 8).await;
    // Claims keep to the rate plus the burst (6 in any second); what the
    // receiver sees may bunch by the jitter between claim and send, so
    // one more is allowed for that. A limiter that let them through would
    // deliver all 8 within milliseconds.
    assert!(
        most_within(&arrived, Duration::from_secs(1)) <= 7,
        "at most the rate plus the burst in any second: {:?}",
        arrived.iter().map(|r| r.at).collect::<Vec<_>>()
    );
    let span = arrived[7].at - arrived[0].at;
    assert!(span >= Duration::from_secs(1), "8 at 5/s took {span:?}");
    assert_eq!(ids(&arrived), ids_in_order, "and in order");
    for id in &ids_in_order {
        assert_eq!(
            herald.get(id).await.attempt_count,
            1,
            "waiting used no attempts"
        );
    }
    herald.stop().await;
}

/// Requests between the circuit's first opening and its closing are its
/// probes (one per reopening, then the one that succeeded) and the
/// attempts already in flight when it opened (at most `in_flight`).
fn assert_only_probes(outcomes: &[Outcome], requests_while_open: usize, in_flight: usize) {
    let opened = outcomes
        .iter()
        .filter(|o| o.kind == i32::from(OutcomeKind::CircuitOpened))
        .count();
    assert!(opened >= 1, "the circuit opened: {outcomes:?}");
    // The first opening, then one reopening per failed probe.
    let probes = opened - 1 + 1;
    assert!(
        requests_while_open <= probes + in_flight,
        "{requests_while_open} requests while open, {probes} probes: {outcomes:?}"
    );
}

async fn a_failing_destination_is_probed_not_hammered(backend: Backend) {
    let Some(herald) = TestHerald::start_with(backend, |c| {
        c.destination_concurrency = 2;
        c.circuit_failure_threshold = 3;
        c.circuit_cooldown = Duration::from_millis(100);
        c.circuit_cooldown_max = Duration::from_millis(400);
    })
    .await
    else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.script("/down", vec![Reply::Status(503); 8]);
    let mut outcomes = herald.watch_live().await;
    let ids_in_order = enqueue(&herald, &receiver.url("/down"), 10, 30).await;
    let before_open = until_kind(&mut outcomes, OutcomeKind::CircuitOpened).await;
    let opened = before_open.last().unwrap().clone();
    assert!(opened.delivery_id.is_empty(), "a destination's event");
    assert_eq!(
        opened.destination,
        receiver.url("").trim_end_matches('/'),
        "names the destination"
    );
    let at_open = receiver.requests("/down").len();
    let mut while_open = until_kind(&mut outcomes, OutcomeKind::CircuitClosed).await;
    let at_close = receiver.requests("/down").len();
    while_open.insert(0, opened);
    assert_only_probes(&while_open, at_close - at_open, 2);
    for id in &ids_in_order {
        let delivery = herald.wait_terminal(id).await;
        assert_eq!(delivery.state, i32::from(DeliveryState::Succeeded));
    }
    let sent = receiver.requests("/down").len();
    assert_eq!(sent, 8 + 10, "the 8 failures, then one success each");
    herald.stop().await;
}

async fn a_receiver_asking_to_slow_down_holds_its_whole_destination(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.script(
        "/busy",
        [Reply::WithHeaders(429, vec![("retry-after", "1".into())])],
    );
    let mut outcomes = herald.watch_live().await;
    let first = herald.post(receiver.url("/busy"), b"1").await;
    let refused = receiver.wait_for("/busy", 1).await[0].at;
    until_kind(&mut outcomes, OutcomeKind::RetryScheduled).await;
    // Another delivery to the same destination waits out the hold too.
    let second = herald.post(receiver.url("/other-path"), b"2").await;
    let later = receiver.wait_for("/other-path", 1).await[0].at;
    assert!(
        later - refused >= Duration::from_millis(950),
        "sent {:?} after the 429",
        later - refused
    );
    for id in [first, second] {
        let delivery = herald.wait_terminal(&id).await;
        assert_eq!(delivery.state, i32::from(DeliveryState::Succeeded));
    }
    herald.stop().await;
}

async fn a_destination_failing_too_long_is_disabled(backend: Backend) {
    let Some(herald) = TestHerald::start_with(backend, |c| {
        c.destination_disable_after = Duration::from_millis(500);
        // The circuit stays closed, so failures keep coming, slowly enough
        // that no delivery runs out of attempts (100 of them take 10 s and
        // more) before the health written every two seconds disables it.
        c.circuit_failure_threshold = 10_000;
        c.retry_min_backoff = Duration::from_millis(100);
        c.retry_max_backoff = Duration::from_millis(200);
    })
    .await
    else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.script("/gone", vec![Reply::Status(503); 10_000]);
    let mut outcomes = herald.watch_live().await;
    let ids_in_order = enqueue(&herald, &receiver.url("/gone"), 3, 100).await;
    let seen = until_kind(&mut outcomes, OutcomeKind::DestinationDisabled).await;
    let disabled = seen.last().unwrap();
    assert!(
        disabled.error_message.contains("without a single success"),
        "{disabled:?}"
    );
    for id in &ids_in_order {
        let delivery = herald.wait_terminal(id).await;
        assert_eq!(delivery.state, i32::from(DeliveryState::DeadLettered));
        assert!(delivery.last_error.contains("disabled"), "{delivery:?}");
    }
    let refused = herald
        .client()
        .enqueue(EnqueueRequest {
            url: receiver.url("/gone"),
            ..Default::default()
        })
        .await
        .expect_err("a disabled destination refuses new deliveries");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .contains(&receiver.url("").trim_end_matches('/').to_owned())
            && refused.message().contains("herald destinations enable"),
        "{}",
        refused.message()
    );
    herald.stop().await;
}

async fn one_tenants_flood_does_not_hold_up_another(backend: Backend) {
    let Some(herald) = TestHerald::start_with(backend, |c| {
        c.concurrency = 4;
        c.destination_concurrency = 4;
    })
    .await
    else {
        return;
    };
    let flood_key = create_tenant(HERALD, herald.database_url(), "flood").api_key;
    let quiet_key = create_tenant(HERALD, herald.database_url(), "quiet").api_key;
    let connect = |key: String| {
        let addr = herald.addr();
        async move {
            Client::connect(format!("http://{addr}"))
                .await
                .expect("connect")
                .with_api_key(&key)
                .expect("a valid key")
        }
    };
    let (flood, quiet) = (connect(flood_key).await, connect(quiet_key).await);
    let slow = [Receiver::start().await, Receiver::start().await];
    for receiver in &slow {
        receiver.hold("/flood");
    }
    let batch = (0..40).map(|n| {
        flood
            .enqueue(slow[n % 2].url("/flood"))
            .body(b"{}".to_vec())
    });
    for result in flood.enqueue_batch(batch).await.expect("batch") {
        result.expect("accepted");
    }
    // The flood holds every permit.
    loop {
        let seen: Vec<usize> = slow.iter().map(|r| r.requests("/flood").len()).collect();
        if seen.iter().sum::<usize>() >= 4 {
            break;
        }
        tokio::select! {
            _ = slow[0].wait_for("/flood", seen[0] + 1) => {}
            _ = slow[1].wait_for("/flood", seen[1] + 1) => {}
        }
    }
    let fast = Receiver::start().await;
    quiet
        .enqueue(fast.url("/quiet"))
        .body(b"{}".to_vec())
        .send()
        .await
        .expect("enqueue");
    for receiver in &slow {
        receiver.open_gate();
    }
    let arrived = fast.wait_for("/quiet", 1).await[0].at;
    let flood_before: usize = slow
        .iter()
        .map(|r| {
            r.requests("/flood")
                .iter()
                .filter(|q| q.at < arrived)
                .count()
        })
        .sum();
    // The 4 held, then the permits they free are shared by turns: the
    // quiet tenant's delivery is among the first few, not behind 36.
    assert!(
        flood_before <= 4 + 8,
        "{flood_before} of the flood's went before the quiet tenant's one"
    );
    herald.stop().await;
}

/// Two replicas against one receiver that holds its requests, then one
/// that is merely busy: together they never have more in flight than the
/// destination's limit, and together they keep to its rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_a_destinations_limits() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let config = settings(&[
        ("HERALD_DESTINATION_CONCURRENCY", "3"),
        ("HERALD_REQUEST_TIMEOUT", "10s"),
        ("HERALD_LEASE_DURATION", "20s"),
    ]);
    let a = HeraldProcess::spawn(HERALD, db.url(), &config).await;
    let b = HeraldProcess::spawn(HERALD, db.url(), &config).await;
    let held = Receiver::start().await;
    held.hold("/held");
    let other = Receiver::start().await;
    let (client_a, client_b) = (a.client().await, b.client().await);
    let url = held.url("/held");
    let (via_a, via_b) = tokio::join!(
        enqueue_many(&client_a, &url, 6, 2),
        enqueue_many(&client_b, &url, 6, 2)
    );
    held.wait_for("/held", 3).await;
    // Both replicas claim again (each sends a marker elsewhere) while the
    // held destination is full.
    enqueue_many(&client_a, &other.url("/marker"), 1, 1).await;
    enqueue_many(&client_b, &other.url("/marker"), 1, 1).await;
    other.wait_for("/marker", 2).await;
    assert_eq!(
        held.requests("/held").len(),
        3,
        "3 in flight across replicas"
    );
    held.open_gate();
    let arrived = held.wait_for("/held", via_a.len() + via_b.len()).await;
    assert_eq!(arrived.len(), 12, "each sent once");
    // Busy, not held: both replicas pass their slots from delivery to
    // delivery, each telling its own leases from the other's.
    let busy = Receiver::start().await;
    busy.slow("/busy", Duration::from_millis(10));
    let url = busy.url("/busy");
    tokio::join!(
        enqueue_many(&client_a, &url, 40, 2),
        enqueue_many(&client_b, &url, 40, 2)
    );
    let arrived = busy.wait_for("/busy", 80).await;
    let most = arrived.iter().map(|request| request.open).max().unwrap();
    assert!(most <= 3, "{most} open at once across replicas, limit 3");
    drop((a, b));

    let limited = settings(&[("HERALD_DESTINATION_RATE_LIMIT", "5/s")]);
    let db = TestDb::create(Backend::Postgres).await.expect("PostgreSQL");
    let a = HeraldProcess::spawn(HERALD, db.url(), &limited).await;
    let b = HeraldProcess::spawn(HERALD, db.url(), &limited).await;
    let receiver = Receiver::start().await;
    let (client_a, client_b) = (a.client().await, b.client().await);
    let url = receiver.url("/limited");
    tokio::join!(
        enqueue_many(&client_a, &url, 6, 2),
        enqueue_many(&client_b, &url, 6, 2)
    );
    let arrived = receiver.wait_for("/limited", 12).await;
    // 12 at 5/s take 2.1 s of claims across both replicas; each replica
    // keeping its own 5/s would take 1.1 s. (The receiver's view may bunch
    // by the jitter between claim and send: see the single-replica test.)
    let span = arrived[11].at - arrived[0].at;
    assert!(
        span >= Duration::from_millis(1600),
        "12 at 5/s across two replicas took {span:?}"
    );
    assert!(most_within(&arrived, Duration::from_secs(1)) <= 7);
}

/// A pause through one replica reaches the deliveries another leased
/// ahead for its busy slots (told through the database): they are given
/// back, not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_on_one_replica_reaches_what_another_leased_ahead() {
    let Some(herald) =
        TestHerald::start_with(Backend::Postgres, |c| c.destination_concurrency = 4).await
    else {
        return;
    };
    let receiver = Receiver::start().await;
    let url = receiver.url("/busy");
    receiver.slow("/busy", Duration::from_millis(150));
    let ids_in_order = enqueue(&herald, &url, 60, 1).await;
    // The third round is in flight, its slots with the fourth leased.
    receiver.wait_for("/busy", 12).await;
    // The second replica finds the destination full, and takes the pause.
    let mut config = test_config(herald.database_url());
    config.destination_concurrency = 4;
    let operator = herald_server::start(config)
        .await
        .expect("a second replica starts");
    let client = Client::connect(format!("http://{}", operator.local_addr()))
        .await
        .expect("connect");
    client
        .pause_destination(&url, "deploy")
        .await
        .expect("pause");
    pause_is_kept(&herald, &client, &receiver, &ids_in_order, 2).await;
    operator.shutdown().await.expect("the second replica stops");
    herald.stop().await;
}

/// One replica's failures open the circuit for both: while it is open,
/// neither sends anything but the probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_a_circuit() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let config = settings(&[
        ("HERALD_DESTINATION_CONCURRENCY", "1"),
        ("HERALD_CIRCUIT_FAILURE_THRESHOLD", "2"),
        ("HERALD_CIRCUIT_COOLDOWN", "200ms"),
        ("HERALD_CIRCUIT_COOLDOWN_MAX", "400ms"),
    ]);
    let a = HeraldProcess::spawn(HERALD, db.url(), &config).await;
    let b = HeraldProcess::spawn(HERALD, db.url(), &config).await;
    let receiver = Receiver::start().await;
    receiver.script("/down", vec![Reply::Status(503); 5]);
    let watcher = Client::connect(format!("http://{}", b.addr()))
        .await
        .expect("connect");
    let mut outcomes = watcher
        .watch_outcomes(WatchOptions::default())
        .await
        .expect("watch");
    enqueue_many(&a.client().await, &receiver.url("/down"), 4, 1).await;
    let mut kinds = HashMap::new();
    let opened_at = loop {
        let outcome = next_kind(&mut outcomes).await;
        if outcome.kind == herald_client::OutcomeKind::CircuitOpened {
            break receiver.requests("/down").len();
        }
    };
    // Work arriving on the other replica waits for the circuit too.
    enqueue_many(&b.client().await, &receiver.url("/down"), 4, 1).await;
    loop {
        let outcome = next_kind(&mut outcomes).await;
        *kinds.entry(outcome.kind).or_insert(0) += 1;
        if outcome.kind == herald_client::OutcomeKind::CircuitClosed {
            break;
        }
    }
    let closed_at = receiver.requests("/down").len();
    let reopened = kinds
        .get(&herald_client::OutcomeKind::CircuitOpened)
        .copied()
        .unwrap_or(0);
    assert!(
        closed_at - opened_at <= reopened + 1,
        "{} requests while open, {reopened} failed probes",
        closed_at - opened_at
    );
    let all = receiver.wait_for("/down", 5 + 8).await;
    assert_eq!(all.len(), 13, "the 5 failures, then one success each");
}

/// The next outcome of `stream`, within [`PATIENCE`].
async fn next_kind(
    stream: &mut (
             impl futures::Stream<Item = Result<herald_client::Outcome, herald_client::Error>> + Unpin
         ),
) -> herald_client::Outcome {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("an outcome in time")
        .expect("stream open")
        .expect("an outcome")
}
