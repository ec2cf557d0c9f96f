//! `WatchOutcomes`: live outcomes, and replay from a sequence.

use std::collections::HashMap;

use futures::StreamExt;
use herald_client::{Client, WatchOptions};
use herald_proto::v1::watch_outcomes_request::Start;
use herald_proto::v1::{Outcome, OutcomeKind, WatchOutcomesRequest};
use herald_tests::{
    Backend, PATIENCE, Receiver, Reply, TestDb, TestHerald, next_outcomes, on_both_backends,
    test_config,
};
use sea_orm::{ConnectionTrait, Database, Statement, TransactionTrait};
use tonic::Code;

on_both_backends!(
    streams_outcomes_as_they_happen,
    replays_from_a_sequence_then_tails,
    a_stream_started_now_misses_nothing_recorded_while_it_was_down,
    a_tenant_opens_only_so_many_watches,
);

/// PostgreSQL only: the interleaving is forced with a table lock, and
/// SQLite readers never wait for a writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_between_the_range_check_and_the_replay_is_refused_not_skipped() {
    a_prune_during_the_first_replay_read_is_refused(Backend::Postgres).await;
}

fn assert_increasing(outcomes: &[Outcome]) {
    for pair in outcomes.windows(2) {
        assert!(pair[0].sequence < pair[1].sequence, "{outcomes:?}");
    }
}

async fn streams_outcomes_as_they_happen(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let mut stream = herald.watch_live().await;
    receiver.script("/flaky", [Reply::Status(503)]);
    receiver.script("/reject", [Reply::Status(404)]);
    let ok = herald.post(receiver.url("/ok"), b"").await;
    let flaky = herald.post(receiver.url("/flaky"), b"").await;
    let rejected = herald.post(receiver.url("/reject"), b"").await;

    let outcomes = next_outcomes(&mut stream, 4).await;
    assert_increasing(&outcomes);
    let mut kinds: HashMap<&str, Vec<i32>> = HashMap::new();
    for outcome in &outcomes {
        kinds
            .entry(outcome.delivery_id.as_str())
            .or_default()
            .push(outcome.kind);
    }
    assert_eq!(kinds[ok.as_str()], [i32::from(OutcomeKind::Succeeded)]);
    assert_eq!(
        kinds[flaky.as_str()],
        [
            i32::from(OutcomeKind::RetryScheduled),
            i32::from(OutcomeKind::Succeeded)
        ]
    );
    assert_eq!(
        kinds[rejected.as_str()],
        [i32::from(OutcomeKind::DeadLettered)]
    );
    let retry = outcomes
        .iter()
        .find(|o| o.kind == i32::from(OutcomeKind::RetryScheduled))
        .unwrap();
    assert_eq!((retry.attempt_number, retry.status_code), (1, 503));
    assert!(
        outcomes.iter().all(|o| o.error.is_none()),
        "every attempt got a response, so no outcome has an error: {outcomes:?}"
    );
    assert!(retry.next_attempt_time.is_some(), "a retry says when");
    let dead = outcomes.iter().find(|o| o.delivery_id == rejected).unwrap();
    assert_eq!(dead.error_message, "HTTP 404 Not Found");
    herald.stop().await;
}

async fn replays_from_a_sequence_then_tails(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let first = herald.post(receiver.url("/a"), b"").await;
    let second = herald.post(receiver.url("/b"), b"").await;
    herald.wait_terminal(&first).await;
    herald.wait_terminal(&second).await;

    let mut everything = herald
        .client()
        .watch_outcomes(WatchOutcomesRequest {
            start: Some(Start::AfterSequence(0)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let replayed = next_outcomes(&mut everything, 2).await;
    let mut ids: Vec<_> = replayed.iter().map(|o| o.delivery_id.clone()).collect();
    ids.sort();
    let mut expected = vec![first.clone(), second.clone()];
    expected.sort();
    assert_eq!(ids, expected);

    // Resuming after the first replayed outcome yields only the rest.
    let mut resumed = herald
        .client()
        .watch_outcomes(WatchOutcomesRequest {
            start: Some(Start::AfterSequence(replayed[0].sequence)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        next_outcomes(&mut resumed, 1).await[0].sequence,
        replayed[1].sequence
    );

    let third = herald.post(receiver.url("/c"), b"").await;
    let live = next_outcomes(&mut everything, 1).await;
    assert_eq!(
        live[0].delivery_id, third,
        "no duplicate of a replayed outcome"
    );
    assert!(live[0].sequence > replayed[1].sequence);
    assert_eq!(next_outcomes(&mut resumed, 1).await[0].delivery_id, third);
    herald.stop().await;
}

/// The client's stream opened "now" loses its server before its first
/// outcome; outcomes are recorded before it reconnects. It must resume
/// where "now" was when it opened, not at the "now" of the reconnect.
async fn a_stream_started_now_misses_nothing_recorded_while_it_was_down(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let first = herald_server::start(test_config(db.url()))
        .await
        .expect("Herald starts");
    let addr = first.local_addr();
    let client = Client::connect(format!("http://{addr}")).await.unwrap();
    let mut outcomes = client
        .watch_outcomes(WatchOptions::default())
        .await
        .unwrap();
    // Its stream ends before it carried anything.
    first.shutdown().await.expect("clean shutdown");

    // Another server on the same address records outcomes meanwhile; the
    // watcher has not been polled, so it has not reconnected yet.
    let mut config = test_config(db.url());
    config.listen_addr = addr;
    let second = herald_server::start(config)
        .await
        .expect("Herald starts again on the same address");
    let mut expected = Vec::new();
    for path in ["/a", "/b", "/c"] {
        expected.push(client.enqueue(receiver.url(path)).send().await.unwrap().id);
    }
    let mut recorded = client
        .watch_outcomes(WatchOptions::default().from_oldest())
        .await
        .unwrap();
    for _ in 0..expected.len() {
        tokio::time::timeout(PATIENCE, recorded.next())
            .await
            .expect("the outcomes are recorded in time")
            .expect("the stream is open")
            .expect("an outcome");
    }
    let last = client.enqueue(receiver.url("/d")).send().await.unwrap().id;
    expected.push(last.clone());

    let mut seen = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while seen.last() != Some(&last) {
            let outcome = outcomes
                .next()
                .await
                .expect("stream open")
                .expect("outcome");
            assert_eq!(outcome.kind, herald_client::OutcomeKind::Succeeded);
            seen.push(outcome.delivery_id);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the watcher saw only {seen:?} of {expected:?}"));
    // The first three were sent concurrently, so in any order.
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected, "each outcome once, none skipped");
    second.shutdown().await.expect("clean shutdown");
    db.drop_database().await;
}

/// A resumed watch checks its cursor against retention and reads its first
/// replay page. Here a prune of outcomes after the cursor commits while
/// the watch is between the two (its read waits on the prune's lock): the
/// watch must answer OUT_OF_RANGE, not resume after the pruned outcomes.
async fn a_prune_during_the_first_replay_read_is_refused(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    for path in ["/1", "/2", "/3", "/4"] {
        let id = herald.post(receiver.url(path), b"").await;
        herald.wait_terminal(&id).await;
    }
    let mut everything = herald
        .client()
        .watch_outcomes(WatchOutcomesRequest {
            start: Some(Start::FromOldest(true)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let sequences: Vec<u64> = next_outcomes(&mut everything, 4)
        .await
        .iter()
        .map(|outcome| outcome.sequence)
        .collect();
    let (cursor, pruned_through) = (sequences[0], sequences[2]);

    // A prune of everything up to the third outcome, holding the outcomes
    // table until it commits.
    let database = Database::connect(herald.database_url()).await.unwrap();
    let prune = database.begin().await.unwrap();
    for sql in [
        "LOCK TABLE outcomes IN ACCESS EXCLUSIVE MODE".to_owned(),
        format!("DELETE FROM outcomes WHERE sequence <= {pruned_through}"),
        format!("UPDATE feed_state SET pruned_through = {pruned_through} WHERE id = 1"),
    ] {
        prune
            .execute_raw(Statement::from_string(database.get_database_backend(), sql))
            .await
            .unwrap();
    }
    let mut client = herald.client();
    let watch = tokio::spawn(async move {
        let request = WatchOutcomesRequest {
            start: Some(Start::AfterSequence(cursor)),
            ..Default::default()
        };
        match client.watch_outcomes(request).await {
            Err(status) => Err(status),
            Ok(response) => match response.into_inner().next().await {
                Some(Ok(first)) => Ok(first.outcome.expect("outcome set")),
                Some(Err(status)) => Err(status),
                None => panic!("the stream ended without an outcome or an error"),
            },
        }
    });
    // The watch's replay read (by tenant) waits for the prune's lock.
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                   AND wait_event_type = 'Lock' AND query LIKE '%\"outcomes\".\"tenant_id\"%'";
    tokio::time::timeout(PATIENCE, async {
        loop {
            let row = database
                .query_one_raw(Statement::from_string(
                    database.get_database_backend(),
                    waiting,
                ))
                .await
                .unwrap()
                .unwrap();
            if row.try_get_by_index::<i64>(0).unwrap() > 0 {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the watch reads outcomes");
    prune.commit().await.unwrap();

    match watch.await.unwrap() {
        Err(status) => assert_eq!(status.code(), Code::OutOfRange, "{status:?}"),
        Ok(outcome) => panic!(
            "resumed after {cursor} but skipped to {} past outcomes pruned through {pruned_through}",
            outcome.sequence
        ),
    }
    herald.stop().await;
}

/// One stream past the tenant's limit is refused with RESOURCE_EXHAUSTED
/// naming the limit; closing one makes room again.
async fn a_tenant_opens_only_so_many_watches(backend: Backend) {
    let Some(herald) = TestHerald::start_with(backend, |config| {
        config.max_watches_per_tenant = 2;
    })
    .await
    else {
        return;
    };
    let first = herald.watch_live().await;
    let _second = herald.watch_live().await;
    let refused = herald
        .client()
        .watch_outcomes(WatchOutcomesRequest::default())
        .await
        .expect_err("a third stream is one too many");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains('2')
            && refused.message().contains("HERALD_MAX_WATCHES_PER_TENANT"),
        "the message names the limit: {refused:?}"
    );

    drop(first);
    // The server frees the place when it sees the stream cancelled.
    tokio::time::timeout(PATIENCE, async {
        loop {
            match herald
                .client()
                .watch_outcomes(WatchOutcomesRequest::default())
                .await
            {
                Ok(_third) => return,
                Err(status) => assert_eq!(status.code(), Code::ResourceExhausted),
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("a closed stream makes room for another");
    herald.stop().await;
}
