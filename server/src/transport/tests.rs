//! The sender against a real local HTTP server.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, sync::mpsc};
use uuid::Uuid;

use super::{
    HttpSender, OutboundRequest, TransportConfig, TransportError,
    classify::{Verdict, classify},
};
use crate::domain::{AttemptErrorKind, HttpMethod, HttpRequest};

/// A request as the receiver saw it.
struct Seen {
    method: http::Method,
    headers: http::HeaderMap,
    body: Bytes,
}

/// Serves every connection on 127.0.0.1:0 with `answer`, reporting each
/// request on the returned channel before answering.
async fn receiver<F, Fut>(answer: F) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let answer = Arc::clone(&answer);
            let seen_tx = seen_tx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<Incoming>| {
                    let answer = Arc::clone(&answer);
                    let seen_tx = seen_tx.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        let _ = seen_tx.send(Seen {
                            method: parts.method,
                            headers: parts.headers,
                            body,
                        });
                        Ok::<_, Infallible>(answer().await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen_rx)
}

fn status(code: u16) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .body(Full::default())
        .unwrap()
}

fn sender(timeout: Duration) -> HttpSender {
    HttpSender::new(TransportConfig {
        request_timeout: timeout,
        response_excerpt_bytes: 16,
    })
    .unwrap()
}

fn request(addr: SocketAddr) -> OutboundRequest {
    OutboundRequest {
        delivery_id: Uuid::now_v7(),
        attempt_number: 2,
        http: HttpRequest {
            method: HttpMethod::Put,
            url: format!("http://{addr}/hook?x=1"),
            headers: vec![("x-one".into(), "1".into()), ("x-one".into(), "2".into())],
            content_type: Some("application/octet-stream".into()),
            body: Bytes::from_static(&[0, 159, 146, 150, 255, b'{']),
        },
    }
}

#[tokio::test]
async fn sends_body_and_headers_byte_for_byte() {
    let (addr, mut seen) = receiver(|| async { status(204) }).await;
    let request = request(addr);
    let report = sender(Duration::from_secs(5)).send(&request).await;
    assert_eq!(report.result.unwrap().status, StatusCode::NO_CONTENT);
    let seen = seen.recv().await.unwrap();
    assert_eq!(seen.method, http::Method::PUT);
    assert_eq!(seen.body, request.http.body);
    let values: Vec<_> = seen.headers.get_all("x-one").iter().collect();
    assert_eq!(values, ["1", "2"]);
    assert_eq!(seen.headers["content-type"], "application/octet-stream");
    assert_eq!(
        seen.headers["webhook-id"],
        request.delivery_id.to_string().as_str()
    );
    assert_eq!(seen.headers["herald-attempt"], "2");
    assert!(
        seen.headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("herald/")
    );
    let timestamp: u64 = seen.headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(timestamp > 1_700_000_000);
}

#[tokio::test]
async fn does_not_follow_redirects() {
    let (addr, mut seen) = receiver(|| async {
        Response::builder()
            .status(302)
            .header("location", "/elsewhere")
            .body(Full::default())
            .unwrap()
    })
    .await;
    let report = sender(Duration::from_secs(5)).send(&request(addr)).await;
    assert_eq!(classify(&report.result), Verdict::Permanent);
    assert_eq!(report.result.unwrap().status, StatusCode::FOUND);
    seen.recv().await.unwrap();
    assert!(
        seen.try_recv().is_err(),
        "the redirect target was requested"
    );
}

#[tokio::test]
async fn times_out_on_a_receiver_that_never_answers() {
    let (addr, _seen) = receiver(std::future::pending).await;
    let report = sender(Duration::from_millis(200))
        .send(&request(addr))
        .await;
    let error = report.result.unwrap_err();
    assert!(matches!(error, TransportError::Timeout(_)), "{error}");
    assert_eq!(error.kind(), AttemptErrorKind::Timeout);
    assert!(report.duration >= Duration::from_millis(200));
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let error = sender(Duration::from_secs(5))
        .send(&request(addr))
        .await
        .result
        .unwrap_err();
    assert_eq!(error.kind(), AttemptErrorKind::Connect, "{error}");
    assert!(error.to_string().contains(&addr.to_string()), "{error}");
    assert_eq!(classify(&Err(error)), Verdict::Retry { retry_after: None });
}

#[tokio::test]
async fn keeps_a_capped_excerpt_and_retry_after() {
    let (addr, _seen) = receiver(|| async {
        Response::builder()
            .status(503)
            .header("retry-after", "7")
            .body(Full::new(Bytes::from(vec![b'x'; 1000])))
            .unwrap()
    })
    .await;
    let response = sender(Duration::from_secs(5))
        .send(&request(addr))
        .await
        .result
        .unwrap();
    assert_eq!(response.excerpt, Bytes::from(vec![b'x'; 16]));
    assert_eq!(response.retry_after, Some(Duration::from_secs(7)));
    assert_eq!(
        classify(&Ok(response)),
        Verdict::Retry {
            retry_after: Some(Duration::from_secs(7))
        }
    );
}
