//! A destination's policy: how many attempts may be in flight to it, how
//! fast it may be sent to, and when its circuit opens. Defaults come from
//! the configuration; each destination may override any of them, and a
//! value it does not override follows the configuration as it changes.

use std::{fmt, str::FromStr, time::Duration};

/// Most attempts in flight to one destination that a policy may allow.
pub const MAX_IN_FLIGHT: u32 = 10_000;
/// Most requests per period a rate limit may allow.
pub const MAX_RATE_REQUESTS: u32 = 1_000_000;
/// Largest burst a rate limit may allow.
pub const MAX_BURST: u32 = 10_000;
/// Most consecutive failures a circuit may wait for before it opens.
pub const MAX_FAILURE_THRESHOLD: u32 = 10_000;
/// Shortest cool-off of an open circuit.
pub const MIN_COOLDOWN: Duration = Duration::from_millis(100);
/// Longest cool-off of an open circuit.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(24 * 3600);

/// The unit a rate limit counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RatePeriod {
    /// Requests per second.
    Second,
    /// Requests per minute.
    Minute,
}

impl RatePeriod {
    /// The period's length.
    pub fn duration(self) -> Duration {
        match self {
            Self::Second => Duration::from_secs(1),
            Self::Minute => Duration::from_secs(60),
        }
    }

    /// The period from its length in milliseconds, as stored.
    pub fn from_millis(ms: i64) -> Option<Self> {
        match ms {
            1_000 => Some(Self::Second),
            60_000 => Some(Self::Minute),
            _ => None,
        }
    }

    /// The length in milliseconds, as stored.
    pub fn as_millis(self) -> i64 {
        match self {
            Self::Second => 1_000,
            Self::Minute => 60_000,
        }
    }
}

/// At most `requests` per `period` on average, and at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Requests per period, at least 1.
    pub requests: u32,
    /// The period they are counted in.
    pub period: RatePeriod,
    /// Requests that may go at once after a quiet spell, at least 1: in
    /// any period at most `requests + burst` are sent.
    pub burst: u32,
}

impl RateLimit {
    /// The steady spacing between two requests, in microseconds (at least 1).
    pub fn interval_us(&self) -> i64 {
        let period_us = self.period.as_millis() * 1_000;
        (period_us / i64::from(self.requests.max(1))).max(1)
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period {
            RatePeriod::Second => "s",
            RatePeriod::Minute => "min",
        };
        write!(f, "{}/{unit}", self.requests)
    }
}

/// A rate as configuration takes it: `50/s`, `3000/min` (burst apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per period.
    pub requests: u32,
    /// The period.
    pub period: RatePeriod,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = || format!("{text:?}: expected requests per period, e.g. 50/s or 3000/min");
        let (count, unit) = text.trim().split_once('/').ok_or_else(usage)?;
        let requests: u32 = count.trim().parse().map_err(|_| usage())?;
        let period = match unit.trim() {
            "s" | "sec" | "second" => RatePeriod::Second,
            "m" | "min" | "minute" => RatePeriod::Minute,
            _ => return Err(usage()),
        };
        if requests == 0 || requests > MAX_RATE_REQUESTS {
            return Err(format!(
                "{text:?}: requests must be between 1 and {MAX_RATE_REQUESTS}"
            ));
        }
        Ok(Self { requests, period })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        RateLimit {
            requests: self.requests,
            period: self.period,
            burst: 1,
        }
        .fmt(f)
    }
}

/// When a destination's circuit opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CircuitPolicy {
    /// Consecutive failures (no response, 408, 425, 429, 5xx) that open it.
    pub failure_threshold: u32,
    /// How long it stays open before the first probe.
    pub cooldown: Duration,
    /// The longest it stays open: each failed probe doubles the wait up
    /// to this.
    pub cooldown_max: Duration,
}

/// A destination's effective policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Policy {
    /// Most attempts in flight to it at once, across every replica.
    pub max_in_flight: u32,
    /// How fast it may be sent to, across every replica; `None`: no limit.
    pub rate_limit: Option<RateLimit>,
    /// Its circuit breaker.
    pub circuit: CircuitPolicy,
}

/// What a destination sets for itself; `None` follows the configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyOverrides {
    /// Most attempts in flight.
    pub max_in_flight: Option<u32>,
    /// `Some(None)`: explicitly no rate limit, whatever the default.
    pub rate_limit: Option<Option<RateLimit>>,
    /// Consecutive failures that open the circuit.
    pub failure_threshold: Option<u32>,
    /// First cool-off of an open circuit.
    pub cooldown: Option<Duration>,
    /// Longest cool-off.
    pub cooldown_max: Option<Duration>,
}

/// A field of a policy a destination may set for itself, named as the API
/// names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyField {
    /// [`PolicyOverrides::max_in_flight`].
    MaxInFlight,
    /// [`PolicyOverrides::rate_limit`].
    RateLimit,
    /// [`PolicyOverrides::failure_threshold`].
    FailureThreshold,
    /// [`PolicyOverrides::cooldown`].
    Cooldown,
    /// [`PolicyOverrides::cooldown_max`].
    CooldownMax,
}

impl PolicyField {
    /// Every field, in the order the API lists them.
    pub const ALL: [Self; 5] = [
        Self::MaxInFlight,
        Self::RateLimit,
        Self::FailureThreshold,
        Self::Cooldown,
        Self::CooldownMax,
    ];

    /// The field's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxInFlight => "max_in_flight",
            Self::RateLimit => "rate_limit",
            Self::FailureThreshold => "circuit.failure_threshold",
            Self::Cooldown => "circuit.cooldown",
            Self::CooldownMax => "circuit.cooldown_max",
        }
    }
}

impl fmt::Display for PolicyField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PolicyField {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|field| field.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|field| field.as_str()).collect();
                format!(
                    "{text:?} is not a policy field; use one of {}",
                    names.join(", ")
                )
            })
    }
}

/// A change of a destination's own policy: values to set, and fields to
/// return to the configuration's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyUpdate {
    /// The values set (`None`: unchanged).
    pub set: PolicyOverrides,
    /// The fields that follow the defaults again.
    pub reset: Vec<PolicyField>,
}

impl PolicyOverrides {
    /// The fields this destination sets for itself.
    pub fn fields(&self) -> Vec<PolicyField> {
        PolicyField::ALL
            .into_iter()
            .filter(|field| match field {
                PolicyField::MaxInFlight => self.max_in_flight.is_some(),
                PolicyField::RateLimit => self.rate_limit.is_some(),
                PolicyField::FailureThreshold => self.failure_threshold.is_some(),
                PolicyField::Cooldown => self.cooldown.is_some(),
                PolicyField::CooldownMax => self.cooldown_max.is_some(),
            })
            .collect()
    }

    /// `self` with `update` applied: its values set, then its reset fields
    /// cleared.
    pub fn updated(&self, update: &PolicyUpdate) -> Self {
        let set = &update.set;
        let mut updated = Self {
            max_in_flight: set.max_in_flight.or(self.max_in_flight),
            rate_limit: set.rate_limit.or(self.rate_limit),
            failure_threshold: set.failure_threshold.or(self.failure_threshold),
            cooldown: set.cooldown.or(self.cooldown),
            cooldown_max: set.cooldown_max.or(self.cooldown_max),
        };
        for field in &update.reset {
            match field {
                PolicyField::MaxInFlight => updated.max_in_flight = None,
                PolicyField::RateLimit => updated.rate_limit = None,
                PolicyField::FailureThreshold => updated.failure_threshold = None,
                PolicyField::Cooldown => updated.cooldown = None,
                PolicyField::CooldownMax => updated.cooldown_max = None,
            }
        }
        updated
    }
}

/// A policy value out of range: names the field and what it may be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct PolicyError {
    /// The field, as the API names it.
    pub field: &'static str,
    /// Its allowed range, or what is wrong.
    pub problem: String,
}

impl PolicyError {
    fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
        }
    }
}

/// Checks that `value` lies within `low..=high`.
fn within(field: &'static str, value: u32, low: u32, high: u32) -> Result<(), PolicyError> {
    if (low..=high).contains(&value) {
        Ok(())
    } else {
        Err(PolicyError::new(
            field,
            format!("{value} is out of range: must be between {low} and {high}"),
        ))
    }
}

fn within_duration(
    field: &'static str,
    value: Duration,
    low: Duration,
    high: Duration,
) -> Result<(), PolicyError> {
    if (low..=high).contains(&value) {
        Ok(())
    } else {
        Err(PolicyError::new(
            field,
            format!(
                "{} is out of range: must be between {} and {}",
                humantime::format_duration(value),
                humantime::format_duration(low),
                humantime::format_duration(high)
            ),
        ))
    }
}

impl Policy {
    /// `self` (the defaults) with `overrides` applied.
    pub fn with(&self, overrides: &PolicyOverrides) -> Self {
        Self {
            max_in_flight: overrides.max_in_flight.unwrap_or(self.max_in_flight),
            rate_limit: overrides.rate_limit.unwrap_or(self.rate_limit),
            circuit: CircuitPolicy {
                failure_threshold: overrides
                    .failure_threshold
                    .unwrap_or(self.circuit.failure_threshold),
                cooldown: overrides.cooldown.unwrap_or(self.circuit.cooldown),
                cooldown_max: overrides.cooldown_max.unwrap_or(self.circuit.cooldown_max),
            },
        }
    }

    /// Checks every value against its range; the error names the first
    /// field out of range (fields as the API names them).
    pub fn validate(&self) -> Result<(), PolicyError> {
        within("max_in_flight", self.max_in_flight, 1, MAX_IN_FLIGHT)?;
        if let Some(rate) = &self.rate_limit {
            within("rate_limit.requests", rate.requests, 1, MAX_RATE_REQUESTS)?;
            within("rate_limit.burst", rate.burst, 1, MAX_BURST)?;
        }
        let circuit = &self.circuit;
        within(
            "circuit.failure_threshold",
            circuit.failure_threshold,
            1,
            MAX_FAILURE_THRESHOLD,
        )?;
        within_duration(
            "circuit.cooldown",
            circuit.cooldown,
            MIN_COOLDOWN,
            MAX_COOLDOWN,
        )?;
        within_duration(
            "circuit.cooldown_max",
            circuit.cooldown_max,
            circuit.cooldown,
            MAX_COOLDOWN,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Policy {
        Policy {
            max_in_flight: 16,
            rate_limit: None,
            circuit: CircuitPolicy {
                failure_threshold: 10,
                cooldown: Duration::from_secs(1),
                cooldown_max: Duration::from_secs(60),
            },
        }
    }

    #[test]
    fn rates_parse_and_print() {
        let rate: Rate = "50/s".parse().unwrap();
        assert_eq!(rate.requests, 50);
        assert_eq!(rate.period, RatePeriod::Second);
        assert_eq!(rate.to_string(), "50/s");
        assert_eq!(
            "3000/min".parse::<Rate>().unwrap().period,
            RatePeriod::Minute
        );
        for bad in ["", "50", "0/s", "x/s", "5/h", "2000000/s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn overrides_replace_only_what_they_set() {
        let overrides = PolicyOverrides {
            max_in_flight: Some(4),
            rate_limit: Some(Some(RateLimit {
                requests: 50,
                period: RatePeriod::Second,
                burst: 5,
            })),
            ..PolicyOverrides::default()
        };
        let policy = defaults().with(&overrides);
        assert_eq!(policy.max_in_flight, 4);
        assert_eq!(policy.rate_limit.unwrap().burst, 5);
        assert_eq!(policy.circuit, defaults().circuit);
        let unlimited = PolicyOverrides {
            rate_limit: Some(None),
            ..PolicyOverrides::default()
        };
        assert_eq!(policy.with(&unlimited).rate_limit, None);
    }

    #[test]
    fn updates_set_keep_and_reset_fields() {
        let current = PolicyOverrides {
            max_in_flight: Some(4),
            cooldown: Some(Duration::from_secs(2)),
            ..PolicyOverrides::default()
        };
        let update = PolicyUpdate {
            set: PolicyOverrides {
                rate_limit: Some(None),
                failure_threshold: Some(3),
                ..PolicyOverrides::default()
            },
            reset: vec![PolicyField::Cooldown],
        };
        let updated = current.updated(&update);
        assert_eq!(
            updated,
            PolicyOverrides {
                max_in_flight: Some(4),
                rate_limit: Some(None),
                failure_threshold: Some(3),
                cooldown: None,
                cooldown_max: None,
            }
        );
        assert_eq!(
            updated.fields(),
            [
                PolicyField::MaxInFlight,
                PolicyField::RateLimit,
                PolicyField::FailureThreshold
            ]
        );
        assert!(PolicyOverrides::default().fields().is_empty());
    }

    #[test]
    fn policy_fields_parse_by_their_api_names() {
        for field in PolicyField::ALL {
            assert_eq!(field.as_str().parse::<PolicyField>(), Ok(field));
        }
        let refused = "cooldown".parse::<PolicyField>().unwrap_err();
        assert!(refused.contains("circuit.cooldown_max"), "{refused}");
    }

    #[test]
    fn out_of_range_values_name_their_field_and_range() {
        let mut policy = defaults();
        policy.max_in_flight = 0;
        let error = policy.validate().unwrap_err();
        assert_eq!(error.field, "max_in_flight");
        assert!(error.problem.contains("between 1 and 10000"), "{error}");
        let mut policy = defaults();
        policy.circuit.cooldown_max = Duration::from_millis(500);
        let error = policy.validate().unwrap_err();
        assert_eq!(error.field, "circuit.cooldown_max");
        assert!(error.to_string().contains("between 1s and 1day"), "{error}");
        defaults().validate().unwrap();
    }

    #[test]
    fn intervals_spread_the_period() {
        let limit = |requests, period| RateLimit {
            requests,
            period,
            burst: 1,
        };
        assert_eq!(limit(50, RatePeriod::Second).interval_us(), 20_000);
        assert_eq!(limit(3, RatePeriod::Second).interval_us(), 333_333);
        assert_eq!(limit(60, RatePeriod::Minute).interval_us(), 1_000_000);
    }
}
