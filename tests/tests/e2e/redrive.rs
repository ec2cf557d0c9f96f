//! Redrives of dead letters: by filter over more rows than one batch, each
//! with a `redriven` outcome a watcher sees; named ids that are not
//! redriven are reported with why.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use herald_proto::v1::{
    DeadLetterFilter, DeliveryState, EnqueueRequest, NotRedriven, NotRedrivenReason, OutcomeKind,
    RedriveDeadLettersRequest, WatchOutcomesRequest,
};
use herald_tests::{
    Backend, Receiver, Reply, TestHerald, accepted, next_outcomes, on_both_backends,
    redrive_filtered, redrive_ids,
};

on_both_backends!(
    a_redrive_by_filter_takes_every_batch_and_records_each,
    named_ids_not_redriven_are_reported_with_why,
);

/// More dead letters than one redrive batch (500) holds.
const DEAD_LETTERS: usize = 600;

async fn a_redrive_by_filter_takes_every_batch_and_records_each(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    // Refused once each (a 410 is not retried), then accepted.
    receiver.script("/gone", vec![Reply::Status(410); DEAD_LETTERS]);
    let mut outcomes = herald.watch_live().await;
    let results = herald
        .enqueue_batch(
            (0..DEAD_LETTERS)
                .map(|_| EnqueueRequest {
                    url: receiver.url("/gone"),
                    ..Default::default()
                })
                .collect(),
        )
        .await;
    assert!(results.iter().all(|result| accepted(result).is_some()));
    for outcome in next_outcomes(&mut outcomes, DEAD_LETTERS).await {
        assert_eq!(outcome.kind, i32::from(OutcomeKind::DeadLettered));
    }

    let mut client = herald.client();
    let mut watched = client
        .watch_outcomes(WatchOutcomesRequest {
            kinds: vec![OutcomeKind::Redriven.into(), OutcomeKind::Succeeded.into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let redriven = client
        .redrive_dead_letters(redrive_filtered(DeadLetterFilter {
            destination_host: "127.0.0.1".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(redriven.count, DEAD_LETTERS as u64);
    assert!(redriven.not_redriven.is_empty(), "{redriven:?}");

    // Each delivery: redriven (attempts so far: 1, due at once), then
    // succeeded, in that order.
    let mut seen: HashMap<String, Vec<OutcomeKind>> = HashMap::new();
    for outcome in next_outcomes(&mut watched, 2 * DEAD_LETTERS).await {
        if outcome.kind() == OutcomeKind::Redriven {
            assert_eq!(outcome.attempt_number, 1, "{outcome:?}");
            assert!(outcome.next_attempt_time.is_some(), "{outcome:?}");
        }
        seen.entry(outcome.delivery_id.clone())
            .or_default()
            .push(outcome.kind());
    }
    assert_eq!(seen.len(), DEAD_LETTERS);
    for (id, kinds) in &seen {
        assert_eq!(
            kinds,
            &[OutcomeKind::Redriven, OutcomeKind::Succeeded],
            "{id}"
        );
    }
    herald.stop().await;
}

async fn named_ids_not_redriven_are_reported_with_why(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.script("/gone", vec![Reply::Status(410)]);
    let dead = herald.post(receiver.url("/gone"), b"").await;
    let delivered = herald.post(receiver.url("/ok"), b"").await;
    for id in [&dead, &delivered] {
        herald.wait_terminal(id).await;
    }
    let pending = herald
        .enqueue(EnqueueRequest {
            url: receiver.url("/later"),
            not_before_time: Some((SystemTime::now() + Duration::from_secs(3600)).into()),
            ..Default::default()
        })
        .await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let named = vec![
        unknown.clone(),
        dead.clone(),
        delivered.clone(),
        pending.clone(),
    ];
    let expected = vec![
        not_redriven(
            &unknown,
            NotRedrivenReason::NotFound,
            DeliveryState::Unspecified,
        ),
        not_redriven(
            &delivered,
            NotRedrivenReason::NotDeadLettered,
            DeliveryState::Succeeded,
        ),
        not_redriven(
            &pending,
            NotRedrivenReason::NotDeadLettered,
            DeliveryState::Pending,
        ),
    ];
    let mut client = herald.client();
    for dry_run in [true, false] {
        let answer = client
            .redrive_dead_letters(RedriveDeadLettersRequest {
                dry_run,
                ..redrive_ids(named.clone())
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.count, 1, "dry run {dry_run}");
        assert_eq!(answer.not_redriven, expected, "dry run {dry_run}");
    }
    assert_eq!(
        herald.wait_terminal(&dead).await.state,
        i32::from(DeliveryState::Succeeded),
        "the dead letter was redriven, and sent again"
    );
    herald.stop().await;
}

fn not_redriven(id: &str, reason: NotRedrivenReason, state: DeliveryState) -> NotRedriven {
    NotRedriven {
        id: id.to_owned(),
        reason: reason.into(),
        state: state.into(),
    }
}
