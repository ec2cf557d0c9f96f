//! The outbound HTTP client: one attempt of one delivery.
//!
//! Consumes an [`OutboundRequest`] from the scheduler's executor and
//! produces an [`AttemptReport`]: the response status, `Retry-After` and a
//! capped excerpt of the body, or a typed [`TransportError`]. [`classify`]
//! turns that into a verdict. Knows nothing of the database or gRPC.
//!
//! One pooled hyper client (HTTP/1.1 and HTTP/2 over rustls with the
//! Mozilla roots) serves every attempt, so connections to a receiver are
//! reused across deliveries. Redirects are never followed: a 3xx is the
//! receiver's answer. The whole attempt is bounded by the request timeout;
//! once the status is in, a slow body only shortens the excerpt.

pub mod classify;
mod error;
mod retry_after;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

pub use error::TransportError;
pub use retry_after::parse_retry_after;

use crate::domain::HttpRequest;

/// `user-agent` sent with every attempt.
const USER_AGENT: &str = concat!("herald/", env!("CARGO_PKG_VERSION"));
/// How long an idle pooled connection is kept for the next attempt.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How attempts are made.
#[derive(Debug, Clone, Copy)]
pub struct TransportConfig {
    /// Longest one attempt may take, connect to response.
    pub request_timeout: Duration,
    /// Most bytes of the response body kept as the excerpt.
    pub response_excerpt_bytes: usize,
}

/// One delivery attempt to send.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    /// Sent as `webhook-id`, the same on every attempt.
    pub delivery_id: uuid::Uuid,
    /// Sent as `herald-attempt`.
    pub attempt_number: u32,
    /// What to send.
    pub http: HttpRequest,
}

/// What happened on one attempt.
#[derive(Debug)]
pub struct AttemptReport {
    /// When the attempt started (wall clock, for the attempt history).
    pub started_at: SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// The response, or why there was none.
    pub result: Result<HttpResponse, TransportError>,
}

/// The part of a response Herald keeps.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: http::StatusCode,
    /// The delay asked for by `Retry-After`, if any.
    pub retry_after: Option<Duration>,
    /// The first bytes of the body.
    pub excerpt: Bytes,
}

/// Sends attempts over a shared connection pool; cheap to clone.
#[derive(Clone)]
pub struct HttpSender {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    config: TransportConfig,
}

impl HttpSender {
    /// A sender with its own connection pool. TLS uses rustls with the ring
    /// provider and the Mozilla roots compiled in, so it works the same on
    /// every machine without a system trust store.
    pub fn new(config: TransportConfig) -> Result<Self, rustls::Error> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.request_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(https);
        Ok(Self { client, config })
    }

    /// Makes one attempt. Never panics and never follows redirects.
    pub async fn send(&self, request: &OutboundRequest) -> AttemptReport {
        let started_at = SystemTime::now();
        let started = Instant::now();
        let result = self
            .exchange(request, started + self.config.request_timeout)
            .await;
        AttemptReport {
            started_at,
            duration: started.elapsed(),
            result,
        }
    }

    async fn exchange(
        &self,
        request: &OutboundRequest,
        deadline: Instant,
    ) -> Result<HttpResponse, TransportError> {
        let http_request = build_request(request)?;
        let authority = http_request
            .uri()
            .authority()
            .map(ToString::to_string)
            .unwrap_or_default();
        let response = tokio::time::timeout_at(deadline.into(), self.client.request(http_request))
            .await
            .map_err(|_| TransportError::Timeout(self.config.request_timeout))?
            .map_err(|error| TransportError::from_client(&error, authority))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, SystemTime::now()));
        let excerpt = read_excerpt(
            response.into_body(),
            self.config.response_excerpt_bytes,
            deadline,
        )
        .await;
        Ok(HttpResponse {
            status,
            retry_after,
            excerpt,
        })
    }
}

fn build_request(outbound: &OutboundRequest) -> Result<Request<Full<Bytes>>, TransportError> {
    let request = &outbound.http;
    let invalid = |what: String| TransportError::InvalidRequest(what);
    let mut builder = Request::builder()
        .method(request.method.to_http())
        .uri(request.url.as_str());
    let headers = builder.headers_mut().ok_or_else(|| {
        invalid(format!(
            "URL {:?} is not a valid request target",
            request.url
        ))
    })?;
    for (name, value) in &request.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("header name {name:?}")))?;
        let value =
            HeaderValue::from_str(value).map_err(|_| invalid(format!("value of header {name}")))?;
        headers.append(name, value);
    }
    if let Some(content_type) = &request.content_type {
        let value =
            HeaderValue::from_str(content_type).map_err(|_| invalid("content type".into()))?;
        headers.insert(header::CONTENT_TYPE, value);
    }
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let id = HeaderValue::try_from(outbound.delivery_id.to_string())
        .map_err(|_| invalid("delivery id".into()))?;
    headers.insert("webhook-id", id);
    headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
    headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    headers.insert("herald-attempt", HeaderValue::from(outbound.attempt_number));
    builder
        .body(Full::new(request.body.clone()))
        .map_err(|error| invalid(format!("{error} (URL {:?})", request.url)))
}

/// Reads at most `limit` bytes of `body`, stopping early at `deadline` or a
/// broken body: the status is already known, the excerpt is best effort.
async fn read_excerpt(mut body: hyper::body::Incoming, limit: usize, deadline: Instant) -> Bytes {
    let mut excerpt = BytesMut::new();
    while excerpt.len() < limit {
        let frame = match tokio::time::timeout_at(deadline.into(), body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None | Some(Err(_))) | Err(_) => break,
        };
        if let Ok(data) = frame.into_data() {
            let room = limit - excerpt.len();
            excerpt.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    excerpt.freeze()
}

#[cfg(test)]
mod tests;
