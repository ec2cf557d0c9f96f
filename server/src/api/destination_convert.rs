//! Destination requests and answers: the destination a request names, the
//! state it filters by, the policy change it asks for (INVALID_ARGUMENT
//! naming the field at fault), and a destination as the API shows it.

use std::time::Duration;

use herald_proto::v1::{self as proto, SetDestinationPolicyRequest};

use super::{
    convert::{duration_us, timestamp},
    error::ApiError,
    repeated::at_most,
};
use crate::{
    destinations::{
        breaker::Phase,
        policy::{
            CircuitPolicy, Policy, PolicyField, PolicyOverrides, PolicyUpdate, RateLimit,
            RatePeriod,
        },
    },
    domain::{Destination, DestinationStatus},
    store::records::{DestinationRecord, DestinationRef, RecentAttempts},
};

/// Longest reason a pause may give.
const MAX_REASON_BYTES: usize = 1024;
/// The reason a pause records when it gives none.
const DEFAULT_PAUSE_REASON: &str = "paused by an operator";

/// The destination `raw` names for `tenant_id` (`scheme://host:port`, or
/// any absolute http(s) URL to it), with its host.
pub fn destination(tenant_id: &str, raw: &str) -> Result<(DestinationRef, String), ApiError> {
    if raw.is_empty() {
        return Err(ApiError::invalid(
            "destination",
            "is required: scheme://host:port, e.g. https://api.example.com:443",
        ));
    }
    let named = url::Url::parse(raw.trim())
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https"))
        .and_then(|url| Destination::of(&url))
        .filter(|named| !named.host.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                "destination",
                format!(
                    "{raw:?} is not a destination: give scheme://host:port \
                     (e.g. https://api.example.com:443) or an http(s) URL"
                ),
            )
        })?;
    let reference = DestinationRef {
        tenant_id: tenant_id.to_owned(),
        destination: named.key,
    };
    Ok((reference, named.host))
}

/// A state filter from the API: `None` for "any state".
pub fn status_filter(raw: i32) -> Result<Option<DestinationStatus>, ApiError> {
    match proto::DestinationState::try_from(raw) {
        Ok(proto::DestinationState::Unspecified) => Ok(None),
        Ok(proto::DestinationState::Active) => Ok(Some(DestinationStatus::Active)),
        Ok(proto::DestinationState::Paused) => Ok(Some(DestinationStatus::Paused)),
        Ok(proto::DestinationState::Disabled) => Ok(Some(DestinationStatus::Disabled)),
        Err(_) => Err(ApiError::invalid(
            "state",
            format!("{raw} is not a destination state"),
        )),
    }
}

/// The reason a pause records: the caller's, or a default.
pub fn pause_reason(raw: &str) -> Result<String, ApiError> {
    let reason = raw.trim();
    if reason.len() > MAX_REASON_BYTES {
        return Err(ApiError::invalid(
            "reason",
            format!("is {} bytes; the most is {MAX_REASON_BYTES}", reason.len()),
        ));
    }
    Ok(if reason.is_empty() {
        DEFAULT_PAUSE_REASON
    } else {
        reason
    }
    .to_owned())
}

/// The policy change `request` asks for. Ranges are checked by the store,
/// on the policy that results.
pub fn policy_update(request: &SetDestinationPolicyRequest) -> Result<PolicyUpdate, ApiError> {
    let circuit = request.circuit.unwrap_or_default();
    let set = PolicyOverrides {
        max_in_flight: request.max_in_flight,
        rate_limit: request.rate_limit.as_ref().map(rate_limit).transpose()?,
        failure_threshold: circuit.failure_threshold,
        cooldown: circuit
            .cooldown
            .map(|cooldown| duration("circuit.cooldown", cooldown))
            .transpose()?,
        cooldown_max: circuit
            .cooldown_max
            .map(|cooldown| duration("circuit.cooldown_max", cooldown))
            .transpose()?,
    };
    let given = set.fields();
    at_most("reset", request.reset.len(), PolicyField::ALL.len())?;
    let mut reset = Vec::with_capacity(request.reset.len());
    for name in &request.reset {
        let field: PolicyField = name
            .parse()
            .map_err(|problem| ApiError::invalid("reset", problem))?;
        if given.contains(&field) {
            return Err(ApiError::invalid(
                "reset",
                format!("names {field}, which the request also sets; give one or the other"),
            ));
        }
        if !reset.contains(&field) {
            reset.push(field);
        }
    }
    Ok(PolicyUpdate { set, reset })
}

/// A rate limit to set: `None` (requests 0) for none at all.
fn rate_limit(limit: &proto::RateLimit) -> Result<Option<RateLimit>, ApiError> {
    if limit.requests == 0 {
        if limit.period != 0 {
            return Err(ApiError::invalid(
                "rate_limit.period",
                "must be unset when rate_limit.requests is 0 (no rate limit)",
            ));
        }
        if limit.burst != 0 {
            return Err(ApiError::invalid(
                "rate_limit.burst",
                "must be 0 when rate_limit.requests is 0 (no rate limit)",
            ));
        }
        return Ok(None);
    }
    let period = match proto::RatePeriod::try_from(limit.period) {
        Ok(proto::RatePeriod::Second) => RatePeriod::Second,
        Ok(proto::RatePeriod::Minute) => RatePeriod::Minute,
        Ok(proto::RatePeriod::Unspecified) | Err(_) => {
            return Err(ApiError::invalid(
                "rate_limit.period",
                "is required with requests: RATE_PERIOD_SECOND or RATE_PERIOD_MINUTE",
            ));
        }
    };
    Ok(Some(RateLimit {
        requests: limit.requests,
        period,
        burst: limit.burst.max(1),
    }))
}

fn duration(field: &'static str, value: prost_types::Duration) -> Result<Duration, ApiError> {
    Duration::try_from(value)
        .map_err(|_| ApiError::invalid(field, "is not a valid duration: it must not be negative"))
}

fn proto_duration(value: Duration) -> prost_types::Duration {
    duration_us(i64::try_from(value.as_micros()).unwrap_or(i64::MAX))
}

fn state(status: DestinationStatus) -> proto::DestinationState {
    match status {
        DestinationStatus::Active => proto::DestinationState::Active,
        DestinationStatus::Paused => proto::DestinationState::Paused,
        DestinationStatus::Disabled => proto::DestinationState::Disabled,
    }
}

fn policy(policy: &Policy) -> proto::DestinationPolicy {
    let CircuitPolicy {
        failure_threshold,
        cooldown,
        cooldown_max,
    } = policy.circuit;
    proto::DestinationPolicy {
        max_in_flight: policy.max_in_flight,
        rate_limit: policy.rate_limit.map(|limit| proto::RateLimit {
            requests: limit.requests,
            period: match limit.period {
                RatePeriod::Second => proto::RatePeriod::Second,
                RatePeriod::Minute => proto::RatePeriod::Minute,
            }
            .into(),
            burst: limit.burst,
        }),
        circuit: Some(proto::CircuitPolicy {
            failure_threshold: Some(failure_threshold),
            cooldown: Some(proto_duration(cooldown)),
            cooldown_max: Some(proto_duration(cooldown_max)),
        }),
    }
}

fn stats(recent: RecentAttempts) -> proto::DestinationStats {
    let attempted = recent.attempts > 0;
    proto::DestinationStats {
        window: Some(proto_duration(recent.window)),
        attempts: recent.attempts,
        success_ratio: attempted.then(|| recent.successes as f64 / recent.attempts as f64),
        mean_latency: attempted.then(|| {
            duration_us(i64::try_from(recent.duration_us / recent.attempts).unwrap_or(i64::MAX))
        }),
    }
}

/// A destination as the API shows it.
pub fn message(record: DestinationRecord) -> proto::Destination {
    let (circuit, next_probe_time) = match record.circuit.phase(record.now_ms) {
        Phase::Closed => (proto::CircuitState::Closed, None),
        Phase::Open { until_ms } => (proto::CircuitState::Open, Some(timestamp(until_ms))),
        Phase::HalfOpen => (proto::CircuitState::HalfOpen, None),
    };
    proto::Destination {
        destination: record.destination,
        host: record.host,
        state: state(record.status).into(),
        state_reason: record.state_reason.unwrap_or_default(),
        state_change_time: record.state_changed_at_ms.map(timestamp),
        circuit: circuit.into(),
        next_probe_time,
        policy: Some(policy(&record.policy)),
        policy_overrides: record
            .overrides
            .fields()
            .into_iter()
            .map(|field| field.as_str().to_owned())
            .collect(),
        in_flight: record.in_flight,
        consecutive_failures: record.consecutive_failures,
        last_success_time: record.last_success_at_ms.map(timestamp),
        last_failure_time: record.last_failure_at_ms.map(timestamp),
        failing_since_time: record.failing_since_ms.map(timestamp),
        hold_until_time: record
            .hold_until_ms
            .filter(|until| *until > record.now_ms)
            .map(timestamp),
        recent: Some(stats(record.recent)),
        create_time: Some(timestamp(record.created_at_ms)),
        update_time: Some(timestamp(record.updated_at_ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destinations::breaker::Circuit;

    fn field(error: ApiError) -> &'static str {
        match error {
            ApiError::InvalidArgument { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn destinations_are_named_by_key_or_url() {
        for raw in [
            "https://API.example.com:443",
            "https://api.example.com",
            "https://api.example.com/hooks/1?x=y",
        ] {
            let (named, host) = destination("t", raw).unwrap();
            assert_eq!(named.destination, "https://api.example.com:443", "{raw}");
            assert_eq!(
                (named.tenant_id.as_str(), host.as_str()),
                ("t", "api.example.com")
            );
        }
        assert_eq!(
            destination("t", "http://127.0.0.1:8080")
                .unwrap()
                .0
                .destination,
            "http://127.0.0.1:8080"
        );
        for bad in [
            "",
            "api.example.com",
            "ftp://x.example:21",
            "https://",
            "nope",
        ] {
            assert_eq!(
                field(destination("t", bad).unwrap_err()),
                "destination",
                "{bad}"
            );
        }
    }

    #[test]
    fn policy_requests_become_updates() {
        let request = SetDestinationPolicyRequest {
            max_in_flight: Some(4),
            rate_limit: Some(proto::RateLimit {
                requests: 50,
                period: proto::RatePeriod::Second.into(),
                burst: 0,
            }),
            circuit: Some(proto::CircuitPolicy {
                cooldown: Some(prost_types::Duration {
                    seconds: 2,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            reset: vec!["circuit.cooldown_max".into(), "circuit.cooldown_max".into()],
            ..Default::default()
        };
        let update = policy_update(&request).unwrap();
        assert_eq!(update.set.max_in_flight, Some(4));
        assert_eq!(
            update.set.rate_limit,
            Some(Some(RateLimit {
                requests: 50,
                period: RatePeriod::Second,
                burst: 1
            }))
        );
        assert_eq!(update.set.cooldown, Some(Duration::from_secs(2)));
        assert_eq!(update.set.failure_threshold, None);
        assert_eq!(update.reset, [PolicyField::CooldownMax]);

        let unlimited = SetDestinationPolicyRequest {
            rate_limit: Some(proto::RateLimit::default()),
            ..Default::default()
        };
        assert_eq!(
            policy_update(&unlimited).unwrap().set.rate_limit,
            Some(None)
        );
    }

    #[test]
    fn policy_requests_name_the_field_at_fault() {
        let refused =
            |request: SetDestinationPolicyRequest| field(policy_update(&request).unwrap_err());
        let no_period = SetDestinationPolicyRequest {
            rate_limit: Some(proto::RateLimit {
                requests: 5,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(refused(no_period), "rate_limit.period");
        let burst_without_rate = SetDestinationPolicyRequest {
            rate_limit: Some(proto::RateLimit {
                burst: 3,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(refused(burst_without_rate), "rate_limit.burst");
        let negative = SetDestinationPolicyRequest {
            circuit: Some(proto::CircuitPolicy {
                cooldown_max: Some(prost_types::Duration {
                    seconds: -1,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(refused(negative), "circuit.cooldown_max");
        let unknown = SetDestinationPolicyRequest {
            reset: vec!["cooldown".into()],
            ..Default::default()
        };
        assert_eq!(refused(unknown), "reset");
        let both = SetDestinationPolicyRequest {
            max_in_flight: Some(3),
            reset: vec!["max_in_flight".into()],
            ..Default::default()
        };
        assert_eq!(refused(both), "reset");
    }

    #[test]
    fn pauses_have_a_reason() {
        assert_eq!(pause_reason("  ").unwrap(), DEFAULT_PAUSE_REASON);
        assert_eq!(pause_reason(" deploy ").unwrap(), "deploy");
        assert_eq!(
            field(pause_reason(&"x".repeat(2000)).unwrap_err()),
            "reason"
        );
    }

    fn record(circuit: Circuit, recent: RecentAttempts) -> DestinationRecord {
        DestinationRecord {
            destination: "https://a.example:443".into(),
            host: "a.example".into(),
            status: DestinationStatus::Paused,
            state_reason: Some("deploy".into()),
            state_changed_at_ms: Some(1_000),
            policy: Policy {
                max_in_flight: 8,
                rate_limit: None,
                circuit: CircuitPolicy {
                    failure_threshold: 10,
                    cooldown: Duration::from_secs(1),
                    cooldown_max: Duration::from_secs(60),
                },
            },
            overrides: PolicyOverrides {
                max_in_flight: Some(8),
                ..PolicyOverrides::default()
            },
            circuit,
            consecutive_failures: 3,
            hold_until_ms: Some(5_000),
            last_success_at_ms: None,
            last_failure_at_ms: Some(9_000),
            failing_since_ms: Some(8_000),
            in_flight: 2,
            recent,
            created_at_ms: 500,
            updated_at_ms: 9_500,
            now_ms: 10_000,
        }
    }

    #[test]
    fn records_show_circuit_overrides_and_recent_health() {
        let open = Circuit {
            open_until_ms: Some(12_000),
            trips: 1,
        };
        let shown = message(record(
            open,
            RecentAttempts {
                window: Duration::from_secs(300),
                attempts: 4,
                successes: 3,
                duration_us: 2_000,
            },
        ));
        assert_eq!(shown.state(), proto::DestinationState::Paused);
        assert_eq!(shown.circuit(), proto::CircuitState::Open);
        assert_eq!(shown.next_probe_time, Some(timestamp(12_000)));
        assert_eq!(shown.policy_overrides, ["max_in_flight"]);
        assert_eq!(
            shown.hold_until_time, None,
            "a hold that passed is not shown"
        );
        let recent = shown.recent.unwrap();
        assert_eq!(recent.success_ratio, Some(0.75));
        assert_eq!(recent.mean_latency, Some(duration_us(500)));
        assert_eq!(recent.window.unwrap().seconds, 300);
        let policy = shown.policy.unwrap();
        assert_eq!(policy.rate_limit, None);
        assert_eq!(policy.circuit.unwrap().failure_threshold, Some(10));

        let half_open = Circuit {
            open_until_ms: Some(10_000),
            trips: 1,
        };
        let shown = message(record(half_open, RecentAttempts::default()));
        assert_eq!(shown.circuit(), proto::CircuitState::HalfOpen);
        assert_eq!(shown.next_probe_time, None);
        let recent = shown.recent.unwrap();
        assert_eq!((recent.success_ratio, recent.mean_latency), (None, None));
    }
}
