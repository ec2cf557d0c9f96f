//! A typed client for Herald, the durable HTTP/webhook delivery service:
//! enqueue deliveries, look at them, page through dead letters, stream
//! outcomes as they happen, and look at and steer the destinations they go
//! to (policy, pause, resume, enable).
//!
//! ```no_run
//! use futures::StreamExt;
//! use herald_client::{Client, OutcomeKind, WatchOptions};
//!
//! # async fn example() -> Result<(), herald_client::Error> {
//! // The key is needed once the server has a tenant; a server still open
//! // (no tenant yet) takes calls without one.
//! let client = Client::connect("http://127.0.0.1:50051")
//!     .await?
//!     .with_api_key("my-api-key")?;
//!
//! // Durable once `send` returns; the same key again returns the same delivery.
//! let enqueued = client
//!     .enqueue("https://example.com/webhooks")
//!     .json(&serde_json::json!({ "type": "order.created", "id": 42 }))
//!     .header("x-event-type", "order.created")
//!     .idempotency_key("order-42")
//!     .send()
//!     .await?;
//!
//! let delivery = client.get_delivery(&enqueued.id).await?;
//! println!("{} is {:?}", delivery.id, delivery.state);
//!
//! let mut outcomes = client.watch_outcomes(WatchOptions::default()).await?;
//! while let Some(outcome) = outcomes.next().await {
//!     let outcome = outcome?;
//!     if outcome.kind == OutcomeKind::DeadLettered {
//!         eprintln!("gave up on {}: {}", outcome.delivery_id, outcome.error_message);
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The types are the crate's own and `#[non_exhaustive]`: a field or an
//! enum value added to Herald's contract is not a breaking change, and a
//! value this version does not know arrives as `Unrecognized(n)`. The
//! generated protobuf types are exported as `proto` only with the
//! `unstable-proto` feature, with no stability promise.
//!
//! Every call returns [`Error`]; when Herald answered with a gRPC status,
//! [`Error::code`] gives its [`Code`] (`NotFound`, `InvalidArgument`, ...)
//! and [`Error::status`] the details programs act on (a stable `reason`,
//! the fields at fault).
//! Listings are lazy [`futures::Stream`]s that fetch the next page only when
//! the current one has been read; [`Client::deliveries_page`] and
//! [`Client::dead_letters_page`] fetch one [`Page`] at a time, from a token
//! kept by the caller.

#![warn(missing_docs)]

mod client;
mod destinations;
mod enqueue;
mod error;
mod model;
mod operate;
mod pages;
mod watch;
pub mod webhook;

pub use client::{Client, MAX_RESPONSE_BYTES};
pub use destinations::{DestinationQuery, PolicyUpdate};
pub use enqueue::{EnqueueBuilder, Enqueued, Refused};
pub use error::{Cause, Code, Error, FieldViolation, RpcStatus};
/// The generated protocol types, with no stability promise: they change
/// with the contract and with every prost or tonic release. Only with the
/// `unstable-proto` feature; the rest of the crate is the stable API.
#[cfg(feature = "unstable-proto")]
pub use herald_proto::v1 as proto;
pub use model::{
    Attempt, AttemptError, CircuitPolicy, CircuitState, Delivery, DeliveryState, Destination,
    DestinationPolicy, DestinationState, DestinationStats, Header, HttpMethod, NotRedriven,
    NotRedrivenReason, Outcome, OutcomeKind, RateLimit, RatePeriod, RedriveReport, UnknownName,
};
pub use operate::{DeliveryQuery, Redrive};
pub use pages::Page;
pub use watch::WatchOptions;

/// The repository README's Rust examples, compiled with this crate's tests
/// so that what a newcomer pastes from it keeps compiling.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeExamples;
