//! How the operator commands print deliveries: aligned tables for people,
//! JSON (one document per command) for scripts. Field names follow the
//! proto; times are RFC 3339 UTC; the body is base64, as in proto JSON.

use std::time::{Duration, UNIX_EPOCH};

use base64::{Engine, engine::general_purpose::STANDARD};
use herald_client::{Attempt, AttemptError, Delivery, DeliveryState};
use serde_json::{Value, json};

/// `DEAD_LETTERED`-style proto enum names as `dead-lettered`: the spelling
/// the commands' flags take (`--state dead-lettered`) and `herald watch`
/// prints.
pub(super) fn enum_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix)
        .unwrap_or(full)
        .to_ascii_lowercase()
        .replace('_', "-")
}

/// A delivery's state, lower-case.
pub fn state(delivery: &Delivery) -> String {
    enum_name(delivery.state().as_str_name(), "DELIVERY_STATE_")
}

/// A proto timestamp as RFC 3339 UTC, to the millisecond.
pub(super) fn time(time: Option<&prost_types::Timestamp>) -> Option<String> {
    let time = time?;
    let since = Duration::new(
        u64::try_from(time.seconds).ok()?,
        u32::try_from(time.nanos).ok()?,
    );
    Some(humantime::format_rfc3339_millis(UNIX_EPOCH + since).to_string())
}

/// The text, or `-` when there is none.
pub(super) fn or_dash(text: Option<String>) -> String {
    text.filter(|text| !text.is_empty())
        .unwrap_or_else(|| "-".to_owned())
}

/// One attempt's result in a few words: the status, or the error class.
fn attempt_result(attempt: &Attempt) -> String {
    if attempt.status_code != 0 {
        return attempt.status_code.to_string();
    }
    enum_name(attempt.error().as_str_name(), "ATTEMPT_ERROR_")
}

/// The delivery as JSON, attempts included when present.
pub fn delivery_json(delivery: &Delivery) -> Value {
    let attempts: Vec<Value> = delivery
        .attempts
        .iter()
        .map(|attempt| {
            json!({
                "number": attempt.number,
                "started_time": time(attempt.started_time.as_ref()),
                "duration_ms": attempt.duration.map(|d| d.seconds as f64 * 1e3 + f64::from(d.nanos) / 1e6),
                "status_code": attempt.status_code,
                "error": (attempt.error() != AttemptError::Unspecified)
                    .then(|| enum_name(attempt.error().as_str_name(), "ATTEMPT_ERROR_")),
                "error_message": attempt.error_message,
                "response_excerpt": String::from_utf8_lossy(&attempt.response_excerpt),
            })
        })
        .collect();
    json!({
        "id": delivery.id,
        "state": state(delivery),
        "method": enum_name(delivery.method().as_str_name(), "HTTP_METHOD_").to_ascii_uppercase(),
        "url": delivery.url,
        "headers": delivery.headers.iter().map(|h| json!({"name": h.name, "value": h.value})).collect::<Vec<_>>(),
        "content_type": delivery.content_type,
        "body": STANDARD.encode(&delivery.body),
        "idempotency_key": delivery.idempotency_key,
        "attempt_count": delivery.attempt_count,
        "max_attempts": delivery.max_attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "create_time": time(delivery.create_time.as_ref()),
        "update_time": time(delivery.update_time.as_ref()),
        "next_attempt_time": time(delivery.next_attempt_time.as_ref()),
        "finish_time": time(delivery.finish_time.as_ref()),
        "deadline_time": time(delivery.deadline_time.as_ref()),
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
            or_dash(time(delivery.create_time.as_ref())),
            delivery.url,
        ));
    }
    table
}

/// One delivery in detail, with its attempts.
pub fn delivery_detail(delivery: &Delivery) -> String {
    let method = enum_name(delivery.method().as_str_name(), "HTTP_METHOD_").to_ascii_uppercase();
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
        ("created", or_dash(time(delivery.create_time.as_ref()))),
        (
            "next attempt",
            or_dash(time(delivery.next_attempt_time.as_ref())),
        ),
        ("finished", or_dash(time(delivery.finish_time.as_ref()))),
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
                .map(|d| format!("{}ms", d.seconds * 1000 + i64::from(d.nanos) / 1_000_000))
                .unwrap_or_default();
            text.push_str(&format!(
                "{:>3}  {:<24}  {:>10}  {:<15}  {}\n",
                attempt.number,
                or_dash(time(attempt.started_time.as_ref())),
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
    let upper = format!(
        "DELIVERY_STATE_{}",
        text.replace('-', "_").to_ascii_uppercase()
    );
    DeliveryState::from_str_name(&upper)
        .filter(|state| *state != DeliveryState::Unspecified)
        .ok_or_else(|| {
            format!("unknown state {text:?}: use pending, succeeded, dead-lettered or cancelled")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery() -> Delivery {
        Delivery {
            id: "0193a8f0-0000-7000-8000-000000000001".into(),
            url: "https://example.com/hook".into(),
            state: DeliveryState::DeadLettered.into(),
            attempt_count: 2,
            max_attempts: 5,
            create_time: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            body: b"{}".to_vec(),
            attempts: vec![Attempt {
                number: 1,
                status_code: 503,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn json_names_states_and_times_plainly() {
        let json = delivery_json(&delivery());
        assert_eq!(json["state"], "dead-lettered");
        assert_eq!(json["method"], "UNSPECIFIED");
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
            let shown = state(&Delivery {
                state: listed.into(),
                ..delivery()
            });
            assert_eq!(parse_state(&shown), Ok(listed), "{shown}");
            assert!(!shown.contains('_'), "{shown}");
        }
    }
}
