//! Listings that scale: pages capped by bytes as well as rows, a basic view
//! without bodies by default, page tokens bound to their filters and
//! refused when altered, page sizes reduced to the most allowed, and
//! (PostgreSQL) the filtered listing reading its own index.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use futures::TryStreamExt;
use herald_client::{Client, DeliveryQuery};
use herald_proto::v1::{
    DeliveryState, DeliveryView, EnqueueRequest, Header, ListDeliveriesRequest,
    ListDeliveriesResponse,
};
use herald_server::store::{PageCursor, Store, records::DeliveryFilter};
use herald_tests::{Backend, TestHerald, accepted, on_both_backends};
use prost::Message;
use sea_orm::{ConnectionTrait, Database};
use tonic::Code;

on_both_backends!(
    a_page_token_is_bound_to_its_filters_and_refused_when_altered,
    a_page_size_above_the_most_is_reduced_to_it,
    a_listing_of_large_bodies_pages_by_bytes_and_lists_each_once,
    the_basic_view_leaves_out_bodies_and_the_full_view_has_them,
    the_client_takes_a_delivery_larger_than_grpcs_default_limit,
    a_host_filter_matches_the_host_however_it_is_written,
    a_listing_by_idempotency_key_finds_that_delivery_alone,
);

/// Most encoded bytes of a listing page.
const MAX_PAGE_BYTES: usize = 2 * 1024 * 1024;

fn in_a_year() -> Option<prost_types::Timestamp> {
    Some((SystemTime::now() + Duration::from_secs(365 * 24 * 3600)).into())
}

/// Enqueues `count` deliveries to `host` that stay pending for a year.
async fn enqueue_pending(herald: &TestHerald, host: &str, count: usize) {
    for chunk in 0..count.div_ceil(1000) {
        let size = (count - chunk * 1000).min(1000);
        let results = herald
            .enqueue_batch(
                (0..size)
                    .map(|_| EnqueueRequest {
                        url: format!("https://{host}/hook"),
                        not_before_time: in_a_year(),
                        ..Default::default()
                    })
                    .collect(),
            )
            .await;
        assert!(results.iter().all(|result| accepted(result).is_some()));
    }
}

fn pending(host: &str, page_size: u32, page_token: String) -> ListDeliveriesRequest {
    ListDeliveriesRequest {
        state: DeliveryState::Pending.into(),
        destination_host: host.into(),
        page_size,
        page_token,
        ..Default::default()
    }
}

async fn a_page_token_is_bound_to_its_filters_and_refused_when_altered(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    enqueue_pending(&herald, "a.example", 3).await;
    let mut client = herald.client();
    let first = client
        .list_deliveries(pending("a.example", 1, String::new()))
        .await
        .unwrap()
        .into_inner();
    let token = first.next_page_token;
    assert!(!token.is_empty());
    let second = client
        .list_deliveries(pending("a.example", 1, token.clone()))
        .await
        .expect("the same filters take the token")
        .into_inner();
    assert_eq!(second.deliveries.len(), 1);
    assert_ne!(second.deliveries[0].id, first.deliveries[0].id);

    let mut changed_state = pending("a.example", 1, token.clone());
    changed_state.state = DeliveryState::Succeeded.into();
    let mut changed_time = pending("a.example", 1, token.clone());
    changed_time.created_before_time = in_a_year();
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(&token).unwrap()).unwrap();
    // The last character of the position (the id) changed.
    let mut altered = text.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == '0' { '1' } else { '0' });
    let tampered = URL_SAFE_NO_PAD.encode(altered);
    for (what, request) in [
        ("a changed state", changed_state),
        ("a changed host", pending("b.example", 1, token.clone())),
        ("a changed time filter", changed_time),
        ("an altered token", pending("a.example", 1, tampered)),
    ] {
        let refused = client.list_deliveries(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{what}: {refused:?}");
        assert!(
            refused.message().starts_with("page_token:"),
            "{what}: {}",
            refused.message()
        );
    }
    herald.stop().await;
}

async fn a_page_size_above_the_most_is_reduced_to_it(backend: Backend) {
    let Some(herald) = TestHerald::start_with(backend, |config| {
        config.limits.max_page_size = 2;
    })
    .await
    else {
        return;
    };
    enqueue_pending(&herald, "a.example", 3).await;
    let page = herald
        .client()
        .list_deliveries(pending("a.example", 1000, String::new()))
        .await
        .expect("a page size above the most is not refused")
        .into_inner();
    assert_eq!(page.deliveries.len(), 2, "a page of the most allowed");
    assert!(
        !page.next_page_token.is_empty(),
        "and the rest on a next page"
    );
    herald.stop().await;
}

/// Deliveries listed by host read the index made for that filter, the
/// page's position in its index condition (a range), on a table with
/// enough rows, after ANALYZE, for the planner to choose. PostgreSQL's
/// plans only: SQLite has no planner statistics to speak of.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_host_listing_reads_its_own_index() {
    let Some(herald) = TestHerald::start(Backend::Postgres).await else {
        return;
    };
    enqueue_pending(&herald, "a.example", 3900).await;
    enqueue_pending(&herald, "b.example", 100).await;
    let db = Database::connect(herald.database_url()).await.unwrap();
    db.execute_unprepared(
        "UPDATE deliveries SET state = 'succeeded', next_attempt_at_ms = NULL, \
         finished_at_ms = created_at_ms WHERE host = 'a.example'",
    )
    .await
    .unwrap();
    db.execute_unprepared("ANALYZE deliveries").await.unwrap();
    let store = Store::connect(herald.database_url()).await.unwrap();
    let cursor = Some(PageCursor {
        at_ms: i64::MAX,
        id: uuid::Uuid::max(),
    });
    let filter = DeliveryFilter {
        host: Some("b.example".into()),
        ..Default::default()
    };
    let plan = store
        .explain_list_deliveries("default", &filter, cursor, 100)
        .await
        .unwrap()
        .expect("a plan on PostgreSQL");
    assert!(!plan.contains("Seq Scan"), "{plan}");
    assert!(
        plan.contains("deliveries_host_created_idx"),
        "the host index is not used:\n{plan}"
    );
    let condition = plan
        .lines()
        .find(|line| line.contains("Index Cond"))
        .unwrap_or_default();
    assert!(
        condition.contains("ROW(created_at_ms, id) <"),
        "the position is not a range of the index:\n{plan}"
    );
    store.close().await.unwrap();
    db.close().await.unwrap();
    herald.stop().await;
}

/// Enqueues `count` pending deliveries to `host`, each with a body of
/// `body_bytes` bytes (distinct per delivery) and a header; returns each
/// id with its body.
async fn enqueue_bodies(
    herald: &TestHerald,
    count: usize,
    body_bytes: usize,
) -> HashMap<String, Vec<u8>> {
    let mut enqueued = HashMap::new();
    for n in 0..count {
        let body = vec![b'a' + (n % 26) as u8; body_bytes];
        let id = herald
            .enqueue(EnqueueRequest {
                url: "https://a.example/hook".into(),
                headers: vec![Header {
                    name: "x-n".into(),
                    value: n.to_string(),
                }],
                body: body.clone(),
                not_before_time: in_a_year(),
                ..Default::default()
            })
            .await;
        enqueued.insert(id, body);
    }
    enqueued
}

async fn a_listing_of_large_bodies_pages_by_bytes_and_lists_each_once(backend: Backend) {
    let Some(herald) = TestHerald::start_with(backend, |config| {
        config.limits.max_body_bytes = 1024 * 1024;
    })
    .await
    else {
        return;
    };
    // Three fit in a page, four would not.
    let enqueued = enqueue_bodies(&herald, 10, 600_000).await;
    let mut client = herald.client();
    let mut listed: HashMap<String, Vec<u8>> = HashMap::new();
    let mut pages = 0;
    let mut page_token = String::new();
    loop {
        let page: ListDeliveriesResponse = client
            .list_deliveries(ListDeliveriesRequest {
                view: DeliveryView::Full.into(),
                page_size: 100,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(
            page.encoded_len() <= MAX_PAGE_BYTES + 64,
            "page {pages} has {} bytes",
            page.encoded_len()
        );
        assert!(!page.deliveries.is_empty(), "page {pages} is empty");
        for delivery in page.deliveries {
            let again = listed.insert(delivery.id.clone(), delivery.body);
            assert!(again.is_none(), "{} listed twice", delivery.id);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(pages, 4, "3 + 3 + 3 + 1");
    assert_eq!(listed, enqueued, "every delivery once, with its body");
    herald.stop().await;
}

async fn the_basic_view_leaves_out_bodies_and_the_full_view_has_them(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let enqueued = enqueue_bodies(&herald, 2, 1000).await;
    let mut client = herald.client();
    let list = |view: DeliveryView| ListDeliveriesRequest {
        view: view.into(),
        ..Default::default()
    };
    for view in [DeliveryView::Unspecified, DeliveryView::Basic] {
        let page = client
            .list_deliveries(list(view))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.deliveries.len(), 2);
        for delivery in &page.deliveries {
            assert!(delivery.body.is_empty(), "{view:?}: {delivery:?}");
            assert!(delivery.headers.is_empty(), "{view:?}: {delivery:?}");
            assert_eq!(delivery.url, "https://a.example/hook");
        }
    }
    let page = client
        .list_deliveries(list(DeliveryView::Full))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.deliveries.len(), 2);
    for delivery in &page.deliveries {
        assert_eq!(delivery.body, enqueued[&delivery.id]);
        assert_eq!(delivery.headers.len(), 1, "{delivery:?}");
    }
    herald.stop().await;
}

/// A server that takes bodies larger than gRPC's default 4 MiB message
/// limit sends them back in a delivery and a listing; the client takes
/// them.
async fn the_client_takes_a_delivery_larger_than_grpcs_default_limit(backend: Backend) {
    let Some(herald) = TestHerald::start_with(backend, |config| {
        config.limits.max_body_bytes = 6 * 1024 * 1024;
    })
    .await
    else {
        return;
    };
    let enqueued = enqueue_bodies(&herald, 1, 5 * 1024 * 1024).await;
    let client = Client::connect(format!("http://{}", herald.addr()))
        .await
        .expect("connect");
    let (id, body) = enqueued.iter().next().unwrap();
    assert_eq!(&client.get_delivery(id).await.expect("get").body, body);
    let listed: Vec<_> = client
        .deliveries(DeliveryQuery::default().full())
        .try_collect()
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(&listed[0].body, body);
    herald.stop().await;
}

/// A host filter finds a destination's deliveries however a person writes
/// the host (any case, an IDN or its punycode, IPv6 with or without
/// brackets), as destinations store it; one with a port is refused with
/// the field in the error's details.
async fn a_host_filter_matches_the_host_however_it_is_written(backend: Backend) {
    use tonic_types::StatusExt;

    let Some(herald) = TestHerald::start_with(backend, |config| {
        config
            .allow_target_cidrs
            .push("::1/128".parse().expect("a CIDR"));
    })
    .await
    else {
        return;
    };
    enqueue_pending(&herald, "bücher.example", 1).await;
    enqueue_pending(&herald, "[::1]", 2).await;
    let mut client = herald.client();
    for (filter, expected) in [
        ("BÜCHER.example", 1),
        ("xn--bcher-kva.example", 1),
        ("::1", 2),
        ("[0:0::1]", 2),
    ] {
        let page = client
            .list_deliveries(pending(filter, 10, String::new()))
            .await
            .unwrap_or_else(|status| panic!("{filter}: {status:?}"))
            .into_inner();
        assert_eq!(page.deliveries.len(), expected, "{filter}");
    }

    let refused = client
        .list_deliveries(pending("bücher.example:443", 10, String::new()))
        .await
        .expect_err("a port is refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let details = refused.get_error_details();
    let violations = &details
        .bad_request()
        .expect("a BadRequest detail")
        .field_violations;
    assert_eq!(violations[0].field, "destination_host");
    let info = details.error_info().expect("an ErrorInfo detail");
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("INVALID_FIELD", "herald")
    );
    herald.stop().await;
}

/// An idempotency key narrows a listing to the delivery enqueued with it,
/// and its page tokens are bound to it like every other filter's.
async fn a_listing_by_idempotency_key_finds_that_delivery_alone(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let mut ids = Vec::new();
    for key in ["order-1", "order-2", ""] {
        ids.push(
            herald
                .enqueue(EnqueueRequest {
                    url: "https://keys.example/hook".into(),
                    idempotency_key: key.into(),
                    not_before_time: in_a_year(),
                    ..Default::default()
                })
                .await,
        );
    }
    let mut client = herald.client();
    let by_key = |key: &str, page_token: String| ListDeliveriesRequest {
        idempotency_key: key.into(),
        page_token,
        ..Default::default()
    };
    let found = client
        .list_deliveries(by_key("order-2", String::new()))
        .await
        .unwrap()
        .into_inner();
    let found: Vec<&str> = found.deliveries.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(found, [ids[1].as_str()], "the delivery with that key alone");
    let none = client
        .list_deliveries(by_key("order-3", String::new()))
        .await
        .unwrap()
        .into_inner();
    assert!(none.deliveries.is_empty(), "no delivery has that key");
    // A token from the listing of everything does not serve the key's.
    let everything = client
        .list_deliveries(ListDeliveriesRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let refused = client
        .list_deliveries(by_key("order-1", everything.next_page_token))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let too_long = client
        .list_deliveries(by_key(&"k".repeat(300), String::new()))
        .await
        .unwrap_err();
    assert_eq!(too_long.code(), Code::InvalidArgument);
    assert!(
        too_long.message().starts_with("idempotency_key"),
        "{too_long:?}"
    );
    herald.stop().await;
}
