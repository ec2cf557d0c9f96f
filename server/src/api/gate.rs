//! The gate every call passes before its message is read: `herald.v1`
//! calls are authenticated from their headers (a refused one is answered
//! at once, its body never read), and every call's message is held to
//! its method's size limit as it arrives. The [`Caller`] found travels to
//! the handler in the request's extensions.
//!
//! Health and reflection need no key.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tonic::{Status, body::Body};
use tower_layer::Layer;
use tower_service::Service;

use super::{
    auth::{Authenticator, Caller},
    error::ApiError,
    message_limit::{Limited, MessageLimits},
};

/// The path prefix of the calls that need a key.
const AUTHENTICATED_PREFIX: &str = "/herald.v1.";

/// Puts a [`Gate`] in front of a service.
#[derive(Clone)]
pub struct GateLayer {
    auth: Authenticator,
    limits: MessageLimits,
}

impl GateLayer {
    /// A gate that authenticates with `auth` and holds messages to `limits`.
    pub fn new(auth: Authenticator, limits: MessageLimits) -> Self {
        Self { auth, limits }
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            auth: self.auth.clone(),
            limits: self.limits,
        }
    }
}

/// Authenticates, then passes the call on with its body size-limited.
#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    auth: Authenticator,
    limits: MessageLimits,
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
        let auth = self.auth.clone();
        let limit = self.limits.for_path(request.uri().path());
        Box::pin(async move {
            let mut request = request;
            if request.uri().path().starts_with(AUTHENTICATED_PREFIX) {
                match auth.caller(request.headers()).await {
                    Ok(caller) => {
                        request.extensions_mut().insert::<Caller>(caller);
                    }
                    Err(refusal) => {
                        let status = Status::from(ApiError::from(refusal));
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
