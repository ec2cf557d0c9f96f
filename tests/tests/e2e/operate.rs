//! Operator RPCs: cancel, redrive (dry run and real), filtered listing;
//! and per-delivery deadlines.

use std::{
    collections::HashSet,
    time::{Duration, SystemTime},
};

use futures::StreamExt;
use herald_proto::v1::{
    CancelDeliveryRequest, DeadLetterFilter, DeliveryState, EnqueueRequest, ListDeliveriesRequest,
    OutcomeKind, RedriveDeadLettersRequest,
};
use herald_tests::{
    Backend, PATIENCE, Receiver, Reply, TestHerald, next_outcomes, on_both_backends,
    redrive_filtered, redrive_ids, wait_succeeded,
};
use tonic::Code;

on_both_backends!(
    cancel_ends_a_pending_delivery_and_refuses_finished_ones,
    redrive_gives_dead_letters_a_fresh_budget,
    list_filters_and_pages_newest_first,
    a_retry_past_the_deadline_dead_letters,
);

fn in_a_year() -> Option<prost_types::Timestamp> {
    Some((SystemTime::now() + Duration::from_secs(365 * 24 * 3600)).into())
}

/// Enqueues a delivery to `url` that stays pending for a year.
async fn enqueue_for_next_year(herald: &TestHerald, url: String) -> String {
    herald
        .enqueue(EnqueueRequest {
            url,
            not_before_time: in_a_year(),
            ..Default::default()
        })
        .await
}

async fn cancel_ends_a_pending_delivery_and_refuses_finished_ones(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let mut client = herald.client();
    let mut outcomes = herald.watch_live().await;
    let later = enqueue_for_next_year(&herald, receiver.url("/later")).await;
    let cancel = |id: &str| CancelDeliveryRequest { id: id.to_owned() };
    let cancelled = client
        .cancel_delivery(cancel(&later))
        .await
        .unwrap()
        .into_inner()
        .delivery
        .unwrap();
    assert_eq!(cancelled.state, i32::from(DeliveryState::Cancelled));
    assert!(cancelled.finish_time.is_some() && cancelled.next_attempt_time.is_none());
    let outcome = tokio::time::timeout(PATIENCE, outcomes.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let outcome = outcome.outcome.unwrap();
    assert_eq!(
        (outcome.delivery_id.as_str(), outcome.kind),
        (later.as_str(), i32::from(OutcomeKind::Cancelled))
    );

    let again = client.cancel_delivery(cancel(&later)).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
    assert!(
        again.message().contains("is already cancelled"),
        "{}",
        again.message()
    );
    let done = herald.post(receiver.url("/done"), b"").await;
    herald.wait_terminal(&done).await;
    let finished = client.cancel_delivery(cancel(&done)).await.unwrap_err();
    assert_eq!(finished.code(), Code::FailedPrecondition);
    let missing = client
        .cancel_delivery(cancel(&uuid::Uuid::now_v7().to_string()))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(
        receiver.requests("/later").is_empty(),
        "a cancelled delivery was sent"
    );
    herald.stop().await;
}

async fn redrive_gives_dead_letters_a_fresh_budget(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.script("/down", vec![Reply::Status(400); 3]);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            herald
                .enqueue(EnqueueRequest {
                    url: receiver.url("/down"),
                    max_attempts: Some(2),
                    ..Default::default()
                })
                .await,
        );
    }
    for id in &ids {
        herald.wait_terminal(id).await;
    }
    let mut client = herald.client();
    let redrive = |dry_run| RedriveDeadLettersRequest {
        dry_run,
        ..redrive_ids(ids.clone())
    };
    let counted = client
        .redrive_dead_letters(redrive(true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(counted.count, 3);
    assert_eq!(
        herald.get(&ids[0]).await.state,
        i32::from(DeliveryState::DeadLettered),
        "dry run changed nothing"
    );
    let none_yet = RedriveDeadLettersRequest {
        dry_run: true,
        ..redrive_filtered(DeadLetterFilter {
            dead_lettered_after_time: in_a_year(),
            ..Default::default()
        })
    };
    assert_eq!(
        client
            .redrive_dead_letters(none_yet)
            .await
            .unwrap()
            .into_inner()
            .count,
        0
    );
    let elsewhere = RedriveDeadLettersRequest {
        dry_run: true,
        ..redrive_filtered(DeadLetterFilter {
            destination_host: "elsewhere.example".into(),
            ..Default::default()
        })
    };
    assert_eq!(
        client
            .redrive_dead_letters(elsewhere)
            .await
            .unwrap()
            .into_inner()
            .count,
        0
    );

    // The receiver answers 204 from now on: the redriven deliveries succeed.
    let mut outcomes = herald.watch_live().await;
    assert_eq!(
        client
            .redrive_dead_letters(redrive(false))
            .await
            .unwrap()
            .into_inner()
            .count,
        3
    );
    // Recorded together, before any of them is sent again.
    for outcome in next_outcomes(&mut outcomes, 3).await {
        assert_eq!(
            outcome.kind,
            i32::from(OutcomeKind::Redriven),
            "{outcome:?}"
        );
    }
    wait_succeeded(&mut outcomes, 3).await;
    for id in &ids {
        let delivery = herald.get(id).await;
        assert_eq!(delivery.state, i32::from(DeliveryState::Succeeded));
        let history: Vec<_> = delivery
            .attempts
            .iter()
            .map(|a| (a.number, a.status_code))
            .collect();
        assert_eq!(
            history,
            [(1, 400), (2, 204)],
            "history kept, numbering continues"
        );
        assert_eq!(
            delivery.max_attempts, 3,
            "one attempt used plus a fresh budget of two"
        );
    }
    // A selection is required, and neither of its shapes may be empty.
    for (request, field) in [
        (RedriveDeadLettersRequest::default(), "selection"),
        (redrive_ids(Vec::new()), "deliveries.ids"),
        (redrive_filtered(DeadLetterFilter::default()), "filter"),
    ] {
        let refused = client.redrive_dead_letters(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{field}");
        assert!(
            refused.message().starts_with(&format!("{field}: ")),
            "{field}: {refused:?}"
        );
    }
    herald.stop().await;
}

async fn list_filters_and_pages_newest_first(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.script("/reject", vec![Reply::Status(404); 3]);
    let mut finished = Vec::new();
    for n in 0..5 {
        finished.push(
            herald
                .post(receiver.url("/ok"), format!("{n}").as_bytes())
                .await,
        );
    }
    for _ in 0..3 {
        finished.push(herald.post(receiver.url("/reject"), b"").await);
    }
    for id in &finished {
        herald.wait_terminal(id).await;
    }
    let mut pending = Vec::new();
    for _ in 0..2 {
        pending.push(enqueue_for_next_year(&herald, receiver.url("/later")).await);
    }
    let mut client = herald.client();
    let list = |state: DeliveryState, host: &str, page_size, page_token| ListDeliveriesRequest {
        state: state.into(),
        destination_host: host.to_owned(),
        page_size,
        page_token,
        ..Default::default()
    };

    let mut all = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_deliveries(list(DeliveryState::Unspecified, "", 3, token))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        all.extend(page.deliveries);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!((all.len(), pages), (10, 4));
    let ids: Vec<_> = all.iter().map(|d| d.id.clone()).collect();
    let expected: Vec<_> = finished.iter().chain(&pending).rev().cloned().collect();
    assert_eq!(ids, expected, "newest first, each once");

    let dead = client
        .list_deliveries(list(DeliveryState::DeadLettered, "", 0, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dead.deliveries.len(), 3);
    let waiting = client
        .list_deliveries(list(DeliveryState::Pending, "127.0.0.1", 0, String::new()))
        .await
        .unwrap()
        .into_inner();
    let waiting: HashSet<_> = waiting.deliveries.into_iter().map(|d| d.id).collect();
    assert_eq!(waiting, pending.iter().cloned().collect());
    let other_host = client
        .list_deliveries(list(
            DeliveryState::Unspecified,
            "elsewhere.example",
            0,
            String::new(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(other_host.deliveries.is_empty());
    let future = ListDeliveriesRequest {
        created_after_time: in_a_year(),
        ..Default::default()
    };
    assert!(
        client
            .list_deliveries(future)
            .await
            .unwrap()
            .into_inner()
            .deliveries
            .is_empty()
    );
    let dead_token = client
        .list_dead_letters(herald_proto::v1::ListDeadLettersRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    let mixed = client
        .list_deliveries(list(DeliveryState::Unspecified, "", 1, dead_token))
        .await
        .unwrap_err();
    assert_eq!(
        mixed.code(),
        Code::InvalidArgument,
        "a dead-letter token is not a listing token"
    );
    herald.stop().await;
}

async fn a_retry_past_the_deadline_dead_letters(backend: Backend) {
    let Some(herald) =
        TestHerald::start_with(backend, |c| c.retry_after_cap = Duration::from_secs(60)).await
    else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.script(
        "/slow-down",
        [Reply::WithHeaders(503, vec![("retry-after", "30".into())])],
    );
    let id = herald
        .enqueue(EnqueueRequest {
            url: receiver.url("/slow-down"),
            deadline_time: Some((SystemTime::now() + Duration::from_secs(10)).into()),
            ..Default::default()
        })
        .await;
    let delivery = herald.wait_terminal(&id).await;
    assert_eq!(delivery.state, i32::from(DeliveryState::DeadLettered));
    assert_eq!(
        delivery.attempt_count, 1,
        "no retry was scheduled past the deadline"
    );
    assert!(delivery.deadline_time.is_some());
    herald.stop().await;
}
