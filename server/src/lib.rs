//! Herald: durable HTTP/webhook delivery over gRPC.
//!
//! The path of a delivery, one module per stage:
//! [`api`] (validate, convert) -> [`store`] (enqueue) ->
//! [`scheduler`] (claimer -> executor -> completer) with [`transport`]
//! for the HTTP attempt and [`destinations`] for each receiver's policy
//! and health -> [`outcomes`] (the live feed). [`endpoints`] holds what
//! publishing adds in front of that path (subscriptions, event types and
//! their schemas). [`domain`] holds the shared vocabulary and [`config`]
//! the one typed configuration.

pub mod api;
pub mod cli;
pub mod config;
pub mod destinations;
pub mod domain;
pub mod endpoints;
pub mod janitor;
pub mod metrics;
pub mod outcomes;
pub mod scheduler;
pub mod secrets;
mod server;
pub mod signal;
pub mod store;
pub mod tenants;
pub mod transport;
pub mod web;

pub use config::Config;
pub use server::{RunningServer, ServeError, StartError, start};
