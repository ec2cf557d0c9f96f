//! What `herald endpoints create` and `update` take beyond the endpoint's
//! own fields: headers typed as `name=value`, and a policy for the
//! endpoint's destination.

use std::time::Duration;

use clap::Args;
use herald_proto::v1::{CircuitPolicy, EndpointPolicy, Header, RateLimit, RatePeriod};

use crate::{config::RateSetting, destinations::policy::RatePeriod as Period};

/// A header as typed: `name=value`.
pub fn parse_header(text: &str) -> Result<Header, String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected name=value, e.g. x-team=billing"))?;
    Ok(Header {
        name: name.trim().to_owned(),
        value: value.to_owned(),
    })
}

/// A policy for the endpoint's destination, which it shares with
/// everything sent there (`herald destinations set` changes it too).
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Most attempts in flight to its destination at once.
    #[arg(long)]
    max_in_flight: Option<u32>,
    /// Its destination's rate limit: `50/s`, `3000/min`, or `off` for none
    /// whatever the default.
    #[arg(long)]
    rate_limit: Option<RateSetting>,
    /// Requests that may go at once after a quiet spell (with --rate-limit;
    /// 1 when not given).
    #[arg(long, requires = "rate_limit")]
    burst: Option<u32>,
    /// Consecutive failures that open its destination's circuit.
    #[arg(long)]
    failure_threshold: Option<u32>,
    /// How long the open circuit waits before the first probe, e.g. 1s.
    #[arg(long, value_parser = humantime::parse_duration)]
    cooldown: Option<Duration>,
    /// The longest the open circuit waits between probes, e.g. 60s.
    #[arg(long, value_parser = humantime::parse_duration)]
    cooldown_max: Option<Duration>,
}

/// A duration as the wire carries it (saturating, for the server to refuse
/// as out of range).
pub fn wire_duration(duration: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(duration).unwrap_or(prost_types::Duration {
        seconds: i64::MAX,
        nanos: 0,
    })
}

impl PolicyArgs {
    /// The policy as the request carries it; `None` when no flag was given.
    pub fn policy(&self) -> Option<EndpointPolicy> {
        let circuit = (self.failure_threshold.is_some()
            || self.cooldown.is_some()
            || self.cooldown_max.is_some())
        .then(|| CircuitPolicy {
            failure_threshold: self.failure_threshold,
            cooldown: self.cooldown.map(wire_duration),
            cooldown_max: self.cooldown_max.map(wire_duration),
        });
        let rate_limit = self.rate_limit.map(|RateSetting(rate)| match rate {
            Some(rate) => RateLimit {
                requests: rate.requests,
                period: match rate.period {
                    Period::Second => RatePeriod::Second,
                    Period::Minute => RatePeriod::Minute,
                }
                .into(),
                burst: self.burst.unwrap_or(0),
            },
            // No limit at all.
            None => RateLimit::default(),
        });
        (self.max_in_flight.is_some() || rate_limit.is_some() || circuit.is_some()).then_some(
            EndpointPolicy {
                max_in_flight: self.max_in_flight,
                rate_limit,
                circuit,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        policy: PolicyArgs,
    }

    fn policy(args: &[&str]) -> Option<EndpointPolicy> {
        Flags::parse_from(std::iter::once("test").chain(args.iter().copied()))
            .policy
            .policy()
    }

    #[test]
    fn headers_read_as_name_equals_value() {
        let header = parse_header("x-team=a=b").unwrap();
        assert_eq!(
            (header.name.as_str(), header.value.as_str()),
            ("x-team", "a=b")
        );
        assert!(parse_header("x-team: billing").is_err());
    }

    #[test]
    fn only_the_flags_given_make_a_policy() {
        assert_eq!(policy(&[]), None);
        let limited = policy(&["--rate-limit", "3000/min", "--burst", "4"]).unwrap();
        assert_eq!(
            limited.rate_limit,
            Some(RateLimit {
                requests: 3000,
                period: RatePeriod::Minute.into(),
                burst: 4,
            })
        );
        assert_eq!((limited.max_in_flight, limited.circuit), (None, None));
        let off = policy(&["--rate-limit", "off", "--cooldown", "2s"]).unwrap();
        assert_eq!(off.rate_limit, Some(RateLimit::default()));
        assert_eq!(
            off.circuit.and_then(|circuit| circuit.cooldown),
            Some(prost_types::Duration {
                seconds: 2,
                nanos: 0
            })
        );
    }
}
