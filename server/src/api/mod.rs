//! The gRPC edge: `herald.v1.DeliveryService`, `herald.v1.DestinationService`,
//! the standard health service and server reflection (v1 and v1alpha, so
//! older `grpcurl`s work too).
//! Every call passes the [`GateLayer`] first: authentication and the
//! method's message limit, before the message is decoded.
//! Proto types stop here; everything behind speaks `domain` and `store`.

mod audit_service;
mod auth;
mod convert;
mod delivery_service;
mod destination_convert;
mod destination_service;
mod endpoint_convert;
mod endpoint_service;
mod error;
mod event_service;
mod failure_limit;
mod filters;
mod gate;
mod listing;
mod message_limit;
mod page_token;
mod repeated;
pub mod revocations;
mod validate;
mod watch_cap;

use herald_proto::{
    FILE_DESCRIPTOR_SET,
    v1::{
        audit_service_server::AuditServiceServer, delivery_service_server::DeliveryServiceServer,
        destination_service_server::DestinationServiceServer,
        endpoint_service_server::EndpointServiceServer, event_service_server::EventServiceServer,
    },
};
use tonic::service::Routes;
use tower_layer::Layer;

pub use audit_service::AuditApi;
pub use auth::{Authenticator, Caller};
pub use delivery_service::DeliveryApi;
pub use destination_service::DestinationApi;
pub use endpoint_service::EndpointApi;
pub use event_service::EventApi;
pub use failure_limit::FailureLimiter;
pub use gate::{Gate, GateLayer};
pub use message_limit::MessageLimits;
pub use validate::Limits;
pub use watch_cap::WatchCap;

/// The services Herald serves.
pub struct Services {
    /// `herald.v1.DeliveryService`.
    pub deliveries: DeliveryApi,
    /// `herald.v1.DestinationService`.
    pub destinations: DestinationApi,
    /// `herald.v1.EndpointService`.
    pub endpoints: EndpointApi,
    /// `herald.v1.EventService`.
    pub events: EventApi,
    /// `herald.v1.AuditService`.
    pub audit: AuditApi,
}

/// Builds the routes Herald serves, each service behind `gate`, so every
/// listener and protocol (gRPC, gRPC-web) passes it; `max_message_bytes`
/// bounds a decoded delivery or publish request (it must admit the
/// largest body plus headers).
pub async fn routes(
    gate: &GateLayer,
    services: Services,
    max_message_bytes: usize,
) -> Result<Routes, tonic_reflection::server::Error> {
    let Services {
        deliveries,
        destinations,
        endpoints,
        events,
        audit,
    } = services;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<DeliveryServiceServer<DeliveryApi>>()
        .await;
    health
        .set_serving::<DestinationServiceServer<DestinationApi>>()
        .await;
    health.set_serving::<AuditServiceServer<AuditApi>>().await;
    health
        .set_serving::<EndpointServiceServer<EndpointApi>>()
        .await;
    health.set_serving::<EventServiceServer<EventApi>>().await;
    // tonic-types' set holds google.rpc's error details (ErrorInfo,
    // BadRequest), which a batch item's refusal carries as `Any`s: with it
    // reflection alone lets grpcurl print them.
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let deliveries =
        DeliveryServiceServer::new(deliveries).max_decoding_message_size(max_message_bytes);
    let events = EventServiceServer::new(events).max_decoding_message_size(max_message_bytes);
    Ok(Routes::new(gate.layer(deliveries))
        .add_service(gate.layer(DestinationServiceServer::new(destinations)))
        .add_service(gate.layer(EndpointServiceServer::new(endpoints)))
        .add_service(gate.layer(events))
        .add_service(gate.layer(AuditServiceServer::new(audit)))
        .add_service(gate.layer(health_service))
        .add_service(gate.layer(reflection_v1))
        .add_service(gate.layer(reflection_v1alpha)))
}
