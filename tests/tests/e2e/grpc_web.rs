//! Browsers call Herald over gRPC-web: on the gRPC listener and on the
//! dashboard's, with the same API keys and tenant walls as gRPC. Pages of
//! other origins may call only when their origin is listed. The dashboard
//! listener serves the page compiled into the binary.

use herald_proto::v1::{EnqueueRequest, EnqueueResponse, GetDeliveryRequest, GetDeliveryResponse};
use herald_tests::{
    Backend, Receiver, TestDb, TestHerald, browser_get, cors_preflight, create_tenant,
    grpc_web_call, on_both_backends, scrape, test_config, total,
};
use prost::Message;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tonic::Code;

use crate::HERALD;

on_both_backends!(
    a_grpc_web_call_meets_the_same_keys_and_walls,
    only_listed_origins_may_call_across_origins,
    the_dashboard_listener_serves_the_page_it_was_built_from,
    the_dashboard_stays_on_loopback_while_no_tenant_exists,
    a_refused_call_leaves_its_connection_usable
);

const ENQUEUE: &str = "/herald.v1.DeliveryService/Enqueue";
const GET_DELIVERY: &str = "/herald.v1.DeliveryService/GetDelivery";

async fn a_grpc_web_call_meets_the_same_keys_and_walls(backend: Backend) {
    let Some(herald) = TestHerald::start_with(backend, |c| {
        c.dashboard_addr = Some("127.0.0.1:0".parse().expect("an address"));
    })
    .await
    else {
        return;
    };
    let receiver = Receiver::start().await;
    let alpha = create_tenant(HERALD, herald.database_url(), "alpha").api_key;
    let beta = create_tenant(HERALD, herald.database_url(), "beta").api_key;
    let dashboard = herald.dashboard_addr().expect("the dashboard is on");

    for (addr, path) in [(herald.addr(), "/grpc"), (dashboard, "/dashboard")] {
        let enqueued: EnqueueResponse = grpc_web_call(
            addr,
            ENQUEUE,
            Some(&alpha),
            &EnqueueRequest {
                url: receiver.url(path),
                body: b"{}".to_vec(),
                ..Default::default()
            },
        )
        .await
        .expect("alpha enqueues over gRPC-web");
        assert!(enqueued.created);
        receiver.wait_for(path, 1).await;
        let seen: GetDeliveryResponse = grpc_web_call(
            addr,
            GET_DELIVERY,
            Some(&alpha),
            &GetDeliveryRequest {
                id: enqueued.id.clone(),
            },
        )
        .await
        .expect("alpha reads its delivery");
        assert_eq!(seen.delivery.expect("a delivery").id, enqueued.id);

        let walled = grpc_web_call::<GetDeliveryResponse>(
            addr,
            GET_DELIVERY,
            Some(&beta),
            &GetDeliveryRequest {
                id: enqueued.id.clone(),
            },
        )
        .await
        .expect_err("beta does not see alpha's delivery");
        assert_eq!(walled.code, Code::NotFound as u32, "{walled:?}");
        for key in [None, Some("hk_wrong_key")] {
            let refused = grpc_web_call::<GetDeliveryResponse>(
                addr,
                GET_DELIVERY,
                key,
                &GetDeliveryRequest {
                    id: enqueued.id.clone(),
                },
            )
            .await
            .expect_err("no key, no answer");
            assert_eq!(
                refused.code,
                Code::Unauthenticated as u32,
                "{key:?}: {refused:?}"
            );
        }
    }
}

async fn only_listed_origins_may_call_across_origins(backend: Backend) {
    let listed = "http://ops.example.test:8443";
    let Some(herald) = TestHerald::start_with(backend, |c| {
        c.cors_origins = vec![listed.parse().expect("an origin")];
    })
    .await
    else {
        return;
    };
    let allowed = cors_preflight(herald.addr(), ENQUEUE, listed).await;
    assert_eq!(
        allowed
            .get("access-control-allow-origin")
            .map(|value| value.to_str().expect("text")),
        Some(listed),
        "{allowed:?}"
    );
    let allowed_headers = allowed
        .get("access-control-allow-headers")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    for header in ["authorization", "content-type", "x-grpc-web"] {
        assert!(allowed_headers.contains(header), "{allowed_headers}");
    }

    for unlisted in ["http://evil.example.test", "http://ops.example.test:9443"] {
        let refused = cors_preflight(herald.addr(), ENQUEUE, unlisted).await;
        assert!(
            refused.get("access-control-allow-origin").is_none(),
            "{unlisted} was let in: {refused:?}"
        );
    }
}

async fn the_dashboard_listener_serves_the_page_it_was_built_from(backend: Backend) {
    let Some(herald) = TestHerald::start_with(backend, |c| {
        c.dashboard_addr = Some("127.0.0.1:0".parse().expect("an address"));
    })
    .await
    else {
        return;
    };
    let dashboard = herald.dashboard_addr().expect("the dashboard is on");
    let (status, headers, body) = browser_get(dashboard, "/").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .expect("text")
            .contains("connect-src 'self'"),
        "{headers:?}"
    );
    let page = String::from_utf8_lossy(&body);
    assert!(
        page.contains(r#"<script type="module" src="app.js">"#),
        "{page}"
    );
    for (path, content_type) in [
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/app.css", "text/css; charset=utf-8"),
    ] {
        let (status, headers, body) = browser_get(dashboard, path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert!(!body.is_empty(), "{path}");
    }
    let (status, _, _) = browser_get(dashboard, "/admin").await;
    assert_eq!(status, 404);
    // The gRPC listener serves no page.
    let (status, _, _) = browser_get(herald.addr(), "/").await;
    assert_ne!(status, 200);
}

async fn the_dashboard_stays_on_loopback_while_no_tenant_exists(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let config = herald_server::Config {
        dashboard_addr: Some("0.0.0.0:0".parse().expect("an address")),
        ..test_config(db.url())
    };
    let Err(refused) = herald_server::start(config).await else {
        panic!("the dashboard listened publicly with no tenants");
    };
    let message = refused.to_string();
    assert!(
        message.contains("refusing to listen on 0.0.0.0:0 with no tenants"),
        "{message}"
    );
}

/// A call refused for its key has its short message read and thrown away,
/// so the HTTP/1.1 connection it came on (as a browser's gRPC-web calls
/// do) answers the caller's next call instead of being closed under it.
async fn a_refused_call_leaves_its_connection_usable(backend: Backend) {
    let Some(herald) = TestHerald::start_with(backend, |c| {
        c.metrics_addr = Some("127.0.0.1:0".parse().expect("an address"));
    })
    .await
    else {
        return;
    };
    let metrics = herald.metrics_addr().expect("metrics on");
    create_tenant(HERALD, herald.database_url(), "alpha");
    let mut connection = TcpStream::connect(herald.addr()).await.expect("connect");
    let message = GetDeliveryRequest {
        id: uuid::Uuid::now_v7().to_string(),
    }
    .encode_to_vec();
    let mut body = vec![0];
    body.extend(u32::try_from(message.len()).expect("short").to_be_bytes());
    body.extend(message);
    for call in 1..=3 {
        let head = format!(
            "POST {GET_DELIVERY} HTTP/1.1\r\nhost: herald\r\n\
             content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\n\
             authorization: Bearer hk_k3x9a0b1c2d4_wrong\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        // The head first and the message after it, as a browser or Node
        // may send them: the refusal is decided on the head alone.
        connection
            .write_all(head.as_bytes())
            .await
            .expect("the connection takes the call");
        refused(metrics, call).await;
        connection
            .write_all(&body)
            .await
            .expect("the connection takes the message");
        let answer = read_answer(&mut connection).await;
        assert!(answer.starts_with("http/1.1 200"), "call {call}: {answer}");
        assert!(
            answer.contains(&format!("grpc-status: {}", Code::Unauthenticated as i32)),
            "call {call}: {answer}"
        );
    }
    herald.stop().await;
}

/// Returns once the server behind `metrics` has refused `count` calls'
/// keys: it decided on the head, and its message has not been sent yet.
async fn refused(metrics: std::net::SocketAddr, count: u32) {
    let counted = async {
        while total(
            &scrape(metrics).await,
            "herald_authentication_failures_total",
        ) < f64::from(count)
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(herald_tests::PATIENCE, counted)
        .await
        .expect("the refusal is counted in time");
}

/// One HTTP/1.1 answer from `connection`: its head, lower-cased, once its
/// body (`content-length` bytes) has been read too.
async fn read_answer(connection: &mut TcpStream) -> String {
    let mut read = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(end) = read.windows(4).position(|bytes| bytes == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&read[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |value| value.trim().parse().expect("a length"));
            if read.len() >= end + 4 + length {
                return head;
            }
        }
        let n = tokio::time::timeout(herald_tests::PATIENCE, connection.read(&mut buffer))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(
            n > 0,
            "the connection was closed: {}",
            String::from_utf8_lossy(&read)
        );
        read.extend_from_slice(&buffer[..n]);
    }
}
