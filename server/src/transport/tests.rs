//! The sender against a real local HTTP server on 127.0.0.1.

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{
    body::{Body, Frame, Incoming},
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::{io::AsyncReadExt, net::TcpListener, sync::mpsc};
use uuid::Uuid;

use super::{
    HttpSender, OutboundRequest, TargetPolicy, TransportConfig, TransportError,
    classify::{Verdict, classify},
};
use crate::{
    domain::{AttemptErrorKind, HttpMethod, HttpRequest, TraceContext},
    tenants::{SigningKeys, SigningSecret},
};

/// The excerpt cap every test sender uses.
const EXCERPT: usize = 16;

/// A request as the receiver saw it.
struct Seen {
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: Bytes,
}

/// Serves HTTP/1.1 on 127.0.0.1:0, answering every request with `answer`
/// after reporting it, whole, on the returned channel.
async fn receiver<F, Fut, B>(answer: F) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send,
    B: Body<Data = Bytes, Error = Infallible> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = Arc::clone(&answer);
            let seen_tx = seen_tx.clone();
            let service = service_fn(move |request: hyper::Request<Incoming>| {
                let answer = Arc::clone(&answer);
                let seen_tx = seen_tx.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let body = body.collect().await.unwrap().to_bytes();
                    let _ = seen_tx.send(Seen {
                        method: parts.method,
                        uri: parts.uri,
                        headers: parts.headers,
                        body,
                    });
                    Ok::<_, Infallible>(answer().await)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
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
    HttpSender::new(
        TransportConfig {
            request_timeout: timeout,
            response_excerpt_bytes: EXCERPT,
        },
        TargetPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]),
    )
    .unwrap()
}

fn request(url: String) -> OutboundRequest {
    OutboundRequest {
        delivery_id: Uuid::now_v7(),
        attempt_number: 2,
        http: HttpRequest {
            method: HttpMethod::Put,
            url,
            headers: vec![
                ("x-one".into(), "1".into()),
                ("x-trace".into(), "abc".into()),
                ("x-one".into(), "2".into()),
            ],
            content_type: Some("application/octet-stream".into()),
            // Not UTF-8: the body must pass through as bytes.
            body: Bytes::from_static(&[0, 159, 146, 150, 255, b'{', b'\r', b'\n']),
        },
        trace: Some(TraceContext {
            traceparent: TRACEPARENT.to_owned(),
            tracestate: Some("vendor=1".to_owned()),
        }),
        signing: Arc::new(SigningKeys::new(
            &crate::tenants::Signer::Tenant("test".into()),
            [SigningSecret::from_text(SECRET)],
        )),
        event_type: Some("order.created".into()),
    }
}

/// The trace context of [`request`].
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The signing secret of [`request`].
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::test]
async fn sends_method_body_and_headers_byte_for_byte() {
    let (addr, mut seen) = receiver(|| async { status(204) }).await;
    let request = request(format!("http://{addr}/hook?x=1"));
    let report = sender(Duration::from_secs(5)).send(&request).await;
    assert_eq!(report.result.unwrap().status, StatusCode::NO_CONTENT);

    let seen = seen.recv().await.unwrap();
    assert_eq!(seen.method, http::Method::PUT);
    assert_eq!(seen.uri, "/hook?x=1");
    assert_eq!(seen.body, request.http.body);
    let one: Vec<_> = seen.headers.get_all("x-one").iter().collect();
    assert_eq!(one, ["1", "2"], "repeated caller headers keep their order");
    assert_eq!(seen.headers["x-trace"], "abc");
    assert_eq!(seen.headers["content-type"], "application/octet-stream");
    assert_eq!(
        seen.headers["webhook-id"],
        request.delivery_id.hyphenated().to_string().as_str()
    );
    assert_eq!(seen.headers["herald-attempt"], "2");
    assert_eq!(seen.headers["herald-event-type"], "order.created");
    assert_eq!(seen.headers["traceparent"], TRACEPARENT);
    assert_eq!(seen.headers["tracestate"], "vendor=1");
    assert_eq!(
        seen.headers["user-agent"],
        concat!("herald/", env!("CARGO_PKG_VERSION"))
    );
    let started = report
        .started_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    assert_eq!(
        seen.headers["webhook-timestamp"],
        started.as_secs().to_string().as_str(),
        "the timestamp is the attempt's start"
    );
    let secret: herald_client::webhook::Secret = SECRET.parse().unwrap();
    herald_client::webhook::verify(&secret, &seen.headers, &seen.body)
        .expect("the receiver can verify the signature of a binary body");
}

#[tokio::test]
async fn rotation_signs_with_both_secrets() {
    let (addr, mut seen) = receiver(|| async { status(204) }).await;
    let old = SigningSecret::generate();
    let new = SigningSecret::generate();
    let mut request = request(format!("http://{addr}/"));
    request.signing = Arc::new(SigningKeys::new(
        &crate::tenants::Signer::Tenant("test".into()),
        [new.clone(), old.clone()],
    ));
    sender(Duration::from_secs(5))
        .send(&request)
        .await
        .result
        .unwrap();
    let seen = seen.recv().await.unwrap();
    let signatures = seen.headers["webhook-signature"].to_str().unwrap();
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    for secret in [old, new] {
        let secret: herald_client::webhook::Secret = secret.expose().parse().unwrap();
        herald_client::webhook::verify(&secret, &seen.headers, &seen.body).unwrap();
    }
}

#[tokio::test]
async fn blocked_addresses_are_refused_unsent() {
    let (addr, mut seen) = receiver(|| async { status(204) }).await;
    let guarded = HttpSender::new(
        TransportConfig {
            request_timeout: Duration::from_secs(5),
            response_excerpt_bytes: EXCERPT,
        },
        TargetPolicy::default(),
    )
    .unwrap();
    let port = addr.port();
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://localhost:{port}/"),
    ] {
        let error = guarded
            .send(&request(url.clone()))
            .await
            .result
            .unwrap_err();
        assert!(
            matches!(error, TransportError::Blocked { .. }),
            "{url}: {error}"
        );
        assert_eq!(error.kind(), AttemptErrorKind::Blocked);
        assert!(error.to_string().contains("loopback"), "{error}");
        assert_eq!(classify(&Err(error)), Verdict::Permanent);
    }
    assert!(seen.try_recv().is_err(), "nothing reached the receiver");
}

#[tokio::test]
async fn returns_redirects_without_following_them() {
    let (addr, mut seen) = receiver(|| async {
        Response::builder()
            .status(302)
            .header("location", "/elsewhere")
            .body(Full::default())
            .unwrap()
    })
    .await;
    let report = sender(Duration::from_secs(5))
        .send(&request(format!("http://{addr}/hook")))
        .await;
    assert_eq!(classify(&report.result), Verdict::Permanent);
    assert_eq!(report.result.unwrap().status, StatusCode::FOUND);
    assert_eq!(seen.recv().await.unwrap().uri, "/hook");
    assert!(
        seen.try_recv().is_err(),
        "the redirect target was requested"
    );
}

#[tokio::test]
async fn times_out_on_a_receiver_that_never_answers() {
    let (addr, mut seen) = receiver(std::future::pending::<Response<Full<Bytes>>>).await;
    let timeout = Duration::from_millis(200);
    let report = sender(timeout)
        .send(&request(format!("http://{addr}/")))
        .await;
    seen.recv().await.expect("the request arrived");
    let error = report.result.unwrap_err();
    assert!(
        matches!(error, TransportError::Timeout(t) if t == timeout),
        "{error}"
    );
    assert_eq!(error.kind(), AttemptErrorKind::Timeout);
    assert_eq!(classify(&Err(error)), Verdict::Retry { retry_after: None });
    assert!(report.duration >= timeout, "{:?}", report.duration);
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let error = sender(Duration::from_secs(5))
        .send(&request(format!("http://{addr}/")))
        .await
        .result
        .unwrap_err();
    assert!(matches!(error, TransportError::Connect { .. }), "{error:?}");
    assert_eq!(error.kind(), AttemptErrorKind::Connect);
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("connection to {addr} failed: ")),
        "{message}"
    );
    assert!(message.contains("Connection refused"), "{message}");
    assert_eq!(classify(&Err(error)), Verdict::Retry { retry_after: None });
}

#[tokio::test]
async fn a_connection_closed_without_an_answer_is_an_io_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        // Take the start of the request, then hang up without answering.
        let _ = stream.read(&mut [0; 64]).await;
    });
    let error = sender(Duration::from_secs(5))
        .send(&request(format!("http://{addr}/")))
        .await
        .result
        .unwrap_err();
    assert!(matches!(error, TransportError::Io { .. }), "{error:?}");
    assert_eq!(error.kind(), AttemptErrorKind::Io);
    assert!(
        error
            .to_string()
            .starts_with(&format!("request to {addr} failed: ")),
        "{error}"
    );
    assert_eq!(classify(&Err(error)), Verdict::Retry { retry_after: None });
}

#[tokio::test]
async fn a_failed_tls_handshake_is_a_connect_error() {
    // A plain-HTTP receiver behind an https URL: the handshake fails.
    let (addr, _seen) = receiver(|| async { status(200) }).await;
    let error = sender(Duration::from_secs(5))
        .send(&request(format!("https://{addr}/")))
        .await
        .result
        .unwrap_err();
    assert!(matches!(error, TransportError::Connect { .. }), "{error}");
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
        .send(&request(format!("http://{addr}/")))
        .await
        .result
        .unwrap();
    assert_eq!(response.excerpt, Bytes::from(vec![b'x'; EXCERPT]));
    assert_eq!(response.retry_after, Some(Duration::from_secs(7)));
    assert_eq!(
        classify(&Ok(response)),
        Verdict::Retry {
            retry_after: Some(Duration::from_secs(7))
        }
    );
}

/// A response body that never ends, and says when the server dropped it.
struct Endless {
    dropped: mpsc::UnboundedSender<()>,
}

impl Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"0123456789")))))
    }
}

impl Drop for Endless {
    fn drop(&mut self) {
        let _ = self.dropped.send(());
    }
}

#[tokio::test]
async fn stops_reading_at_the_cap_and_hangs_up() {
    let (dropped_tx, mut dropped) = mpsc::unbounded_channel();
    let (addr, _seen) = receiver(move || {
        let dropped = dropped_tx.clone();
        async move { Response::new(Endless { dropped }) }
    })
    .await;
    let timeout = Duration::from_secs(30);
    let report = sender(timeout)
        .send(&request(format!("http://{addr}/")))
        .await;
    assert!(report.duration < timeout, "read until the timeout");
    let response = report.result.unwrap();
    assert_eq!(response.excerpt, &b"0123456789012345"[..]);
    // The server drops the body only once the client closed the
    // connection: the rest was neither drained nor left hanging.
    tokio::time::timeout(timeout, dropped.recv())
        .await
        .expect("the connection was kept open")
        .unwrap();
}

#[tokio::test]
async fn an_unusable_url_is_an_invalid_request_and_permanent() {
    for url in ["ftp://example.com/x", "/relative", "http://exa mple.com/"] {
        let report = sender(Duration::from_secs(5))
            .send(&request(url.into()))
            .await;
        let error = report.result.unwrap_err();
        assert!(
            matches!(error, TransportError::InvalidRequest(_)),
            "{url}: {error}"
        );
        assert_eq!(error.kind(), AttemptErrorKind::InvalidRequest);
        assert!(error.to_string().contains(url), "{error}");
        assert_eq!(classify(&Err(error)), Verdict::Permanent);
    }
}
