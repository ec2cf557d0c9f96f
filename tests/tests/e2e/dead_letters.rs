//! `ListDeadLetters` pagination.

use std::collections::HashSet;

use herald_proto::v1::{DeliveryState, ListDeadLettersRequest};
use herald_tests::{Backend, Receiver, Reply, TestHerald, on_both_backends, redrive_ids};
use tonic::Code;

on_both_backends!(
    pagination_returns_every_dead_letter_once,
    dead_letters_are_listed_oldest_first,
    bad_page_token_is_invalid
);

async fn pagination_returns_every_dead_letter_once(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.script("/reject", vec![Reply::Status(422); 25]);
    let mut expected = HashSet::new();
    for n in 0..25 {
        expected.insert(
            herald
                .post(receiver.url("/reject"), format!("{n}").as_bytes())
                .await,
        );
    }
    // One that succeeds must not be listed.
    let ok = herald.post(receiver.url("/fine"), b"").await;
    for id in expected.iter().chain([&ok]) {
        herald.wait_terminal(id).await;
    }

    let mut client = herald.client();
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_dead_letters(ListDeadLettersRequest {
                page_size: 7,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.deliveries.len() <= 7);
        for delivery in &page.deliveries {
            assert_eq!(delivery.state, i32::from(DeliveryState::DeadLettered));
            assert!(delivery.attempts.is_empty(), "listings carry no attempts");
        }
        seen.extend(page.deliveries.into_iter().map(|d| d.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 4);
    assert_eq!(seen.len(), 25, "every dead letter exactly once");
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), expected);
    herald.stop().await;
}

/// The listing's order is the order of dead-lettering, not of creation:
/// three deliveries dead-lettered one after another, then the first one
/// redriven and dead-lettered again, come back second, third, first, across
/// pages.
async fn dead_letters_are_listed_oldest_first(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.script("/reject", vec![Reply::Status(422); 4]);
    let mut ids = Vec::new();
    for n in 0..3 {
        let id = herald
            .post(receiver.url("/reject"), format!("{n}").as_bytes())
            .await;
        herald.wait_terminal(&id).await;
        ids.push(id);
    }
    let redriven = herald
        .client()
        .redrive_dead_letters(redrive_ids(vec![ids[0].clone()]))
        .await
        .expect("redrive")
        .into_inner();
    assert_eq!(redriven.count, 1);
    let again = herald.wait_terminal(&ids[0]).await;
    assert_eq!(again.state, i32::from(DeliveryState::DeadLettered));

    let mut client = herald.client();
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_dead_letters(ListDeadLettersRequest {
                page_size: 2,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        listed.extend(page.deliveries.into_iter().map(|d| d.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(listed, [ids[1].clone(), ids[2].clone(), ids[0].clone()]);
    herald.stop().await;
}

async fn bad_page_token_is_invalid(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let status = herald
        .client()
        .list_dead_letters(ListDeadLettersRequest {
            page_size: 0,
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("page_token:"),
        "{}",
        status.message()
    );
    herald.stop().await;
}
