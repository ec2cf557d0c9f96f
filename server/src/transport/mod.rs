//! The outbound HTTP client: one attempt of one delivery, and what its
//! result means.
//!
//! Consumes an [`OutboundRequest`] from the scheduler's executor and
//! produces an [`AttemptReport`]: when the attempt started, how long it
//! took, and either the receiver's answer (status, `Retry-After`, a capped
//! excerpt of the body) or a typed [`TransportError`]. [`classify`] turns
//! that result into a [`classify::Verdict`] for the retry policy, and
//! describes it for people. Knows nothing of the database or gRPC.
//!
//! Trade-offs it accepts:
//! - One pooled client (HTTP/1.1, and HTTP/2 where TLS ALPN offers it)
//!   serves every attempt, so deliveries to one receiver share a few warm
//!   connections instead of a handshake each.
//! - Redirects are never followed: a 3xx is the receiver's answer, and
//!   following it would send the body somewhere nobody validated.
//! - One timer bounds the whole attempt. Once the status is in, it decides
//!   the attempt; a slow, broken or endless body only shortens the excerpt.
//!   Reading stops at the cap and the rest is dropped with its connection,
//!   which is cheaper than draining an unknown amount to reuse it.
//! - Only global addresses are sent to, unless the operator allowed a
//!   range ([`guard`]); host names are checked on what they resolve to, at
//!   connect time.
//! - Every attempt is signed (Standard Webhooks) with the tenant's secrets.
//! - TLS is rustls with the ring provider and the Mozilla roots compiled
//!   in: the same trust on every machine, no system store, and no
//!   process-global crypto provider.

pub mod classify;
mod client;
mod error;
pub mod guard;
mod retry_after;

use std::time::{Duration, SystemTime};

use bytes::Bytes;

pub use client::HttpSender;
pub use error::TransportError;
pub use guard::TargetPolicy;
pub use retry_after::parse_retry_after;

use crate::{
    domain::{HttpRequest, TraceContext},
    tenants::SigningKeys,
};

/// How attempts are made.
#[derive(Debug, Clone, Copy)]
pub struct TransportConfig {
    /// Longest one attempt may take: connect, send, and read of the excerpt.
    pub request_timeout: Duration,
    /// Most bytes of the response body kept as the excerpt.
    pub response_excerpt_bytes: usize,
}

/// One attempt of one delivery, as the executor hands it over.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    /// Sent as `webhook-id`, the same on every attempt so receivers can
    /// deduplicate.
    pub delivery_id: uuid::Uuid,
    /// Sent as `herald-attempt`, counting from 1.
    pub attempt_number: u32,
    /// The request frozen at enqueue: method, URL, caller's headers, body.
    pub http: HttpRequest,
    /// The caller's trace context, sent as `traceparent`/`tracestate`.
    pub trace: Option<TraceContext>,
    /// The secrets that sign the attempt (`webhook-signature`): its
    /// tenant's, or its endpoint's.
    pub signing: std::sync::Arc<SigningKeys>,
    /// The type of the event it carries, sent as `herald-event-type`.
    pub event_type: Option<String>,
}

/// What happened on one attempt.
#[derive(Debug)]
pub struct AttemptReport {
    /// When the attempt started (wall clock, for the attempt history); its
    /// unix seconds are the `webhook-timestamp` sent.
    pub started_at: SystemTime,
    /// How long the attempt took, excerpt included.
    pub duration: Duration,
    /// The receiver's answer, or why there was none.
    pub result: Result<HttpResponse, TransportError>,
}

/// The part of a receiver's answer Herald keeps.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: http::StatusCode,
    /// The delay asked for by `Retry-After`, uncapped; `None` when absent
    /// or unreadable.
    pub retry_after: Option<Duration>,
    /// At most `response_excerpt_bytes` from the start of the body.
    pub excerpt: Bytes,
}

#[cfg(test)]
mod tests;
