//! [`HttpSender`]: the pooled client, and one attempt over it.

use std::{
    net::IpAddr,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri, header, uri::Scheme};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use tokio::time::Sleep;

use super::{
    AttemptReport, HttpResponse, OutboundRequest, TransportConfig, TransportError,
    guard::{GuardedResolver, TargetPolicy},
};

/// `user-agent` sent with every attempt.
const USER_AGENT: &str = concat!("herald/", env!("CARGO_PKG_VERSION"));
/// How long an idle pooled connection is kept for the next attempt.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Sends attempts over one shared connection pool; cheap to clone (the
/// clones share the pool).
#[derive(Clone)]
pub struct HttpSender {
    client: Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>,
    config: TransportConfig,
    policy: Arc<TargetPolicy>,
}

impl HttpSender {
    /// A sender with its own connection pool that connects only where
    /// `policy` allows. TLS uses rustls with the ring provider passed in
    /// explicitly (no global provider is installed) and the Mozilla roots
    /// compiled in. Fails only if the provider cannot speak rustls' default
    /// TLS versions, which ring can.
    pub fn new(config: TransportConfig, policy: TargetPolicy) -> Result<Self, rustls::Error> {
        let policy = Arc::new(policy);
        let mut http = HttpConnector::new_with_resolver(GuardedResolver::new(Arc::clone(&policy)));
        // The TLS layer above handles https URLs; this one must let them by.
        http.enforce_http(false);
        http.set_nodelay(true);
        // The attempt's own timer is what callers see. This one matters
        // when a checkout wins the race and the pool finishes a connect in
        // the background: it must not hang for the OS's minutes.
        http.set_connect_timeout(Some(config.request_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            // Without a pool timer, idle connections to a receiver that is
            // never called again would stay in the pool for good.
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(https);
        Ok(Self {
            client,
            config,
            policy,
        })
    }

    /// Makes one attempt. Never panics, never follows redirects, and
    /// returns within about `request_timeout`.
    pub async fn send(&self, request: &OutboundRequest) -> AttemptReport {
        let started_at = SystemTime::now();
        let started = Instant::now();
        let result = self.exchange(request, started_at).await;
        AttemptReport {
            started_at,
            duration: started.elapsed(),
            result,
        }
    }

    async fn exchange(
        &self,
        outbound: &OutboundRequest,
        started_at: SystemTime,
    ) -> Result<HttpResponse, TransportError> {
        let request = build_request(outbound, unix_seconds(started_at))?;
        let authority = request
            .uri()
            .authority()
            .map(ToString::to_string)
            .unwrap_or_default();
        // IP literals never reach the resolver, so they are checked here.
        let literal = request.uri().host().and_then(|host| {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .ok()
        });
        if let Some(ip) = literal
            && let Err(blocked) = self.policy.check(ip)
        {
            return Err(TransportError::Blocked { authority, blocked });
        }
        // One timer for the whole attempt: connect, send, headers, excerpt.
        // (`sleep` saturates a huge timeout instead of overflowing.)
        let deadline = tokio::time::sleep(self.config.request_timeout);
        tokio::pin!(deadline);
        let response = tokio::select! {
            response = self.client.request(request) => {
                response.map_err(|error| TransportError::from_client(&error, authority))?
            }
            () = &mut deadline => return Err(TransportError::Timeout(self.config.request_timeout)),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| super::parse_retry_after(value, SystemTime::now()));
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

/// The `http::Request` for one attempt: the caller's headers in order, then
/// `content-type`, then Herald's own headers, which win over any caller
/// header of the same name.
fn build_request(
    outbound: &OutboundRequest,
    timestamp: u64,
) -> Result<Request<Full<Bytes>>, TransportError> {
    let request = &outbound.http;
    let uri = target(&request.url)?;
    let mut headers = HeaderMap::with_capacity(request.headers.len() + 5);
    for (name, value) in &request.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("{name:?} is not a valid header name")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| invalid(format!("the value of header {name} is not valid")))?;
        headers.append(name, value);
    }
    if let Some(content_type) = &request.content_type {
        let value = HeaderValue::from_str(content_type)
            .map_err(|_| invalid(format!("content type {content_type:?} is not valid")))?;
        headers.insert(header::CONTENT_TYPE, value);
    }
    let id = outbound.delivery_id.hyphenated().to_string();
    if let Some(signature) = outbound.signing.signature(&id, timestamp, &request.body) {
        let signature = HeaderValue::try_from(signature)
            .map_err(|_| invalid("the signature is not a valid header value".into()))?;
        headers.insert("webhook-signature", signature);
    }
    let id = HeaderValue::try_from(id)
        .map_err(|_| invalid("the delivery id is not a valid header value".into()))?;
    headers.insert("webhook-id", id);
    headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
    headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    if let Some(trace) = &outbound.trace {
        // Checked at enqueue; a stored value that is no longer a valid
        // header is dropped rather than failing the attempt.
        if let Ok(value) = HeaderValue::try_from(trace.traceparent.as_str()) {
            headers.insert("traceparent", value);
        }
        if let Some(Ok(value)) = trace.tracestate.as_deref().map(HeaderValue::try_from) {
            headers.insert("tracestate", value);
        }
    }
    headers.insert("herald-attempt", HeaderValue::from(outbound.attempt_number));
    if let Some(Ok(value)) = outbound.event_type.as_deref().map(HeaderValue::try_from) {
        headers.insert("herald-event-type", value);
    }

    let mut built = Request::builder()
        .method(request.method.to_http())
        .uri(uri)
        .body(Full::new(request.body.clone()))
        .map_err(|error| invalid(error.to_string()))?;
    *built.headers_mut() = headers;
    Ok(built)
}

/// The URL as an absolute http(s) request target. Checked here because the
/// pool would report a relative or `ftp:` URL as a retryable failure.
fn target(url: &str) -> Result<Uri, TransportError> {
    let uri: Uri = url
        .parse()
        .map_err(|error| invalid(format!("URL {url:?} is not valid: {error}")))?;
    let http = matches!(uri.scheme(), Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS);
    if !http || uri.authority().is_none() {
        return Err(invalid(format!(
            "URL {url:?} is not an absolute http or https URL"
        )));
    }
    Ok(uri)
}

fn invalid(what: String) -> TransportError {
    TransportError::InvalidRequest(what)
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Reads at most `limit` bytes of `body`, stopping early at `deadline` or a
/// broken body: the status is already known, the excerpt is best effort.
/// Dropping `body` unread closes its connection rather than draining it.
async fn read_excerpt(mut body: Incoming, limit: usize, mut deadline: Pin<&mut Sleep>) -> Bytes {
    let mut excerpt = BytesMut::new();
    while excerpt.len() < limit {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            () = &mut deadline => break,
        };
        let Some(Ok(frame)) = frame else { break };
        if let Ok(data) = frame.into_data() {
            let room = limit - excerpt.len();
            excerpt.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    excerpt.freeze()
}
