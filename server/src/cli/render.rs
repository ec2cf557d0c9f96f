//! How the operator commands print deliveries: aligned tables for people,
//! JSON (one document per command) for scripts. Field names follow the
//! proto; times are RFC 3339 UTC; the body is base64, as in proto JSON.

use std::time::SystemTime;

use base64::{Engine, engine::general_purpose::STANDARD};
use herald_client::{Attempt, Delivery, DeliveryState};
use serde_json::{Value, json};

/// A delivery's state as the `--state` flag takes it (`dead-lettered`),
/// which is also how `herald watch` writes it.
pub fn state(delivery: &Delivery) -> String {
    delivery.state.as_str().to_owned()
}

/// A time as RFC 3339 UTC, to the millisecond.
pub(super) fn time(time: Option<SystemTime>) -> Option<String> {
    Some(humantime::format_rfc3339_millis(time?).to_string())
}

/// The text, or `-` when there is none.
pub(super) fn or_dash(text: Option<String>) -> String {
    text.filter(|text| !text.is_empty())
        .unwrap_or_else(|| "-".to_owned())
}

/// Lines of `label value`, the values lined up, `-` for an empty one.
pub(super) fn labelled<'a>(lines: impl IntoIterator<Item = (&'a str, String)>) -> String {
    lines
        .into_iter()
        .map(|(label, value)| format!("{label:<13} {}\n", or_dash(Some(value))))
        .collect()
}

/// One attempt's result in a few words: the status, or the error class.
fn attempt_result(attempt: &Attempt) -> String {
    if attempt.status_code != 0 {
        return attempt.status_code.to_string();
    }
    attempt
        .error
        .map_or("no response", |error| error.as_str())
        .to_owned()
}

/// The delivery as JSON, attempts included when present.
pub fn delivery_json(delivery: &Delivery) -> Value {
    let attempts: Vec<Value> = delivery
        .attempts
        .iter()
        .map(|attempt| {
            json!({
                "number": attempt.number,
                "start_time": time(attempt.start_time),
                "duration_ms": attempt.duration.map(|d| d.as_secs_f64() * 1e3),
                "status_code": attempt.status_code,
                "error": attempt.error.map(|error| error.as_str()),
                "error_message": attempt.error_message,
                "response_excerpt": String::from_utf8_lossy(&attempt.response_excerpt),
            })
        })
        .collect();
    json!({
        "id": delivery.id,
        "state": state(delivery),
        "method": delivery.method.as_str().to_ascii_uppercase(),
        "url": delivery.url,
        "headers": delivery.headers.iter().map(|h| json!({"name": h.name, "value": h.value})).collect::<Vec<_>>(),
        "content_type": delivery.content_type,
        "body": STANDARD.encode(&delivery.body),
        "idempotency_key": delivery.idempotency_key,
        "attempt_count": delivery.attempt_count,
        "max_attempts": delivery.max_attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "create_time": time(delivery.create_time),
        "update_time": time(delivery.update_time),
        "next_attempt_time": time(delivery.next_attempt_time),
        "finish_time": time(delivery.finish_time),
        "deadline_time": time(delivery.deadline_time),
        "attempts": attempts,
    })
}

/// The header and rows of a delivery listing.
pub fn delivery_table(deliveries: &[Delivery]) -> String {
    let mut table = format!(
        "{:<36}  {:<13}  {:>8}  {:<24}  {}\n",
        "ID", "STATE", "ATTEMPTS", "CREATED", "URL"
    );
    for delivery in deliveries {
        table.push_str(&format!(
            "{:<36}  {:<13}  {:>8}  {:<24}  {}\n",
            delivery.id,
            state(delivery),
            format!("{}/{}", delivery.attempt_count, delivery.max_attempts),
            or_dash(time(delivery.create_time)),
            delivery.url,
        ));
    }
    table
}

/// One delivery in detail, with its attempts.
pub fn delivery_detail(delivery: &Delivery) -> String {
    let method = delivery.method.as_str().to_ascii_uppercase();
    let mut text = String::new();
    for (label, value) in [
        ("id", delivery.id.clone()),
        ("state", state(delivery)),
        ("request", format!("{method} {}", delivery.url)),
        ("body", format!("{} bytes", delivery.body.len())),
        (
            "attempts",
            format!("{} of {}", delivery.attempt_count, delivery.max_attempts),
        ),
        ("last error", or_dash(Some(delivery.last_error.clone()))),
        ("created", or_dash(time(delivery.create_time))),
        ("next attempt", or_dash(time(delivery.next_attempt_time))),
        ("finished", or_dash(time(delivery.finish_time))),
    ] {
        text.push_str(&format!("{label:<13} {value}\n"));
    }
    if !delivery.attempts.is_empty() {
        text.push_str(&format!(
            "\n{:>3}  {:<24}  {:>10}  {:<15}  {}\n",
            "#", "STARTED", "DURATION", "RESULT", "MESSAGE"
        ));
        for attempt in &delivery.attempts {
            let duration = attempt
                .duration
                .map(|d| format!("{}ms", d.as_millis()))
                .unwrap_or_default();
            text.push_str(&format!(
                "{:>3}  {:<24}  {:>10}  {:<15}  {}\n",
                attempt.number,
                or_dash(time(attempt.start_time)),
                duration,
                attempt_result(attempt),
                attempt.error_message,
            ));
        }
    }
    text
}

/// Whether a state filter names a real state.
pub fn parse_state(text: &str) -> Result<DeliveryState, String> {
    text.parse()
        .map_err(|error: herald_client::UnknownName| error.to_string())
}

#[cfg(test)]
mod tests {
    use herald_proto::v1 as wire;

    use super::*;

    fn wire_delivery() -> wire::Delivery {
        wire::Delivery {
            id: "0193a8f0-0000-7000-8000-000000000001".into(),
            url: "https://example.com/hook".into(),
            method: wire::HttpMethod::Put.into(),
            state: wire::DeliveryState::DeadLettered.into(),
            attempt_count: 2,
            max_attempts: 5,
            create_time: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            body: b"{}".to_vec(),
            attempts: vec![wire::Attempt {
                number: 1,
                status_code: 503,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn delivery() -> Delivery {
        wire_delivery().into()
    }

    #[test]
    fn json_names_states_and_times_plainly() {
        let json = delivery_json(&delivery());
        assert_eq!(json["state"], "dead-lettered");
        assert_eq!(json["method"], "PUT");
        assert_eq!(json["create_time"], "2023-11-14T22:13:20.000Z");
        assert_eq!(json["body"], "e30=");
        assert_eq!(json["attempts"][0]["status_code"], 503);
        assert_eq!(json["finish_time"], Value::Null);
    }

    #[test]
    fn tables_line_up() {
        let table = delivery_table(&[delivery()]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0].find("STATE"), lines[1].find("dead-lettered"));
        assert!(lines[1].contains("2/5"), "{table}");
        let detail = delivery_detail(&delivery());
        assert!(detail.contains("state         dead-lettered"), "{detail}");
        assert!(detail.contains("503"), "{detail}");
    }

    #[test]
    fn states_parse_as_typed() {
        assert_eq!(
            parse_state("dead-lettered"),
            Ok(DeliveryState::DeadLettered)
        );
        assert_eq!(parse_state("pending"), Ok(DeliveryState::Pending));
        assert!(parse_state("unspecified").is_err());
        assert!(parse_state("done").is_err());
    }

    #[test]
    fn a_listed_state_is_what_the_state_flag_takes() {
        for listed in [
            DeliveryState::Pending,
            DeliveryState::Succeeded,
            DeliveryState::DeadLettered,
            DeliveryState::Cancelled,
        ] {
            let shown = state(&Delivery::from(wire::Delivery {
                state: listed.number(),
                ..wire_delivery()
            }));
            assert_eq!(parse_state(&shown), Ok(listed), "{shown}");
            assert!(!shown.contains('_'), "{shown}");
        }
    }
}
