//! The gate every call passes before its message is read: `herald.v1`
//! calls are authenticated from their headers (a refused one is answered
//! without its message being decoded; a short one is read and thrown
//! away, so an HTTP/1.1 connection stays usable), and every call's message is held to its
//! method's size limit as it arrives. The [`Caller`] found travels to the
//! handler in the request's extensions.
//!
//! Failed authentications are slowed per client address and key id
//! ([`FailureLimiter`]) and counted in the metrics; every refusal is the
//! same UNAUTHENTICATED, whether the key was wrong, revoked, missing or
//! not looked up at all. Health and reflection need no key.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use std::net::IpAddr;

use http_body_util::BodyExt;

use tonic::{
    Status,
    body::Body,
    server::NamedService,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};
use tower_layer::Layer;
use tower_service::Service;

use super::{
    auth::{Authenticator, Caller, Refusal},
    error::ApiError,
    failure_limit::{FailureLimiter, Verdict},
    message_limit::{Limited, MessageLimits},
};
use crate::metrics::Metrics;

/// The most of a refused call's message read to keep its connection.
const DRAIN_LIMIT: usize = 64 * 1024;

/// How long a refused call's message is waited for.
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The path prefix of the calls that need a key.
const AUTHENTICATED_PREFIX: &str = "/herald.v1.";

/// What the gate checks with; cheap to clone.
#[derive(Clone)]
pub struct GateLayer {
    auth: Authenticator,
    failures: FailureLimiter,
    limits: MessageLimits,
    metrics: Metrics,
}

impl GateLayer {
    /// A gate that authenticates with `auth`, slows failures with
    /// `failures`, holds messages to `limits` and counts failures in
    /// `metrics`.
    pub fn new(
        auth: Authenticator,
        failures: FailureLimiter,
        limits: MessageLimits,
        metrics: Metrics,
    ) -> Self {
        Self {
            auth,
            failures,
            limits,
            metrics,
        }
    }

    /// The caller of a `herald.v1` call from `peer` with `headers`, or the
    /// answer to give instead (after holding it as long as the failure
    /// budgets ask).
    async fn admit(
        &self,
        headers: &http::HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Caller, Status> {
        let key_id = match self.failures.before_lookup(peer) {
            Verdict::Refuse(wait) => {
                self.metrics.authentication_failed();
                tokio::time::sleep(wait).await;
                return Err(ApiError::Unauthenticated.into());
            }
            Verdict::Check => match self.auth.caller(headers).await {
                Ok(caller) => return Ok(caller),
                Err(Refusal::Failed(error)) => return Err(error.into()),
                Err(Refusal::Unauthenticated { key_id }) => key_id,
            },
        };
        self.metrics.authentication_failed();
        tokio::time::sleep(self.failures.failed(peer, key_id.as_deref())).await;
        Err(ApiError::Unauthenticated.into())
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            layer: self.clone(),
        }
    }
}

/// Authenticates, then passes the call on with its body size-limited.
#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    layer: GateLayer,
}

/// Named as the service it guards, so routes find it by its path.
impl<S: NamedService> NamedService for Gate<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Gate<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        let limit = layer.limits.for_path(request.uri().path());
        Box::pin(async move {
            let mut request = request;
            if request.uri().path().starts_with(AUTHENTICATED_PREFIX) {
                match layer.admit(request.headers(), peer(&request)).await {
                    Ok(caller) => {
                        request.extensions_mut().insert::<Caller>(caller);
                    }
                    Err(status) => {
                        drain(request.into_body()).await;
                        return Ok(status.into_http());
                    }
                }
            }
            inner
                .call(request.map(|body| Body::new(Limited::new(body, limit))))
                .await
        })
    }
}

/// Reads a refused call's message to its end and throws it away, if it is
/// short and comes at once: over HTTP/1.1 (gRPC-web) a message left unread
/// closes the connection, which the caller's client may already be
/// reusing for its next call (it then fails to write, whatever that call
/// was). A longer or slower one is left unread and its connection closed.
async fn drain(mut body: Body) {
    let read_all = async {
        let mut read = 0;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return };
            read += frame.data_ref().map_or(0, |data| data.len());
            if read > DRAIN_LIMIT {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_WAIT, read_all).await;
}

/// The address the call came from, over TCP or TLS.
fn peer<B>(request: &http::Request<B>) -> Option<IpAddr> {
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .map(TlsConnectInfo::get_ref)
        })
        .and_then(TcpConnectInfo::remote_addr)
        .map(|addr| addr.ip())
}
