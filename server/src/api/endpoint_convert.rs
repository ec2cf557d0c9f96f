//! Endpoints, events and event types between proto and store: request
//! checks that name the field and the rule, and records as messages.

use herald_proto::v1::{self as proto, SetDestinationPolicyRequest};

use super::{convert::timestamp, destination_convert, error::ApiError, repeated::at_most};
use crate::{
    destinations::policy::PolicyUpdate,
    endpoints::{EventTypeName, PayloadSchema, Subscription, subscription::MAX_PATTERNS},
    store::{
        EndpointDelivery, EndpointRecord, EventDelivery, EventRecord, EventTypeRecord, Published,
        Skipped,
    },
};

/// Longest description of an endpoint or event type, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;

/// `raw` as a description, or why not.
pub fn description(field: &'static str, raw: String) -> Result<String, ApiError> {
    if raw.len() > MAX_DESCRIPTION_BYTES {
        return Err(ApiError::invalid(
            field,
            format!("is {} bytes; at most {MAX_DESCRIPTION_BYTES}", raw.len()),
        ));
    }
    if raw.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            "must not hold control characters (line breaks included)",
        ));
    }
    Ok(raw)
}

/// `raw` as an event type's name, or why not.
pub fn event_type_name(field: &'static str, raw: &str) -> Result<EventTypeName, ApiError> {
    EventTypeName::parse(raw).map_err(|problem| ApiError::invalid(field, problem.to_string()))
}

/// The subscription `raw` patterns describe.
pub fn subscription(raw: &[String]) -> Result<Subscription, ApiError> {
    at_most("event_types", raw.len(), MAX_PATTERNS)?;
    Subscription::parse(raw)
        .map_err(|problem| ApiError::invalid("event_types", problem.to_string()))
}

/// A JSON Schema as given, checked; `None` when empty.
pub fn json_schema(raw: String) -> Result<Option<String>, ApiError> {
    if raw.is_empty() {
        return Ok(None);
    }
    PayloadSchema::compile(&raw)
        .map_err(|problem| ApiError::invalid("event_type.json_schema", problem.to_string()))?;
    Ok(Some(raw))
}

/// The refusal of an `update_mask` that names no field; `updatable` are
/// the fields it may name.
pub fn empty_mask(updatable: &[&str]) -> ApiError {
    ApiError::invalid(
        "update_mask",
        format!(
            "names no field; give the fields to change (any of {})",
            updatable.join(", ")
        ),
    )
}

/// The refusal of an `update_mask` naming `path`, which is not one of
/// `updatable`.
pub fn unchangeable(path: &str, updatable: &[&str]) -> ApiError {
    ApiError::invalid(
        "update_mask",
        format!(
            "names {path:?}, which cannot be changed; give any of {}",
            updatable.join(", ")
        ),
    )
}

/// The deliveries a publish or replay made, and the endpoints it skipped,
/// as the API shows them.
pub fn fan_out(published: Published) -> (Vec<proto::EventDelivery>, Vec<proto::SkippedEndpoint>) {
    (
        published.deliveries.into_iter().map(made).collect(),
        published.skipped.into_iter().map(skipped).collect(),
    )
}

/// The destination policy change an endpoint's `policy` asks for.
pub fn policy_update(policy: &proto::EndpointPolicy) -> Result<PolicyUpdate, ApiError> {
    destination_convert::policy_update(&SetDestinationPolicyRequest {
        destination: String::new(),
        max_in_flight: policy.max_in_flight,
        rate_limit: policy.rate_limit,
        circuit: policy.circuit,
        reset: Vec::new(),
    })
}

/// A stored endpoint as the API shows it.
pub fn endpoint(record: EndpointRecord) -> proto::Endpoint {
    proto::Endpoint {
        id: record.id.to_string(),
        url: record.url,
        description: record.description,
        event_types: record
            .subscription
            .patterns()
            .iter()
            .map(ToString::to_string)
            .collect(),
        headers: record
            .headers
            .into_iter()
            .map(|(name, value)| proto::Header { name, value })
            .collect(),
        enabled: record.enabled,
        destination: record.destination,
        previous_secret_expire_time: record.previous_secret_until_ms.map(timestamp),
        create_time: Some(timestamp(record.created_at_ms)),
        update_time: Some(timestamp(record.updated_at_ms)),
    }
}

/// A catalogue entry as the API shows it.
pub fn event_type(record: EventTypeRecord) -> proto::EventType {
    proto::EventType {
        name: record.name,
        description: record.description,
        json_schema: record.json_schema.unwrap_or_default(),
        create_time: Some(timestamp(record.created_at_ms)),
        update_time: Some(timestamp(record.updated_at_ms)),
    }
}

/// A stored event as the API shows it, with or without its payload.
pub fn event(record: EventRecord, with_payload: bool) -> proto::Event {
    proto::Event {
        id: record.id.to_string(),
        event_type: record.event_type,
        payload: if with_payload {
            record.payload.to_vec()
        } else {
            Vec::new()
        },
        content_type: record.content_type.unwrap_or_default(),
        idempotency_key: record.idempotency_key.unwrap_or_default(),
        create_time: Some(timestamp(record.created_at_ms)),
    }
}

/// A delivery a publish or replay made.
fn made(delivery: EndpointDelivery) -> proto::EventDelivery {
    proto::EventDelivery {
        endpoint_id: delivery.endpoint_id.to_string(),
        delivery_id: delivery.delivery_id.to_string(),
        ..proto::EventDelivery::default()
    }
}

/// An event's delivery as `GetEvent` shows it.
pub fn event_delivery(delivery: EventDelivery) -> proto::EventDelivery {
    proto::EventDelivery {
        endpoint_id: delivery.endpoint_id.to_string(),
        delivery_id: delivery.id.to_string(),
        state: super::convert::state(delivery.state).into(),
        attempt_count: delivery.attempt_count,
        last_status_code: delivery.last_status_code.map_or(0, u32::from),
        create_time: Some(timestamp(delivery.created_at_ms)),
    }
}

/// An endpoint an event matched that got no delivery.
fn skipped(skipped: Skipped) -> proto::SkippedEndpoint {
    proto::SkippedEndpoint {
        endpoint_id: skipped.endpoint_id.to_string(),
        reason: skipped.reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_bounded_single_lines() {
        assert!(description("description", "Orders for the ERP".into()).is_ok());
        assert!(description("description", "a\nb".into()).is_err());
        assert!(description("description", "x".repeat(MAX_DESCRIPTION_BYTES + 1)).is_err());
    }

    #[test]
    fn schemas_are_checked_and_empty_means_none() {
        assert_eq!(json_schema(String::new()).unwrap(), None);
        assert!(
            json_schema(r#"{"type": "object"}"#.into())
                .unwrap()
                .is_some()
        );
        let refused = json_schema("{".into()).unwrap_err();
        assert!(
            refused.to_string().starts_with("event_type.json_schema: "),
            "{refused}"
        );
    }
}
