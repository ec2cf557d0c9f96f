//! The SDK against a scripted fake `DeliveryService` over real gRPC: what it
//! puts on the wire, how it follows pages and streams, how errors surface.

mod fake;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use fake::{Script, delivery};
use futures::{StreamExt, TryStreamExt};
use herald_client::{
    Client, Code, Delivery, Error, HttpMethod, Outcome, OutcomeKind, WatchOptions,
};
use herald_proto::v1::{
    self as wire, DeadLetterFilter, DeliveryIds, EnqueueRequest, EnqueueResponse, Header,
    ListDeadLettersRequest, RedriveDeadLettersRequest, WatchOutcomesRequest, WatchOutcomesResponse,
    redrive_dead_letters_request::Selection, watch_outcomes_request::Start,
};
use tokio::sync::mpsc;
use tonic::Status;

/// A safety net, not a wait: a stream that fails to yield must fail the test
/// rather than hang it.
async fn soon<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("the stream did not yield within 10 s")
}

async fn connect(fake: &fake::Running) -> Client {
    Client::connect(fake.url()).await.unwrap()
}

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.into(),
        value: value.into(),
    }
}

#[tokio::test]
async fn enqueue_sends_exactly_the_fields_set() {
    #[derive(serde::Serialize)]
    struct Event {
        r#type: &'static str,
        id: u32,
    }
    let fake = fake::start(Script {
        enqueue: EnqueueResponse {
            id: "d-1".into(),
            created: false,
        },
        ..Default::default()
    })
    .await;
    let client = connect(&fake).await;
    let not_before = SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_250);
    let deadline = not_before + Duration::from_secs(3600);

    let enqueued = client
        .enqueue("https://example.com/hook")
        .method(HttpMethod::Put)
        .header("x-a", "1")
        .json(&Event {
            r#type: "order.created",
            id: 42,
        })
        .header("x-b", "2")
        .header("x-a", "3")
        .idempotency_key("order-42")
        .max_attempts(4)
        .not_before(not_before)
        .deadline(deadline)
        .send()
        .await
        .unwrap();

    assert_eq!(enqueued.id, "d-1");
    assert!(!enqueued.created, "created comes from the server's answer");
    let sent = fake.seen(|seen| seen.enqueues.clone());
    assert_eq!(
        sent,
        [EnqueueRequest {
            url: "https://example.com/hook".into(),
            method: HttpMethod::Put.number(),
            headers: vec![header("x-a", "1"), header("x-b", "2"), header("x-a", "3")],
            body: br#"{"type":"order.created","id":42}"#.to_vec(),
            content_type: "application/json".into(),
            idempotency_key: "order-42".into(),
            max_attempts: Some(4),
            not_before_time: Some(not_before.into()),
            deadline_time: Some(deadline.into()),
        }]
    );
}

#[tokio::test]
async fn enqueue_defaults_to_post_and_sends_nothing_unset() {
    let fake = fake::start(Script::default()).await;
    let client = connect(&fake).await;

    client
        .enqueue("https://example.com/a")
        .send()
        .await
        .unwrap();
    client
        .enqueue("https://example.com/b")
        .body(&b"\x00raw\xff"[..])
        .content_type("application/octet-stream")
        .send()
        .await
        .unwrap();

    let sent = fake.seen(|seen| seen.enqueues.clone());
    assert_eq!(
        sent,
        [
            EnqueueRequest {
                url: "https://example.com/a".into(),
                method: HttpMethod::Post.number(),
                ..Default::default()
            },
            EnqueueRequest {
                url: "https://example.com/b".into(),
                method: HttpMethod::Post.number(),
                body: b"\x00raw\xff".to_vec(),
                content_type: "application/octet-stream".into(),
                ..Default::default()
            },
        ]
    );
}

#[tokio::test]
async fn json_that_cannot_serialize_fails_send_and_sends_nothing() {
    struct Unserializable;
    impl serde::Serialize for Unserializable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("cycle in the event"))
        }
    }
    let fake = fake::start(Script::default()).await;
    let client = connect(&fake).await;

    let error = client
        .enqueue("https://example.com/hook")
        .json(&Unserializable)
        .send()
        .await
        .unwrap_err();

    assert!(matches!(error, Error::Json(_)), "{error:?}");
    assert_eq!(error.code(), None);
    assert!(error.to_string().contains("cycle in the event"), "{error}");
    assert_eq!(fake.seen(|seen| seen.enqueues.len()), 0);
}

#[tokio::test]
async fn an_enqueue_the_server_refuses_keeps_its_code_and_message() {
    let fake = fake::start(Script::default()).await;
    let client = connect(&fake).await;

    let error = client.enqueue("ftp://refused").send().await.unwrap_err();

    assert_eq!(error.code(), Some(Code::InvalidArgument), "{error}");
    assert_eq!(
        error.status().map(|status| status.message.as_str()),
        Some("url: scheme must be http or https")
    );
    assert_eq!(
        error.to_string(),
        "Herald answered InvalidArgument: url: scheme must be http or https"
    );
}

#[tokio::test]
async fn a_batch_answers_each_delivery_in_order() {
    let fake = fake::start(Script {
        enqueue: EnqueueResponse {
            id: "d1".into(),
            created: true,
        },
        ..Script::default()
    })
    .await;
    let client = connect(&fake).await;

    let results = client
        .enqueue_batch([
            client.enqueue("https://a.example/").body(b"1".to_vec()),
            client.enqueue("ftp://refused"),
        ])
        .await
        .unwrap();

    assert_eq!(results.len(), 2, "{results:?}");
    let accepted = results[0].as_ref().expect("accepted");
    assert_eq!((accepted.id.as_str(), accepted.created), ("d1", true));
    let refused = results[1].as_ref().expect_err("refused");
    assert_eq!(
        (refused.code, refused.message.as_str()),
        (Code::InvalidArgument, "url: scheme must be http or https")
    );
    let bodies = fake.seen(|seen| {
        seen.enqueues
            .iter()
            .map(|e| e.body.clone())
            .collect::<Vec<_>>()
    });
    assert_eq!(bodies, [b"1".to_vec()]);
}

fn three_pages() -> HashMap<String, (Vec<wire::Delivery>, String)> {
    HashMap::from([
        (
            String::new(),
            (vec![delivery("a"), delivery("b")], "p2".into()),
        ),
        (
            "p2".into(),
            (vec![delivery("c"), delivery("d")], "p3".into()),
        ),
        ("p3".into(), (vec![delivery("e")], String::new())),
    ])
}

#[tokio::test]
async fn dead_letters_follow_every_page_and_yield_each_item_once() {
    let fake = fake::start(Script {
        dead_letter_pages: three_pages(),
        ..Default::default()
    })
    .await;
    let client = connect(&fake).await;

    let ids: Vec<String> = client
        .dead_letters_by_page(2)
        .map_ok(|delivery| delivery.id)
        .try_collect()
        .await
        .unwrap();

    assert_eq!(ids, ["a", "b", "c", "d", "e"]);
    let page = |page_token: &str| ListDeadLettersRequest {
        page_size: 2,
        page_token: page_token.into(),
        view: wire::DeliveryView::Basic.into(),
    };
    assert_eq!(
        fake.seen(|seen| seen.dead_letter_pages.clone()),
        [page(""), page("p2"), page("p3")],
        "one request per page, none after the last"
    );
}

#[tokio::test]
async fn dead_letters_leave_the_page_size_to_the_server_and_fetch_lazily() {
    let fake = fake::start(Script {
        dead_letter_pages: three_pages(),
        ..Default::default()
    })
    .await;
    let client = connect(&fake).await;

    let first_two: Vec<Delivery> = client.dead_letters().take(2).try_collect().await.unwrap();

    assert_eq!(first_two, [sdk(delivery("a")), sdk(delivery("b"))]);
    assert_eq!(
        fake.seen(|seen| seen.dead_letter_pages.clone()),
        [ListDeadLettersRequest {
            view: wire::DeliveryView::Basic.into(),
            ..Default::default()
        }],
        "page size 0 (server default); no second page fetched for two items"
    );
}

#[tokio::test]
async fn a_failed_page_ends_the_listing_with_its_error() {
    let fake = fake::start(Script {
        dead_letter_pages: HashMap::from([(
            String::new(),
            (vec![delivery("a")], "unknown".into()),
        )]),
        ..Default::default()
    })
    .await;
    let client = connect(&fake).await;

    let items: Vec<Result<Delivery, Error>> = client.dead_letters().collect().await;

    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0].as_ref().unwrap().id, "a");
    assert_eq!(
        items[1].as_ref().unwrap_err().code(),
        Some(Code::InvalidArgument)
    );
    assert_eq!(fake.seen(|seen| seen.dead_letter_pages.len()), 2);
}

#[tokio::test]
async fn a_listing_resumes_from_a_page_token() {
    let fake = fake::start(Script {
        dead_letter_pages: three_pages(),
        ..Default::default()
    })
    .await;
    let client = connect(&fake).await;

    let page = client.dead_letters_page(2, "p2").await.unwrap();
    assert_eq!(page.items, [sdk(delivery("c")), sdk(delivery("d"))]);
    assert_eq!(page.next_page_token, "p3");
    let query = herald_client::DeliveryQuery::default()
        .state(herald_client::DeliveryState::DeadLettered)
        .page_size(2);
    let page = client
        .deliveries_page(&query, &page.next_page_token)
        .await
        .unwrap();
    assert_eq!(page.items, [sdk(delivery("e"))]);
    assert_eq!(page.next_page_token, "", "the last page");

    let sent = fake.seen(|seen| seen.delivery_pages.clone());
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].page_token, "p3");
    assert_eq!(sent[0].page_size, 2);
    assert_eq!(
        sent[0].state,
        herald_client::DeliveryState::DeadLettered.number()
    );
}

#[tokio::test]
async fn a_traced_client_sends_its_trace_context_with_every_call() {
    let fake = fake::start(Script::default()).await;
    let client = connect(&fake).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    let traced = client
        .with_trace_context(traceparent, Some("vendor=1"))
        .unwrap();
    traced.enqueue("https://example.com").send().await.unwrap();
    traced
        .enqueue_batch([traced.enqueue("https://example.com")])
        .await
        .unwrap();
    client.enqueue("https://example.com").send().await.unwrap();

    let sent = (Some(traceparent.to_owned()), Some("vendor=1".to_owned()));
    assert_eq!(
        fake.seen(|seen| seen.trace_contexts.clone()),
        [sent.clone(), sent, (None, None)],
        "the traced client's calls carry it; the original's do not"
    );
    let bad = client.with_trace_context("00-\n", None).unwrap_err();
    assert!(matches!(bad, Error::InvalidTraceContext), "{bad:?}");
}

#[tokio::test]
async fn get_delivery_returns_it_and_not_found_keeps_its_code() {
    let mut known = delivery("d-7");
    known.attempts = vec![wire::Attempt {
        number: 1,
        status_code: 503,
        ..Default::default()
    }];
    let fake = fake::start(Script {
        deliveries: vec![known.clone()],
        ..Default::default()
    })
    .await;
    let client = connect(&fake).await;

    assert_eq!(client.get_delivery("d-7").await.unwrap(), sdk(known));

    let missing = client.get_delivery("d-404").await.unwrap_err();
    assert_eq!(missing.code(), Some(Code::NotFound), "{missing}");
    assert_eq!(
        missing.status().map(|status| status.message.as_str()),
        Some("no delivery d-404")
    );
    assert!(matches!(missing, Error::Rpc(_)), "{missing:?}");

    let hollow = client.get_delivery("hollow").await.unwrap_err();
    assert!(
        matches!(hollow, Error::MissingField("delivery")),
        "{hollow:?}"
    );
    assert_eq!(hollow.code(), None);

    let asked: Vec<String> = fake.seen(|seen| seen.gets.iter().map(|g| g.id.clone()).collect());
    assert_eq!(asked, ["d-7", "d-404", "hollow"]);
}

/// A delivery as the SDK gives it back.
fn sdk(delivery: wire::Delivery) -> Delivery {
    delivery.into()
}

fn wire_outcome(sequence: u64) -> wire::Outcome {
    wire::Outcome {
        sequence,
        delivery_id: format!("d-{sequence}"),
        kind: wire::OutcomeKind::Succeeded.into(),
        attempt_number: 1,
        status_code: 204,
        ..Default::default()
    }
}

/// The outcome `sequence` as the SDK yields it.
fn outcome(sequence: u64) -> Outcome {
    wire_outcome(sequence).into()
}

fn response(sequence: u64) -> Result<WatchOutcomesResponse, Status> {
    Ok(WatchOutcomesResponse {
        outcome: Some(wire_outcome(sequence)),
    })
}

#[tokio::test]
async fn watch_outcomes_streams_live_and_resumes_after_the_last_yielded() {
    let (feed, watch_feed) = mpsc::channel(8);
    let fake = fake::start(Script {
        watch_feed: Some(watch_feed),
        ..Default::default()
    })
    .await;
    let client = connect(&fake).await;

    let outcomes = client
        .watch_outcomes(WatchOptions::default().after(41))
        .await
        .unwrap();
    let mut outcomes = std::pin::pin!(outcomes);

    // Live: each outcome arrives as it is sent, not when the stream ends.
    feed.send(response(42)).await.unwrap();
    assert_eq!(soon(outcomes.next()).await.unwrap().unwrap(), outcome(42));
    for sequence in [43, 44, 47] {
        feed.send(response(sequence)).await.unwrap();
    }
    // The server ends the stream (a restart): the client reconnects after
    // 47; this fake then refuses, which ends the stream with that error.
    drop(feed);
    let rest: Vec<Result<Outcome, Error>> = soon(outcomes.collect()).await;
    let sequences: Vec<u64> = rest
        .iter()
        .filter_map(|item| item.as_ref().ok())
        .map(|o| o.sequence)
        .collect();
    assert_eq!(sequences, [43, 44, 47]);
    assert_eq!(
        rest.last().unwrap().as_ref().unwrap_err().code(),
        Some(Code::OutOfRange)
    );
    assert_eq!(
        fake.seen(|seen| seen.watches.clone()),
        [
            WatchOutcomesRequest {
                start: Some(Start::AfterSequence(41)),
                ..Default::default()
            },
            WatchOutcomesRequest {
                start: Some(Start::AfterSequence(47)),
                ..Default::default()
            },
        ]
    );
}

#[tokio::test]
async fn an_unavailable_watch_reconnects_but_a_broken_answer_ends_it() {
    let (feed, watch_feed) = mpsc::channel(8);
    let fake = fake::start(Script {
        watch_feed: Some(watch_feed),
        ..Default::default()
    })
    .await;
    let client = connect(&fake).await;

    let outcomes = client
        .watch_outcomes(WatchOptions::default())
        .await
        .unwrap();
    feed.send(response(1)).await.unwrap();
    feed.send(Err(Status::unavailable("replica shutting down")))
        .await
        .unwrap();
    let items: Vec<Result<Outcome, Error>> = soon(outcomes.collect()).await;

    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0].as_ref().unwrap(), &outcome(1));
    assert_eq!(
        items[1].as_ref().unwrap_err().code(),
        Some(Code::OutOfRange)
    );
    assert_eq!(
        fake.seen(|seen| seen.watches.clone()),
        [
            WatchOutcomesRequest::default(),
            WatchOutcomesRequest {
                start: Some(Start::AfterSequence(1)),
                ..Default::default()
            },
        ],
        "live only at first (not 0, not the oldest), then resumed after 1"
    );
}

#[tokio::test]
async fn a_watch_resumes_after_an_internal_answer_as_a_database_fails_over() {
    let (feed, watch_feed) = mpsc::channel(8);
    let fake = fake::start(Script {
        watch_feed: Some(watch_feed),
        ..Default::default()
    })
    .await;
    let client = connect(&fake).await;

    let outcomes = client
        .watch_outcomes(WatchOptions::default().after(4))
        .await
        .unwrap();
    feed.send(response(5)).await.unwrap();
    feed.send(Err(Status::internal("the database failed over")))
        .await
        .unwrap();
    let items: Vec<Result<Outcome, Error>> = soon(outcomes.collect()).await;

    // The fake has one feed: the reconnect after 5 is answered OUT_OF_RANGE.
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0].as_ref().unwrap(), &outcome(5));
    assert_eq!(
        items[1].as_ref().unwrap_err().code(),
        Some(Code::OutOfRange)
    );
    assert_eq!(
        fake.seen(|seen| seen.watches.clone()),
        [
            WatchOutcomesRequest {
                start: Some(Start::AfterSequence(4)),
                ..Default::default()
            },
            WatchOutcomesRequest {
                start: Some(Start::AfterSequence(5)),
                ..Default::default()
            },
        ]
    );
}

#[tokio::test]
async fn a_watch_the_server_refuses_fails_at_once() {
    let fake = fake::start(Script::default()).await;
    let client = connect(&fake).await;

    let Err(error) = client
        .watch_outcomes(WatchOptions::default().after(1))
        .await
    else {
        panic!("the fake has no feed, so the watch must fail");
    };
    assert_eq!(error.code(), Some(Code::OutOfRange), "{error}");
}

#[tokio::test]
async fn a_filtered_watch_sends_exactly_its_filters() {
    let fake = fake::start(Script::default()).await;
    let client = connect(&fake).await;

    let options = WatchOptions::default()
        .after(9)
        .from_oldest()
        .delivery_ids(["d-1", "d-2"])
        .kinds([OutcomeKind::DeadLettered, OutcomeKind::Cancelled])
        .destination_host("api.example.com")
        .endpoint_id("e-1")
        .event_type("order.created");
    let _ = client.watch_outcomes(options).await;
    let _ = client
        .watch_outcomes(WatchOptions::default().from_oldest().after(9))
        .await;

    assert_eq!(
        fake.seen(|seen| seen.watches.clone()),
        [
            WatchOutcomesRequest {
                start: Some(Start::FromOldest(true)),
                delivery_ids: vec!["d-1".into(), "d-2".into()],
                kinds: vec![
                    OutcomeKind::DeadLettered.number(),
                    OutcomeKind::Cancelled.number()
                ],
                destination_host: "api.example.com".into(),
                endpoint_id: "e-1".into(),
                event_type: "order.created".into(),
            },
            WatchOutcomesRequest {
                start: Some(Start::AfterSequence(9)),
                ..Default::default()
            },
        ],
        "the later of after and from_oldest wins"
    );
}

#[tokio::test]
async fn the_api_key_goes_with_every_call_and_stays_secret() {
    let fake = fake::start(Script {
        dead_letter_pages: three_pages(),
        ..Default::default()
    })
    .await;
    let anonymous = connect(&fake).await;
    let client = anonymous.clone().with_api_key("hk_secret").unwrap();

    client.enqueue("https://example.com").send().await.unwrap();
    let _ = client.get_delivery("any").await;
    let listed: Vec<Delivery> = client.dead_letters().try_collect().await.unwrap();
    assert_eq!(listed.len(), 5);
    let _ = client.watch_outcomes(WatchOptions::default()).await;
    anonymous
        .enqueue("https://example.com")
        .send()
        .await
        .unwrap();

    let bearer = Some("Bearer hk_secret".to_owned());
    let mut expected = vec![bearer; 6]; // enqueue, get, three pages, watch
    expected.push(None);
    assert_eq!(fake.seen(|seen| seen.authorizations.clone()), expected);
    assert!(!format!("{client:?}").contains("hk_secret"));

    let bad = anonymous.with_api_key("hk_\nsecret").unwrap_err();
    assert!(matches!(bad, Error::InvalidApiKey), "{bad:?}");
    assert!(!bad.to_string().contains("secret"), "{bad}");
}

#[tokio::test]
async fn connect_failures_name_the_address() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);

    let error = Client::connect(url.clone()).await.unwrap_err();

    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    assert_eq!(error.code(), None);
    let message = error.to_string();
    assert!(message.contains(&url), "{message}");
    assert!(message.contains("refused"), "names the cause: {message}");

    let error = Client::connect("not a url").await.unwrap_err();
    assert!(matches!(error, Error::InvalidUrl { .. }), "{error:?}");
}

#[test]
fn the_client_is_cheap_to_share() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Client>();
}

#[tokio::test]
async fn a_redrive_sends_its_ids_or_its_filter_and_never_both() {
    let fake = fake::start(Script::default()).await;
    let client = connect(&fake).await;
    let after = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);

    client
        .redrive_dead_letters()
        .ids(["d-1", "d-2"])
        .send()
        .await
        .unwrap();
    client
        .redrive_dead_letters()
        .ids(Vec::<String>::new())
        .dead_lettered_after(after)
        .destination_host("api.example.com")
        .dry_run()
        .send()
        .await
        .unwrap();
    let both = client
        .redrive_dead_letters()
        .ids(["d-1"])
        .destination_host("api.example.com")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(both, Error::InvalidRequest(_)), "{both:?}");

    assert_eq!(
        fake.seen(|seen| seen.redrives.clone()),
        [
            RedriveDeadLettersRequest {
                selection: Some(Selection::Deliveries(DeliveryIds {
                    ids: vec!["d-1".into(), "d-2".into()],
                })),
                dry_run: false,
            },
            RedriveDeadLettersRequest {
                selection: Some(Selection::Filter(DeadLetterFilter {
                    dead_lettered_after_time: Some(after.into()),
                    dead_lettered_before_time: None,
                    destination_host: "api.example.com".into(),
                })),
                dry_run: true,
            },
        ],
        "both ids and a filter are refused before anything is sent"
    );
}
