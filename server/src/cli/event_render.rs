//! How `herald events` prints events, their deliveries and the event type
//! catalogue: aligned tables and details for people, JSON for scripts.
//! Field names follow the proto; times are RFC 3339 UTC; a payload is
//! base64 in JSON, as in proto JSON.

use base64::{Engine, engine::general_purpose::STANDARD};
use herald_client::DeliveryState;
use herald_proto::v1::{Event, EventDelivery, EventType, SkippedEndpoint};
use serde_json::{Value, json};

use super::{
    render::labelled,
    when::{shown, shown_or_dash},
};

/// A delivery's state as `herald deliveries` writes it.
fn state(delivery: &EventDelivery) -> &'static str {
    DeliveryState::from_number(delivery.state).as_str()
}

/// The event as JSON; without its payload when `with_payload` is false (a
/// listing carries none).
pub fn event_json(event: &Event, with_payload: bool) -> Value {
    let mut value = json!({
        "id": event.id,
        "event_type": event.event_type,
        "content_type": event.content_type,
        "idempotency_key": event.idempotency_key,
        "create_time": shown(event.create_time.as_ref()),
    });
    if with_payload {
        value["payload"] = STANDARD.encode(&event.payload).into();
    }
    value
}

/// One delivery of an event as JSON.
pub fn event_delivery_json(delivery: &EventDelivery) -> Value {
    json!({
        "endpoint_id": delivery.endpoint_id,
        "delivery_id": delivery.delivery_id,
        "state": state(delivery),
        "attempt_count": delivery.attempt_count,
        "last_status_code": delivery.last_status_code,
        "create_time": shown(delivery.create_time.as_ref()),
    })
}

/// The deliveries a publish or a replay made (an endpoint and a delivery
/// id each) and the endpoints that got none, as JSON: `{"deliveries",
/// "skipped"}`.
pub fn made_json(deliveries: &[EventDelivery], skipped: &[SkippedEndpoint]) -> Value {
    let made: Vec<Value> = deliveries
        .iter()
        .map(|made| json!({ "endpoint_id": made.endpoint_id, "delivery_id": made.delivery_id }))
        .collect();
    let skipped: Vec<Value> = skipped
        .iter()
        .map(|skipped| json!({ "endpoint_id": skipped.endpoint_id, "reason": skipped.reason }))
        .collect();
    json!({ "deliveries": made, "skipped": skipped })
}

/// The header and rows of an event listing.
pub fn event_table(events: &[Event]) -> String {
    let mut table = format!("{:<36}  {:<24}  TYPE\n", "ID", "CREATED");
    for event in events {
        table.push_str(&format!(
            "{:<36}  {:<24}  {}\n",
            event.id,
            shown_or_dash(event.create_time.as_ref()),
            event.event_type,
        ));
    }
    table
}

/// One event in detail: its fields, the payload as text when it is UTF-8.
pub fn event_detail(event: &Event) -> String {
    let payload = match std::str::from_utf8(&event.payload) {
        Ok(text) if !text.is_empty() => text.to_owned(),
        _ => format!("{} bytes", event.payload.len()),
    };
    labelled([
        ("id", event.id.clone()),
        ("type", event.event_type.clone()),
        ("created", shown_or_dash(event.create_time.as_ref())),
        ("content type", event.content_type.clone()),
        ("idempotency", event.idempotency_key.clone()),
        ("payload", payload),
    ])
}

/// The header and rows of an event's deliveries: where each stands.
pub fn event_delivery_table(deliveries: &[EventDelivery]) -> String {
    let row = |cells: [&str; 6]| {
        format!(
            "{:<36}  {:<36}  {:<13}  {:>8}  {:>6}  {}\n",
            cells[0], cells[1], cells[2], cells[3], cells[4], cells[5]
        )
    };
    let mut table = row([
        "ENDPOINT", "DELIVERY", "STATE", "ATTEMPTS", "STATUS", "CREATED",
    ]);
    for delivery in deliveries {
        let status = match delivery.last_status_code {
            0 => "-".to_owned(),
            code => code.to_string(),
        };
        table.push_str(&row([
            &delivery.endpoint_id,
            &delivery.delivery_id,
            state(delivery),
            &delivery.attempt_count.to_string(),
            &status,
            &shown_or_dash(delivery.create_time.as_ref()),
        ]));
    }
    table
}

/// The deliveries a publish or a replay made, one per endpoint, then the
/// endpoints that got none and why.
pub fn made_text(deliveries: &[EventDelivery], skipped: &[SkippedEndpoint]) -> String {
    let mut text = String::new();
    if !deliveries.is_empty() {
        text.push_str(&format!("\n{:<36}  DELIVERY\n", "ENDPOINT"));
        for delivery in deliveries {
            text.push_str(&format!(
                "{:<36}  {}\n",
                delivery.endpoint_id, delivery.delivery_id
            ));
        }
    }
    for skipped in skipped {
        text.push_str(&format!(
            "skipped {}: {}\n",
            skipped.endpoint_id, skipped.reason
        ));
    }
    text
}

/// The event type as JSON; its schema as JSON when it parses, else as text.
pub fn event_type_json(event_type: &EventType) -> Value {
    let schema = match event_type.json_schema.as_str() {
        "" => Value::Null,
        text => serde_json::from_str(text).unwrap_or_else(|_| text.into()),
    };
    json!({
        "name": event_type.name,
        "description": event_type.description,
        "json_schema": schema,
        "create_time": shown(event_type.create_time.as_ref()),
        "update_time": shown(event_type.update_time.as_ref()),
    })
}

fn has_schema(event_type: &EventType) -> &'static str {
    if event_type.json_schema.is_empty() {
        "no"
    } else {
        "yes"
    }
}

/// The header and rows of the catalogue.
pub fn event_type_table(event_types: &[EventType]) -> String {
    let width = event_types
        .iter()
        .map(|event_type| event_type.name.len())
        .max()
        .unwrap_or(0)
        .max("NAME".len());
    let mut table = format!("{:<width$}  {:<6}  DESCRIPTION\n", "NAME", "SCHEMA");
    for event_type in event_types {
        table.push_str(&format!(
            "{:<width$}  {:<6}  {}\n",
            event_type.name,
            has_schema(event_type),
            event_type.description,
        ));
    }
    table
}

/// One event type in detail, its schema last, as given.
pub fn event_type_detail(event_type: &EventType) -> String {
    let mut text = labelled([
        ("name", event_type.name.clone()),
        ("description", event_type.description.clone()),
        ("created", shown_or_dash(event_type.create_time.as_ref())),
        ("updated", shown_or_dash(event_type.update_time.as_ref())),
        ("schema", has_schema(event_type).to_owned()),
    ]);
    if !event_type.json_schema.is_empty() {
        text.push_str(&format!("\n{}\n", event_type.json_schema.trim_end()));
    }
    text
}

#[cfg(test)]
mod tests {
    use herald_proto::v1 as wire;

    use super::*;

    fn delivery(state: wire::DeliveryState) -> EventDelivery {
        EventDelivery {
            endpoint_id: "019ad3a1-0000-7000-8000-000000000001".into(),
            delivery_id: "019ad3a1-0000-7000-8000-0000000000d1".into(),
            state: state.into(),
            attempt_count: 2,
            last_status_code: 503,
            ..Default::default()
        }
    }

    #[test]
    fn json_names_states_plainly_and_made_deliveries_only_by_id() {
        let json = event_delivery_json(&delivery(wire::DeliveryState::DeadLettered));
        assert_eq!(json["state"], "dead-lettered");
        let made = made_json(&[delivery(wire::DeliveryState::Unspecified)], &[]);
        assert_eq!(
            made["deliveries"][0],
            json!({
                "endpoint_id": "019ad3a1-0000-7000-8000-000000000001",
                "delivery_id": "019ad3a1-0000-7000-8000-0000000000d1",
            })
        );
        let event = Event {
            payload: b"{}".to_vec(),
            ..Default::default()
        };
        assert_eq!(event_json(&event, true)["payload"], "e30=");
        assert!(event_json(&event, false).get("payload").is_none());
    }

    #[test]
    fn tables_line_up() {
        let table = event_delivery_table(&[
            delivery(wire::DeliveryState::Succeeded),
            delivery(wire::DeliveryState::Pending),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0].find("STATE"), lines[1].find("succeeded"));
        assert_eq!(lines[1].find("succeeded"), lines[2].find("pending"));
        assert!(lines[1].contains("503"), "{table}");
        let types = event_type_table(&[EventType {
            name: "order.created".into(),
            json_schema: "{}".into(),
            ..Default::default()
        }]);
        let lines: Vec<&str> = types.lines().collect();
        assert_eq!(lines[0].find("SCHEMA"), lines[1].find("yes"));
    }

    #[test]
    fn a_schema_shows_as_json() {
        let event_type = EventType {
            name: "order.created".into(),
            json_schema: r#"{"type": "object"}"#.into(),
            ..Default::default()
        };
        assert_eq!(
            event_type_json(&event_type)["json_schema"],
            json!({"type": "object"})
        );
        let detail = event_type_detail(&event_type);
        assert!(detail.ends_with("\n{\"type\": \"object\"}\n"), "{detail}");
    }
}
