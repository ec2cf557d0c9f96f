//! What receivers get, and what Herald does with each kind of answer.

use std::time::Duration;

use herald_proto::v1::{
    AttemptError, DeliveryState, EnqueueRequest, Header, ListDeadLettersRequest,
};
use herald_tests::{Backend, Receiver, Reply, TestHerald, on_both_backends};

on_both_backends!(
    body_and_headers_arrive_byte_for_byte,
    success_records_one_attempt,
    retry_then_success_keeps_the_webhook_id,
    retry_after_is_honoured,
    retry_after_is_capped,
    permanent_4xx_dead_letters_at_once,
    connection_refused_dead_letters_after_max_attempts,
    redirects_are_not_followed,
);

async fn body_and_headers_arrive_byte_for_byte(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let body: Vec<u8> = (0..=255u8).chain(*b"{\"end\":true}").collect();
    let id = herald
        .enqueue(EnqueueRequest {
            url: receiver.url("/bytes?q=1"),
            body: body.clone(),
            content_type: "application/octet-stream".into(),
            headers: vec![
                Header {
                    name: "X-Event-Type".into(),
                    value: "order.created".into(),
                },
                Header {
                    name: "x-multi".into(),
                    value: "a".into(),
                },
                Header {
                    name: "x-multi".into(),
                    value: "b, c".into(),
                },
            ],
            ..Default::default()
        })
        .await;
    let seen = receiver.wait_for("/bytes?q=1", 1).await.remove(0);
    assert_eq!(seen.method, http::Method::POST);
    assert_eq!(seen.body.as_ref(), body.as_slice());
    assert_eq!(seen.header("x-event-type"), "order.created");
    let multi: Vec<_> = seen.headers.get_all("x-multi").iter().collect();
    assert_eq!(multi, ["a", "b, c"]);
    assert_eq!(seen.header("content-type"), "application/octet-stream");
    assert_eq!(seen.header("webhook-id"), id);
    assert_eq!(seen.header("herald-attempt"), "1");
    assert!(seen.header("user-agent").starts_with("herald/"));
    assert!(seen.header("webhook-timestamp").parse::<u64>().is_ok());
    herald.stop().await;
}

async fn success_records_one_attempt(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let id = herald.post(receiver.url("/ok"), b"{}").await;
    let delivery = herald.wait_terminal(&id).await;
    assert_eq!(delivery.state, i32::from(DeliveryState::Succeeded));
    assert_eq!(delivery.attempt_count, 1);
    assert_eq!(delivery.last_status_code, 204);
    assert!(delivery.finish_time.is_some());
    assert_eq!(delivery.next_attempt_time, None);
    let [attempt] = delivery.attempts.as_slice() else {
        panic!("expected one attempt: {:?}", delivery.attempts)
    };
    assert_eq!((attempt.number, attempt.status_code), (1, 204));
    assert_eq!(attempt.error, None, "a response leaves the error unset");
    assert!(attempt.duration.is_some() && attempt.start_time.is_some());
    herald.stop().await;
}

async fn retry_then_success_keeps_the_webhook_id(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.script(
        "/flaky",
        [Reply::Status(503), Reply::Status(503), Reply::Status(200)],
    );
    let id = herald.post(receiver.url("/flaky"), b"payload").await;
    let delivery = herald.wait_terminal(&id).await;
    assert_eq!(delivery.state, i32::from(DeliveryState::Succeeded));
    assert_eq!(delivery.attempt_count, 3);
    let statuses: Vec<_> = delivery
        .attempts
        .iter()
        .map(|a| (a.number, a.status_code))
        .collect();
    assert_eq!(statuses, [(1, 503), (2, 503), (3, 200)]);
    assert_eq!(
        delivery.attempts[0].error_message,
        "HTTP 503 Service Unavailable"
    );
    let seen = receiver.requests("/flaky");
    assert_eq!(seen.len(), 3);
    for (n, request) in seen.iter().enumerate() {
        assert_eq!(request.header("webhook-id"), id, "attempt {}", n + 1);
        assert_eq!(request.header("herald-attempt"), (n + 1).to_string());
        assert_eq!(request.body.as_ref(), b"payload");
    }
    herald.stop().await;
}

async fn retry_after_is_honoured(backend: Backend) {
    // Backoff alone would retry within 20 ms; Retry-After asks for 1 s.
    let Some(herald) =
        TestHerald::start_with(backend, |c| c.retry_after_cap = Duration::from_secs(5)).await
    else {
        return;
    };
    // Two receivers, so two destinations: the hold the first one asks for
    // must not delay the second one's first attempt.
    let receiver = Receiver::start().await;
    receiver.script(
        "/busy",
        [Reply::WithHeaders(429, vec![("retry-after", "1".into())])],
    );
    let seconds_id = herald.post(receiver.url("/busy"), b"").await;
    // Whole seconds, counted from now rather than from the first attempt:
    // three seconds ahead is still more than one after an attempt that
    // starts within a second, however loaded the machine.
    let dated = Receiver::start().await;
    let http_date = httpdate_in(Duration::from_secs(3));
    dated.script(
        "/busy-date",
        [Reply::WithHeaders(503, vec![("retry-after", http_date)])],
    );
    let date_id = herald.post(dated.url("/busy-date"), b"").await;

    for (id, seen_by, path, at_least) in [
        (seconds_id, &receiver, "/busy", Duration::from_millis(950)),
        (date_id, &dated, "/busy-date", Duration::from_millis(1000)),
    ] {
        let delivery = herald.wait_terminal(&id).await;
        assert_eq!(delivery.state, i32::from(DeliveryState::Succeeded));
        let seen = seen_by.requests(path);
        let gap = seen[1].at - seen[0].at;
        assert!(gap >= at_least, "{path}: second attempt after {gap:?}");
    }
    herald.stop().await;
}

async fn retry_after_is_capped(backend: Backend) {
    // An hour asked for, a second allowed: the retry comes after the cap,
    // not after the hour (and not at once either).
    let Some(herald) =
        TestHerald::start_with(backend, |c| c.retry_after_cap = Duration::from_secs(1)).await
    else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.script(
        "/later",
        [Reply::WithHeaders(
            503,
            vec![("retry-after", "3600".into())],
        )],
    );
    let id = herald.post(receiver.url("/later"), b"").await;
    let delivery = herald.wait_terminal(&id).await;
    assert_eq!(delivery.state, i32::from(DeliveryState::Succeeded));
    let seen = receiver.requests("/later");
    let gap = seen[1].at - seen[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "retried after {gap:?}, before the cap"
    );
    assert!(
        gap < Duration::from_secs(3),
        "retried after {gap:?}: the 1 s cap on Retry-After was not applied"
    );
    herald.stop().await;
}

async fn permanent_4xx_dead_letters_at_once(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.script("/gone", [Reply::Status(400)]);
    let id = herald.post(receiver.url("/gone"), b"").await;
    let delivery = herald.wait_terminal(&id).await;
    assert_eq!(delivery.state, i32::from(DeliveryState::DeadLettered));
    assert_eq!(delivery.attempt_count, 1);
    assert_eq!(delivery.last_status_code, 400);
    assert_eq!(delivery.last_error, "HTTP 400 Bad Request");
    assert_eq!(receiver.requests("/gone").len(), 1, "no retry");
    let dead_letters = herald
        .client()
        .list_dead_letters(ListDeadLettersRequest::default())
        .await
        .expect("list dead letters")
        .into_inner();
    let listed: Vec<_> = dead_letters.deliveries.iter().map(|d| &d.id).collect();
    assert_eq!(listed, [&id], "the dead letter is listed");
    herald.stop().await;
}

async fn connection_refused_dead_letters_after_max_attempts(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let id = herald
        .enqueue(EnqueueRequest {
            url: format!("http://{closed}/nobody"),
            max_attempts: Some(3),
            ..Default::default()
        })
        .await;
    let delivery = herald.wait_terminal(&id).await;
    assert_eq!(delivery.state, i32::from(DeliveryState::DeadLettered));
    assert_eq!(delivery.attempt_count, 3);
    assert_eq!(delivery.attempts.len(), 3);
    for attempt in &delivery.attempts {
        assert_eq!(attempt.error, Some(i32::from(AttemptError::Connect)));
        assert_eq!(attempt.status_code, 0);
        assert!(
            attempt.error_message.contains(&closed.to_string()),
            "{}",
            attempt.error_message
        );
    }
    herald.stop().await;
}

async fn redirects_are_not_followed(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.script(
        "/moved",
        [Reply::WithHeaders(
            302,
            vec![("location", receiver.url("/target"))],
        )],
    );
    let id = herald.post(receiver.url("/moved"), b"").await;
    let delivery = herald.wait_terminal(&id).await;
    assert_eq!(delivery.state, i32::from(DeliveryState::DeadLettered));
    assert_eq!(delivery.last_status_code, 302);
    assert!(
        delivery.last_error.contains("not followed"),
        "{}",
        delivery.last_error
    );
    assert!(
        receiver.requests("/target").is_empty(),
        "the redirect was followed"
    );
    herald.stop().await;
}

/// An HTTP date `after` from now.
fn httpdate_in(after: Duration) -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now() + after)
}
