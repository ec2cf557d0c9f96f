//! How `herald endpoints` prints endpoints: an aligned table and a detail
//! for people, JSON for scripts. Field names follow the proto; times are
//! RFC 3339 UTC.

use herald_proto::v1::{Destination, Endpoint};
use serde_json::{Value, json};

use super::{
    destination_render::{destination_detail, destination_json},
    render::labelled,
    when::{shown, shown_or_dash},
};

/// The event types an endpoint wants, for people: `all` when none are named.
fn subscription(endpoint: &Endpoint) -> String {
    if endpoint.event_types.is_empty() {
        "all".to_owned()
    } else {
        endpoint.event_types.join(", ")
    }
}

fn enabled(endpoint: &Endpoint) -> &'static str {
    if endpoint.enabled { "yes" } else { "no" }
}

/// The endpoint as JSON.
pub fn endpoint_json(endpoint: &Endpoint) -> Value {
    json!({
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": endpoint.event_types,
        "headers": endpoint.headers.iter().map(|h| json!({"name": h.name, "value": h.value})).collect::<Vec<_>>(),
        "enabled": endpoint.enabled,
        "destination": endpoint.destination,
        "previous_secret_expire_time": shown(endpoint.previous_secret_expire_time.as_ref()),
        "create_time": shown(endpoint.create_time.as_ref()),
        "update_time": shown(endpoint.update_time.as_ref()),
    })
}

/// The endpoint and its destination as JSON: `{"endpoint", "destination"}`.
pub fn endpoint_with_destination_json(
    endpoint: &Endpoint,
    destination: Option<&Destination>,
) -> Value {
    json!({
        "endpoint": endpoint_json(endpoint),
        "destination": destination.map(|destination| destination_json(&destination.clone().into())),
    })
}

/// The header and rows of an endpoint listing.
pub fn endpoint_table(endpoints: &[Endpoint]) -> String {
    let width = endpoints
        .iter()
        .map(|endpoint| subscription(endpoint).len())
        .max()
        .unwrap_or(0)
        .max("EVENT TYPES".len());
    let mut table = format!(
        "{:<36}  {:<7}  {:<width$}  URL\n",
        "ID", "ENABLED", "EVENT TYPES"
    );
    for endpoint in endpoints {
        table.push_str(&format!(
            "{:<36}  {:<7}  {:<width$}  {}\n",
            endpoint.id,
            enabled(endpoint),
            subscription(endpoint),
            endpoint.url,
        ));
    }
    table
}

/// One endpoint in detail, then its destination's (which it shares with
/// everything sent there).
pub fn endpoint_detail(endpoint: &Endpoint, destination: Option<&Destination>) -> String {
    let headers: Vec<String> = endpoint
        .headers
        .iter()
        .map(|header| format!("{}: {}", header.name, header.value))
        .collect();
    let mut text = labelled([
        ("id", endpoint.id.clone()),
        ("url", endpoint.url.clone()),
        ("description", endpoint.description.clone()),
        ("event types", subscription(endpoint)),
        ("headers", headers.join(", ")),
        ("enabled", enabled(endpoint).to_owned()),
        (
            "old secret",
            match shown(endpoint.previous_secret_expire_time.as_ref()) {
                Some(until) => format!("signs too until {until}"),
                None => "-".to_owned(),
            },
        ),
        ("created", shown_or_dash(endpoint.create_time.as_ref())),
        ("updated", shown_or_dash(endpoint.update_time.as_ref())),
    ]);
    if let Some(destination) = destination {
        text.push('\n');
        text.push_str(&destination_detail(&destination.clone().into()));
    }
    text
}

#[cfg(test)]
mod tests {
    use herald_proto::v1 as proto;

    use super::*;

    fn endpoint(event_types: &[&str]) -> Endpoint {
        Endpoint {
            id: "019ad3a1-0000-7000-8000-000000000001".into(),
            url: "https://hooks.example.com/orders".into(),
            event_types: event_types.iter().map(|&name| name.to_owned()).collect(),
            headers: vec![proto::Header {
                name: "x-team".into(),
                value: "billing".into(),
            }],
            enabled: true,
            destination: "https://hooks.example.com:443".into(),
            create_time: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn json_follows_the_proto() {
        let json = endpoint_json(&endpoint(&["order.*"]));
        assert_eq!(json["event_types"], json!(["order.*"]));
        assert_eq!(json["headers"][0]["value"], "billing");
        assert_eq!(json["create_time"], "2023-11-14T22:13:20.000Z");
        assert_eq!(json["previous_secret_expire_time"], Value::Null);
        let both = endpoint_with_destination_json(&endpoint(&[]), None);
        assert_eq!(both["destination"], Value::Null);
    }

    #[test]
    fn tables_line_up_and_details_read_plainly() {
        let table = endpoint_table(&[endpoint(&["order.*", "invoice.paid"]), endpoint(&[])]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0].find("URL"), lines[1].find("https://"));
        assert_eq!(lines[1].find("https://"), lines[2].find("https://"));
        assert!(lines[2].contains(" all "), "{table}");
        let detail = endpoint_detail(&endpoint(&[]), None);
        assert!(detail.contains("event types   all\n"), "{detail}");
        assert!(
            detail.contains("headers       x-team: billing\n"),
            "{detail}"
        );
        assert!(detail.contains("description   -\n"), "{detail}");
    }
}
