//! Endpoints and events: publish once, deliver to every subscriber.
//!
//! A tenant registers endpoints (a URL, the event types it wants, headers
//! to add, its own signing secret); `Publish` stores an event and, in the
//! same transaction, one delivery per enabled endpoint whose subscription
//! matches the event's type. From there each delivery takes the path every
//! delivery takes (claim, attempt, complete), at its endpoint's
//! destination, under that destination's policy, signed with the
//! endpoint's secret.
//!
//! This module holds what is Herald's own here and knows nothing of
//! storage or gRPC: the rules for event type names ([`EventTypeName`]),
//! what a subscription matches ([`Subscription`]), and the JSON Schemas an
//! event type may ask payloads to match ([`PayloadSchema`],
//! [`SchemaCache`]).

mod event_type;
pub mod schema;
pub mod subscription;

pub use event_type::{EventTypeName, InvalidName};
pub use schema::{PayloadRefused, PayloadSchema, SchemaCache, SchemaError};
pub use subscription::{InvalidPattern, Pattern, Subscription};
