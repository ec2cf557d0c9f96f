//! How `herald destinations` prints destinations: an aligned table and a
//! detail for people, JSON for scripts. Field names follow the proto;
//! times are RFC 3339 UTC, durations whole milliseconds.

use std::time::Duration;

use herald_client::{Destination, DestinationPolicy, RateLimit};
use serde_json::{Value, json};

use super::render::{or_dash, time};

fn millis(value: Option<Duration>) -> Option<u128> {
    value.map(|value| value.as_millis())
}

/// A duration for people: `1s`, `1m 30s`, `35ms`.
fn humane(value: Option<Duration>) -> String {
    or_dash(value.map(|value| {
        // Whole milliseconds: microseconds would only clutter.
        let ms = Duration::from_millis(u64::try_from(value.as_millis()).unwrap_or(u64::MAX));
        humantime::format_duration(ms).to_string()
    }))
}

fn state(destination: &Destination) -> String {
    destination.state.as_str().to_owned()
}

fn circuit(destination: &Destination) -> String {
    destination.circuit.as_str().to_owned()
}

fn period(limit: &RateLimit) -> &'static str {
    limit.period.as_str()
}

/// A rate limit in a few characters: `50/s`, `3000/min`, `-` for none.
fn rate(policy: Option<&DestinationPolicy>) -> String {
    match policy.and_then(|policy| policy.rate_limit.as_ref()) {
        Some(limit) => {
            let unit = if period(limit) == "minute" {
                "min"
            } else {
                "s"
            };
            format!("{}/{unit}", limit.requests)
        }
        None => "-".to_owned(),
    }
}

/// The recent success ratio as a percentage, `-` without attempts.
fn success(destination: &Destination) -> String {
    or_dash(
        destination
            .recent
            .as_ref()
            .and_then(|recent| recent.success_ratio)
            .map(|ratio| format!("{:.1}%", ratio * 100.0)),
    )
}

/// The destination as JSON.
pub fn destination_json(destination: &Destination) -> Value {
    let policy = destination.policy.as_ref();
    let circuit_policy = policy.and_then(|policy| policy.circuit.as_ref());
    let recent = destination.recent.as_ref();
    json!({
        "destination": destination.destination,
        "host": destination.host,
        "state": state(destination),
        "state_reason": destination.state_reason,
        "state_change_time": time(destination.state_change_time),
        "circuit": circuit(destination),
        "next_probe_time": time(destination.next_probe_time),
        "policy": {
            "max_in_flight": policy.map(|policy| policy.max_in_flight),
            "rate_limit": policy.and_then(|policy| policy.rate_limit.as_ref()).map(|limit| json!({
                "requests": limit.requests,
                "period": period(limit),
                "burst": limit.burst,
            })),
            "circuit": {
                "failure_threshold": circuit_policy.map(|circuit| circuit.failure_threshold),
                "cooldown_ms": millis(circuit_policy.and_then(|circuit| circuit.cooldown)),
                "cooldown_max_ms": millis(circuit_policy.and_then(|circuit| circuit.cooldown_max)),
            },
        },
        "policy_overrides": destination.policy_overrides,
        "in_flight": destination.in_flight,
        "consecutive_failures": destination.consecutive_failures,
        "last_success_time": time(destination.last_success_time),
        "last_failure_time": time(destination.last_failure_time),
        "failing_since_time": time(destination.failing_since_time),
        "hold_until_time": time(destination.hold_until_time),
        "recent": {
            "window_ms": millis(recent.and_then(|recent| recent.window)),
            "attempts": recent.map_or(0, |recent| recent.attempts),
            "success_ratio": recent.and_then(|recent| recent.success_ratio),
            "mean_latency_ms": recent
                .and_then(|recent| recent.mean_latency)
                .map(|latency| latency.as_secs_f64() * 1e3),
        },
        "create_time": time(destination.create_time),
        "update_time": time(destination.update_time),
    })
}

/// The header and rows of a destination listing.
pub fn destination_table(destinations: &[Destination]) -> String {
    let width = destinations
        .iter()
        .map(|destination| destination.destination.len())
        .max()
        .unwrap_or(0)
        .max("DESTINATION".len());
    let row = |cells: [&str; 7]| {
        format!(
            "{:<width$}  {:<8}  {:<9}  {:>9}  {:>8}  {:>8}  {:>7}\n",
            cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6]
        )
    };
    let mut table = row([
        "DESTINATION",
        "STATE",
        "CIRCUIT",
        "IN FLIGHT",
        "RATE",
        "ATTEMPTS",
        "SUCCESS",
    ]);
    for destination in destinations {
        let max = destination
            .policy
            .as_ref()
            .map_or(0, |policy| policy.max_in_flight);
        let attempts = destination
            .recent
            .as_ref()
            .map_or(0, |recent| recent.attempts);
        table.push_str(&row([
            &destination.destination,
            &state(destination),
            &circuit(destination),
            &format!("{}/{max}", destination.in_flight),
            &rate(destination.policy.as_ref()),
            &attempts.to_string(),
            &success(destination),
        ]));
    }
    table
}

/// One destination in detail.
pub fn destination_detail(destination: &Destination) -> String {
    let policy = destination.policy.as_ref();
    let circuit_policy = policy.and_then(|policy| policy.circuit.as_ref());
    let mut state_line = state(destination);
    if !destination.state_reason.is_empty() {
        state_line.push_str(&format!(" ({})", destination.state_reason));
    }
    let mut circuit_line = circuit(destination);
    if let Some(probe) = time(destination.next_probe_time) {
        circuit_line.push_str(&format!(", next probe {probe}"));
    }
    let rate_line = match policy.and_then(|policy| policy.rate_limit.as_ref()) {
        Some(limit) => format!("{}, burst {}", rate(policy), limit.burst),
        None => "none".to_owned(),
    };
    let breaker = format!(
        "opens after {} failures in a row; probes after {}, up to {}",
        circuit_policy.map_or(0, |circuit| circuit.failure_threshold),
        humane(circuit_policy.and_then(|circuit| circuit.cooldown)),
        humane(circuit_policy.and_then(|circuit| circuit.cooldown_max)),
    );
    let overrides = if destination.policy_overrides.is_empty() {
        "none: the server's defaults".to_owned()
    } else {
        destination.policy_overrides.join(", ")
    };
    let recent = destination.recent.as_ref();
    let window = humane(recent.and_then(|recent| recent.window));
    let recent_line = match recent.map_or(0, |recent| recent.attempts) {
        0 => format!("no attempts in the last {window}"),
        attempts => format!(
            "{attempts} attempts in the last {window}, {} succeeded, mean {}",
            success(destination),
            humane(recent.and_then(|recent| recent.mean_latency)),
        ),
    };
    let max = policy.map_or(0, |policy| policy.max_in_flight);
    let mut text = String::new();
    for (label, value) in [
        ("destination", destination.destination.clone()),
        ("state", state_line),
        ("circuit", circuit_line),
        ("in flight", format!("{} of {max}", destination.in_flight)),
        ("rate limit", rate_line),
        ("breaker", breaker),
        ("own policy", overrides),
        ("recent", recent_line),
        (
            "failures",
            format!("{} in a row", destination.consecutive_failures),
        ),
        (
            "failing since",
            or_dash(time(destination.failing_since_time)),
        ),
        ("last success", or_dash(time(destination.last_success_time))),
        ("last failure", or_dash(time(destination.last_failure_time))),
        ("holding until", or_dash(time(destination.hold_until_time))),
    ] {
        text.push_str(&format!("{label:<13} {value}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use herald_proto::v1 as proto;

    use super::*;

    fn destination() -> Destination {
        Destination::from(proto::Destination {
            destination: "https://api.example.com:443".into(),
            host: "api.example.com".into(),
            state: proto::DestinationState::Paused.into(),
            state_reason: "deploy".into(),
            circuit: proto::CircuitState::Closed.into(),
            policy: Some(proto::DestinationPolicy {
                max_in_flight: 4,
                rate_limit: Some(proto::RateLimit {
                    requests: 3000,
                    period: proto::RatePeriod::Minute.into(),
                    burst: 5,
                }),
                circuit: Some(proto::CircuitPolicy {
                    failure_threshold: Some(10),
                    cooldown: Some(prost_types::Duration {
                        seconds: 1,
                        nanos: 0,
                    }),
                    cooldown_max: Some(prost_types::Duration {
                        seconds: 90,
                        nanos: 0,
                    }),
                }),
            }),
            policy_overrides: vec!["max_in_flight".into(), "rate_limit".into()],
            in_flight: 2,
            recent: Some(proto::DestinationStats {
                window: Some(prost_types::Duration {
                    seconds: 300,
                    nanos: 0,
                }),
                attempts: 8,
                success_ratio: Some(0.75),
                mean_latency: Some(prost_types::Duration {
                    seconds: 0,
                    nanos: 35_000_000,
                }),
            }),
            ..Default::default()
        })
    }

    #[test]
    fn json_names_states_policies_and_times_plainly() {
        let json = destination_json(&destination());
        assert_eq!(json["state"], "paused");
        assert_eq!(json["circuit"], "closed");
        assert_eq!(json["policy"]["rate_limit"]["period"], "minute");
        assert_eq!(json["policy"]["circuit"]["cooldown_max_ms"], 90_000);
        assert_eq!(json["policy_overrides"][1], "rate_limit");
        assert_eq!(json["recent"]["mean_latency_ms"], 35.0);
        assert_eq!(json["last_success_time"], Value::Null);
    }

    #[test]
    fn tables_line_up_and_details_read_plainly() {
        let table = destination_table(&[destination()]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0].find("STATE"), lines[1].find("paused"));
        assert!(
            lines[1].contains("2/4") && lines[1].contains("3000/min"),
            "{table}"
        );
        assert!(lines[1].contains("75.0%"), "{table}");
        let detail = destination_detail(&destination());
        assert!(detail.contains("state         paused (deploy)"), "{detail}");
        assert!(detail.contains("probes after 1s, up to 1m 30s"), "{detail}");
        assert!(
            detail.contains("own policy    max_in_flight, rate_limit"),
            "{detail}"
        );
        assert!(
            detail.contains("8 attempts in the last 5m, 75.0% succeeded, mean 35ms"),
            "{detail}"
        );
    }
}
