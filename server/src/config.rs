//! One typed [`Config`], read from flags and `HERALD_*` environment
//! variables (flags win), validated once at load with cross-field checks.
//! Defaults work on a laptop: loopback listener, embedded SQLite.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::Args;
use ipnet::IpNet;
use serde::{Serialize, Serializer};

use crate::{
    destinations::policy::{CircuitPolicy, Policy, Rate, RateLimit},
    secrets::SecretKeySettings,
    web::CorsOrigin,
};

/// Everything `herald serve` can be told. Durations take humantime values
/// such as `500ms`, `30s` or `2h`. Serializes to the TOML a `--config` file
/// holds (`herald config print`).
#[derive(Debug, Clone, Args, Serialize)]
pub struct Config {
    /// Address the gRPC server listens on.
    #[arg(long, env = "HERALD_LISTEN_ADDR", default_value = "127.0.0.1:50051")]
    pub listen_addr: SocketAddr,

    /// Address of the Prometheus metrics listener (`GET /metrics`); off
    /// unless set. Metrics hold no payloads or secrets, but keep it off the
    /// public internet all the same.
    #[arg(long, env = "HERALD_METRICS_ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_addr: Option<SocketAddr>,

    /// Address of the dashboard: the web page at `/`, and the same API over
    /// gRPC-web (same API keys, same tenants) for the page to call from
    /// its own origin. Off unless set; loopback-only while no tenant exists.
    #[arg(long, env = "HERALD_DASHBOARD_ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dashboard_addr: Option<SocketAddr>,

    /// Origins whose pages may call the gRPC listener over gRPC-web (CORS),
    /// comma-separated, e.g. `https://ops.example.com`. Empty by default:
    /// browsers let no other origin's page call it.
    #[arg(long, env = "HERALD_CORS_ORIGINS", value_delimiter = ',')]
    #[serde(serialize_with = "displayed")]
    pub cors_origins: Vec<CorsOrigin>,

    /// Database URL: `sqlite://FILE` (created if missing) or `postgres://...`.
    #[arg(
        long,
        env = "HERALD_DATABASE_URL",
        default_value = "sqlite://herald.db"
    )]
    pub database_url: String,

    /// Apply pending migrations at start. Off, the server refuses to
    /// start on a schema that lacks any, naming them.
    #[arg(long, env = "HERALD_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate: bool,

    /// Longest a migration statement waits for a lock on PostgreSQL before
    /// the migration stops (and says which transactions were open); it
    /// goes on from there when run again.
    #[arg(long, env = "HERALD_MIGRATION_LOCK_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "humane")]
    pub migration_lock_timeout: Duration,

    /// Connections for the read-only calls (listings, lookups, the
    /// backlog), a pool apart from the one enqueues and delivery use, so
    /// heavy reading cannot hold up enqueues.
    #[arg(long, env = "HERALD_READ_POOL_SIZE", default_value_t = crate::store::DEFAULT_READ_CONNECTIONS)]
    pub read_pool_size: u32,

    /// Longest one attempt may take, from connect to the end of the response.
    #[arg(long, env = "HERALD_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "humane")]
    pub request_timeout: Duration,

    /// How long a claimed delivery stays leased to one replica. Must exceed
    /// the request timeout, so a live attempt never loses its lease.
    #[arg(long, env = "HERALD_LEASE_DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "humane")]
    pub lease_duration: Duration,

    /// Attempts per delivery unless the enqueue says otherwise.
    #[arg(long, env = "HERALD_MAX_ATTEMPTS", default_value_t = 20)]
    pub max_attempts: u32,

    /// Backoff floor: the first retry waits up to this long (full jitter).
    #[arg(long, env = "HERALD_RETRY_MIN_BACKOFF", default_value = "5s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "humane")]
    pub retry_min_backoff: Duration,

    /// Backoff cap: no retry waits longer than this (unless `Retry-After` asks, up to its cap).
    #[arg(long, env = "HERALD_RETRY_MAX_BACKOFF", default_value = "6h", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "humane")]
    pub retry_max_backoff: Duration,

    /// Longest `Retry-After` a receiver can ask for; longer requests are cut to this.
    #[arg(long, env = "HERALD_RETRY_AFTER_CAP", default_value = "1h", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "humane")]
    pub retry_after_cap: Duration,

    /// Most attempts in flight at once on this replica.
    #[arg(long, env = "HERALD_CONCURRENCY", default_value_t = 128)]
    pub concurrency: usize,

    /// Most attempts in flight at once to one destination (a tenant's
    /// scheme, host and port), across every replica, unless the
    /// destination sets its own; a slow receiver cannot take every slot.
    #[arg(long, env = "HERALD_DESTINATION_CONCURRENCY", default_value_t = 16)]
    pub destination_concurrency: u32,

    /// Every destination's rate limit unless it sets its own, across every
    /// replica: `50/s`, `3000/min`, or `off`.
    #[arg(long, env = "HERALD_DESTINATION_RATE_LIMIT", default_value = "off")]
    #[serde(serialize_with = "displayed_one")]
    pub destination_rate_limit: RateSetting,

    /// Requests a rate-limited destination may take at once after a quiet
    /// spell (at least 1): in any period at most the rate plus this.
    #[arg(long, env = "HERALD_DESTINATION_RATE_BURST", default_value_t = 1)]
    pub destination_rate_burst: u32,

    /// Consecutive failures (no response, 408, 425, 429, 5xx) that open a
    /// destination's circuit, unless it sets its own.
    #[arg(long, env = "HERALD_CIRCUIT_FAILURE_THRESHOLD", default_value_t = 10)]
    pub circuit_failure_threshold: u32,

    /// How long an open circuit waits before its first probe.
    #[arg(long, env = "HERALD_CIRCUIT_COOLDOWN", default_value = "1s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "humane")]
    pub circuit_cooldown: Duration,

    /// The longest an open circuit waits between probes (each failed probe
    /// doubles the wait up to this).
    #[arg(long, env = "HERALD_CIRCUIT_COOLDOWN_MAX", default_value = "60s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "humane")]
    pub circuit_cooldown_max: Duration,

    /// A destination that fails without a single success for this long is
    /// disabled: its pending deliveries are dead-lettered and new ones
    /// refused until it is enabled. `0s` never disables.
    #[arg(long, env = "HERALD_DESTINATION_DISABLE_AFTER", default_value = "5d", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "humane")]
    pub destination_disable_after: Duration,

    /// Safety-net poll for due work when no wake-up arrives.
    #[arg(long, env = "HERALD_POLL_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "humane")]
    pub poll_interval: Duration,

    /// How much of each response body is kept with the attempt, in bytes.
    #[arg(long, env = "HERALD_RESPONSE_EXCERPT_BYTES", default_value_t = 1024)]
    pub response_excerpt_bytes: usize,

    /// Outcomes held in memory for live watchers; a watcher further behind
    /// reads storage instead, so this bounds memory, not correctness.
    #[arg(long, env = "HERALD_FEED_BUFFER", default_value_t = 4096)]
    pub feed_buffer: usize,

    /// How long outcomes stay in the feed for `WatchOutcomes` replays.
    #[arg(long, env = "HERALD_OUTCOME_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "humane")]
    pub outcome_retention: Duration,

    /// How long succeeded deliveries (with their attempts) are kept.
    #[arg(long, env = "HERALD_RETAIN_SUCCEEDED", default_value = "7d", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "humane")]
    pub retain_succeeded: Duration,

    /// How long dead-lettered deliveries are kept (and can be redriven).
    #[arg(long, env = "HERALD_RETAIN_DEAD_LETTERED", default_value = "30d", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "humane")]
    pub retain_dead_lettered: Duration,

    /// How long cancelled deliveries are kept.
    #[arg(long, env = "HERALD_RETAIN_CANCELLED", default_value = "30d", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "humane")]
    pub retain_cancelled: Duration,

    /// How long audit events (operator actions) are kept.
    #[arg(long, env = "HERALD_AUDIT_RETENTION", default_value = "1year", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "humane")]
    pub audit_retention: Duration,

    /// On shutdown, how long in-flight attempts may take to finish, from
    /// the signal. The default leaves 10 s of Kubernetes' default
    /// termination period (30 s) to record results and give leases back.
    #[arg(long, env = "HERALD_SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "humane")]
    pub shutdown_grace: Duration,

    /// Address ranges Herald may send to although they are not global
    /// (loopback, private, link-local...): comma-separated CIDRs, e.g.
    /// `127.0.0.0/8,::1/128` for local development. Empty by default.
    #[arg(long, env = "HERALD_ALLOW_TARGET_CIDRS", value_delimiter = ',')]
    #[serde(serialize_with = "displayed")]
    pub allow_target_cidrs: Vec<IpNet>,

    /// PEM certificate chain for the gRPC listener; with `tls_key`, the
    /// listener speaks TLS only.
    #[arg(long, env = "HERALD_TLS_CERT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `tls_cert`.
    #[arg(long, env = "HERALD_TLS_KEY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,

    /// How long a replica reuses an API-key lookup or a tenant's signing
    /// secrets. Revocations and rotations are announced and take effect
    /// within about a second; this bounds what a missed one could cost.
    #[arg(long, env = "HERALD_CREDENTIAL_CACHE", default_value = "10s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "humane")]
    pub credential_cache: Duration,

    /// Failed authentications allowed per client address (an IPv6 client
    /// by its /64) and per key id, on average: `10/s`, `300/min`. Beyond
    /// it an address is refused without its key being looked up.
    #[arg(long, env = "HERALD_AUTH_FAILURE_RATE", default_value = "10/s")]
    #[serde(serialize_with = "displayed_one")]
    pub auth_failure_rate: Rate,

    /// Failed authentications allowed at once before the rate applies.
    #[arg(long, env = "HERALD_AUTH_FAILURE_BURST", default_value_t = 20)]
    pub auth_failure_burst: u32,

    /// Most calls one client connection may have in progress at once;
    /// more wait their turn.
    #[arg(long, env = "HERALD_MAX_CALLS_PER_CONNECTION", default_value_t = 256)]
    pub max_calls_per_connection: usize,

    /// Most `WatchOutcomes` streams one tenant may have open on a replica;
    /// one more answers RESOURCE_EXHAUSTED.
    #[arg(long, env = "HERALD_MAX_WATCHES_PER_TENANT", default_value_t = 64)]
    pub max_watches_per_tenant: usize,

    /// The keys that seal signing secrets at rest.
    #[command(flatten)]
    #[serde(flatten)]
    pub secret_keys: SecretKeySettings,

    /// Bounds on what one request may carry.
    #[command(flatten)]
    #[serde(flatten)]
    pub limits: InputLimits,
}

/// Bounds on what one request may carry. Each refusal is an
/// INVALID_ARGUMENT that names the field and the limit.
#[derive(Debug, Clone, Args, Serialize)]
pub struct InputLimits {
    /// Largest request body accepted by Enqueue, in bytes. The gRPC message
    /// limit follows from this and the other limits.
    #[arg(long, env = "HERALD_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Most caller headers on one delivery.
    #[arg(long, env = "HERALD_MAX_HEADERS", default_value_t = 64)]
    pub max_headers: usize,

    /// Most bytes of caller headers (names plus values) on one delivery.
    #[arg(long, env = "HERALD_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,

    /// Longest destination URL, in bytes.
    #[arg(long, env = "HERALD_MAX_URL_BYTES", default_value_t = 2048)]
    pub max_url_bytes: usize,

    /// Longest idempotency key, in bytes (at most 255).
    #[arg(long, env = "HERALD_MAX_IDEMPOTENCY_KEY_BYTES", default_value_t = 255)]
    pub max_idempotency_key_bytes: usize,

    /// Most attempts one delivery may ask for with `max_attempts`.
    #[arg(long, env = "HERALD_MAX_ATTEMPTS_LIMIT", default_value_t = 100)]
    pub max_attempts_limit: u32,

    /// Most deliveries in one EnqueueBatch.
    #[arg(long, env = "HERALD_MAX_BATCH_SIZE", default_value_t = 1000)]
    pub max_batch_size: usize,

    /// Largest EnqueueBatch message, in bytes (each item is still held to
    /// the single-delivery limits).
    #[arg(long, env = "HERALD_MAX_BATCH_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_batch_bytes: usize,

    /// Largest page a listing returns; a larger `page_size` is reduced to it.
    #[arg(long, env = "HERALD_MAX_PAGE_SIZE", default_value_t = 1000)]
    pub max_page_size: u32,

    /// Refuse `http://` destinations: every delivery must use https.
    #[arg(long, env = "HERALD_REQUIRE_HTTPS", default_value_t = false, action = clap::ArgAction::Set)]
    pub require_https: bool,
}

/// Room in a gRPC message beyond the body, headers and URL: field tags,
/// the idempotency key, timestamps.
const MESSAGE_OVERHEAD_BYTES: usize = 4 * 1024;

impl InputLimits {
    /// The largest message the gRPC server decodes: an Enqueue with every
    /// field at its limit, or an EnqueueBatch of `max_batch_bytes`.
    pub fn max_message_bytes(&self) -> usize {
        self.max_enqueue_bytes().max(self.max_batch_bytes)
    }

    /// The largest Enqueue message these limits admit.
    pub fn max_enqueue_bytes(&self) -> usize {
        self.max_body_bytes
            .saturating_add(self.max_header_bytes)
            // Each header costs a few bytes of framing besides its text.
            .saturating_add(self.max_headers.saturating_mul(8))
            .saturating_add(self.max_url_bytes)
            .saturating_add(self.max_idempotency_key_bytes)
            .saturating_add(MESSAGE_OVERHEAD_BYTES)
    }
}

/// A configuration that cannot work, with what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    File {
        /// The file given with `--config` or `HERALD_CONFIG`.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML, or holds a value of a
    /// kind no setting takes.
    #[error("configuration file {path}: {problem}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// What is wrong, where.
        problem: String,
    },
    /// The configuration file names a setting `herald serve` does not have.
    #[error(
        "configuration file {path}: unknown setting {key:?}; settings are the flags of `herald serve` in snake_case, e.g. listen_addr, database_url, request_timeout"
    )]
    UnknownSetting {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A value outside the range it may take.
    #[error("{field} {problem}")]
    Invalid {
        /// The setting, as its environment variable.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl Default for Config {
    /// The documented defaults, whatever the environment holds: `HERALD_*`
    /// variables are read only by the command line's parsing, so they
    /// cannot change what code (and tests) built on the defaults see.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            config: Config,
        }
        let command = <Defaults as clap::CommandFactory>::command().mut_args(|arg| arg.env(None));
        let matches = command.get_matches_from(["herald"]);
        <Defaults as clap::FromArgMatches>::from_arg_matches(&matches)
            .expect("the defaults parse")
            .config
    }
}

impl Config {
    /// Checks the values against each other; `serve` refuses to start otherwise.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, problem: String| Err(ConfigError::Invalid { field, problem });
        if self.lease_duration <= self.request_timeout {
            return invalid(
                "HERALD_LEASE_DURATION",
                format!(
                    "({}) must be longer than HERALD_REQUEST_TIMEOUT ({}), or a slow attempt could lose its lease and be sent twice",
                    humantime::format_duration(self.lease_duration),
                    humantime::format_duration(self.request_timeout)
                ),
            );
        }
        if self.retry_min_backoff > self.retry_max_backoff {
            return invalid(
                "HERALD_RETRY_MIN_BACKOFF",
                "must not exceed HERALD_RETRY_MAX_BACKOFF".to_owned(),
            );
        }
        // Checked here rather than by the flags: a file's values are the
        // flags' defaults, which clap's `requires` does not look at, so half
        // a pair from the file would quietly serve plaintext.
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return invalid(
                    "HERALD_TLS_CERT",
                    "(tls_cert) is set without HERALD_TLS_KEY (tls_key): TLS needs both; set both to serve TLS, or neither to serve plaintext".to_owned(),
                );
            }
            (None, Some(_)) => {
                return invalid(
                    "HERALD_TLS_KEY",
                    "(tls_key) is set without HERALD_TLS_CERT (tls_cert): TLS needs both; set both to serve TLS, or neither to serve plaintext".to_owned(),
                );
            }
            _ => {}
        }
        if self.max_attempts == 0 {
            return invalid("HERALD_MAX_ATTEMPTS", "must be at least 1".to_owned());
        }
        if self.concurrency == 0 {
            return invalid("HERALD_CONCURRENCY", "must be at least 1".to_owned());
        }
        if self.auth_failure_rate.requests == 0 || self.auth_failure_burst == 0 {
            return invalid(
                "HERALD_AUTH_FAILURE_RATE",
                "and HERALD_AUTH_FAILURE_BURST must be at least 1".to_owned(),
            );
        }
        if self.max_calls_per_connection == 0 {
            return invalid(
                "HERALD_MAX_CALLS_PER_CONNECTION",
                "must be at least 1".to_owned(),
            );
        }
        if self.max_watches_per_tenant == 0 {
            return invalid(
                "HERALD_MAX_WATCHES_PER_TENANT",
                "must be at least 1".to_owned(),
            );
        }
        if let Err(error) = self.destination_policy().validate() {
            let field = match error.field {
                "max_in_flight" => "HERALD_DESTINATION_CONCURRENCY",
                "rate_limit.requests" => "HERALD_DESTINATION_RATE_LIMIT",
                "rate_limit.burst" => "HERALD_DESTINATION_RATE_BURST",
                "circuit.failure_threshold" => "HERALD_CIRCUIT_FAILURE_THRESHOLD",
                "circuit.cooldown" => "HERALD_CIRCUIT_COOLDOWN",
                _ => "HERALD_CIRCUIT_COOLDOWN_MAX",
            };
            return invalid(field, error.problem);
        }
        if self.read_pool_size == 0 {
            return invalid("HERALD_READ_POOL_SIZE", "must be at least 1".to_owned());
        }
        if self.migration_lock_timeout.is_zero() {
            return invalid(
                "HERALD_MIGRATION_LOCK_TIMEOUT",
                "must be above zero (a migration would wait for locks without end)".to_owned(),
            );
        }
        if self.feed_buffer == 0 {
            return invalid("HERALD_FEED_BUFFER", "must be at least 1".to_owned());
        }
        if self.poll_interval.is_zero() {
            return invalid("HERALD_POLL_INTERVAL", "must be above zero".to_owned());
        }
        let limits = &self.limits;
        if self.max_attempts > limits.max_attempts_limit {
            return invalid(
                "HERALD_MAX_ATTEMPTS",
                format!(
                    "({}) must not exceed HERALD_MAX_ATTEMPTS_LIMIT ({})",
                    self.max_attempts, limits.max_attempts_limit
                ),
            );
        }
        if limits.max_idempotency_key_bytes == 0 || limits.max_idempotency_key_bytes > 255 {
            return invalid(
                "HERALD_MAX_IDEMPOTENCY_KEY_BYTES",
                "must be between 1 and 255 (the database column's width)".to_owned(),
            );
        }
        if limits.max_batch_size == 0 {
            return invalid("HERALD_MAX_BATCH_SIZE", "must be at least 1".to_owned());
        }
        if limits.max_page_size == 0 {
            return invalid("HERALD_MAX_PAGE_SIZE", "must be at least 1".to_owned());
        }
        if limits.max_url_bytes < 16 {
            return invalid("HERALD_MAX_URL_BYTES", "must be at least 16".to_owned());
        }
        Ok(())
    }
}

impl Config {
    /// How the store is opened: its read pool and migration lock timeout.
    pub fn store_options(&self) -> crate::store::StoreOptions {
        crate::store::StoreOptions {
            read_connections: self.read_pool_size,
            migration_lock_timeout: self.migration_lock_timeout,
        }
    }

    /// Every destination's policy unless it sets its own.
    pub fn destination_policy(&self) -> Policy {
        Policy {
            max_in_flight: self.destination_concurrency,
            rate_limit: self.destination_rate_limit.0.map(|rate| RateLimit {
                requests: rate.requests,
                period: rate.period,
                burst: self.destination_rate_burst,
            }),
            circuit: CircuitPolicy {
                failure_threshold: self.circuit_failure_threshold,
                cooldown: self.circuit_cooldown,
                cooldown_max: self.circuit_cooldown_max,
            },
        }
    }

    /// How long a destination may fail without a success before it is
    /// disabled; `None`: never.
    pub fn disable_after(&self) -> Option<Duration> {
        (!self.destination_disable_after.is_zero()).then_some(self.destination_disable_after)
    }
}

/// A rate limit setting: a rate such as `50/s`, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSetting(pub Option<Rate>);

impl std::str::FromStr for RateSetting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "off" | "none" | "" => Ok(Self(None)),
            rate => rate.parse().map(|rate| Self(Some(rate))),
        }
    }
}

impl std::fmt::Display for RateSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(rate) => rate.fmt(f),
            None => f.write_str("off"),
        }
    }
}

/// One value as its text form.
fn displayed_one<S: Serializer, T: std::fmt::Display>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// A duration as humantime text (`30s`, `7days`), as flags take it.
fn humane<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*duration).to_string())
}

/// Values as their text forms.
fn displayed<S: Serializer, T: std::fmt::Display>(
    values: &[T],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(values.iter().map(ToString::to_string))
}

impl Config {
    /// The configuration as a TOML file would hold it, with the database
    /// password replaced by `***`.
    pub fn to_redacted_toml(&self) -> Result<String, toml::ser::Error> {
        let redacted = Self {
            database_url: redact_url(&self.database_url),
            ..self.clone()
        };
        toml::to_string(&redacted)
    }
}

/// A database URL without its password, for logs, errors and printing:
/// the user-info's password, and the value of any `password` or
/// `sslpassword` query parameter (libpq's names), become `***`. One that
/// does not parse as a URL with a host loses everything between its
/// scheme and its last `@`, which is where a password would be.
pub fn redact_url(url: &str) -> String {
    let without_user_info = match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.into()
        }
        Ok(parsed) if !parsed.cannot_be_a_base() => url.to_owned(),
        _ => {
            let start = url.find("://").map_or(0, |scheme| scheme + 3);
            match url.rfind('@') {
                Some(at) if at >= start => format!("{}***{}", &url[..start], &url[at..]),
                _ => url.to_owned(),
            }
        }
    };
    redact_password_parameters(&without_user_info)
}

/// `url` with the values of its `password` and `sslpassword` query
/// parameters (in any case) replaced by `***`, the rest as written.
fn redact_password_parameters(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let (query, fragment) = query
        .split_once('#')
        .map_or((query, None), |(query, fragment)| (query, Some(fragment)));
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _))
                if name.eq_ignore_ascii_case("password")
                    || name.eq_ignore_ascii_case("sslpassword") =>
            {
                format!("{name}=***")
            }
            _ => pair.to_owned(),
        })
        .collect();
    let mut redacted = format!("{base}?{}", pairs.join("&"));
    if let Some(fragment) = fragment {
        redacted.push('#');
        redacted.push_str(fragment);
    }
    redacted
}

/// Settings from a TOML configuration file. They become the defaults of
/// `herald serve`'s flags, so `HERALD_*` variables and flags override them.
#[derive(Debug, Clone, Default)]
pub struct FileSettings {
    path: PathBuf,
    values: Vec<(String, Vec<String>)>,
}

impl FileSettings {
    /// Reads and parses `path`. Keys are the flags' names in snake_case
    /// (`listen_addr = "0.0.0.0:50051"`); a list is written as an array.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::File {
            path: path.to_owned(),
            source,
        })?;
        let syntax = |problem: String| ConfigError::Syntax {
            path: path.to_owned(),
            problem,
        };
        let table: toml::Table = text
            .parse()
            .map_err(|error: toml::de::Error| syntax(error.to_string()))?;
        let mut values = Vec::new();
        for (key, value) in table {
            let texts = match value {
                toml::Value::Array(items) => items
                    .into_iter()
                    .map(|item| scalar(&key, item))
                    .collect::<Result<Vec<_>, _>>(),
                other => scalar(&key, other).map(|text| vec![text]),
            }
            .map_err(syntax)?;
            values.push((key, texts));
        }
        Ok(Self {
            path: path.to_owned(),
            values,
        })
    }

    /// Refuses a key that is not a setting of `serve` (a command that
    /// takes [`Config`]), naming it.
    pub fn check_known(&self, serve: &clap::Command) -> Result<(), ConfigError> {
        for (key, _) in &self.values {
            if key == "help"
                || !serve
                    .get_arguments()
                    .any(|arg| arg.get_id() == key.as_str())
            {
                return Err(ConfigError::UnknownSetting {
                    path: self.path.clone(),
                    key: key.clone(),
                });
            }
        }
        Ok(())
    }

    /// `command` and every subcommand under it with the file's values as
    /// the defaults of the settings each takes (`database_url` for
    /// `tenant`, `key` and `migrate` as for `serve`), so every command
    /// reads the same file.
    pub fn apply(&self, mut command: clap::Command) -> clap::Command {
        for (key, texts) in &self.values {
            if key == "help"
                || !command
                    .get_arguments()
                    .any(|arg| arg.get_id() == key.as_str())
            {
                continue;
            }
            let texts = texts.clone();
            command = command.mut_arg(key.as_str(), |arg| match texts.as_slice() {
                [one] => arg.default_value(one.clone()),
                many => arg.default_values(many.to_vec()),
            });
        }
        let names: Vec<String> = command
            .get_subcommands()
            .map(|subcommand| subcommand.get_name().to_owned())
            .collect();
        for name in names {
            command = command.mut_subcommand(name, |subcommand| self.apply(subcommand));
        }
        command
    }
}

/// A TOML scalar as the text a flag takes.
fn scalar(key: &str, value: toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(text) => Ok(text),
        toml::Value::Integer(number) => Ok(number.to_string()),
        toml::Value::Float(number) => Ok(number.to_string()),
        toml::Value::Boolean(flag) => Ok(flag.to_string()),
        other => Err(format!(
            "{key} = {other}: use a string, number, boolean or an array of them"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `herald serve` as a command, with `file` applied.
    fn parse(file: &str, args: &[&str]) -> Result<Config, ConfigError> {
        #[derive(clap::Parser)]
        struct Serve {
            #[command(flatten)]
            config: Config,
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        std::fs::write(&path, file).unwrap();
        let settings = FileSettings::load(&path)?;
        let command = <Serve as clap::CommandFactory>::command();
        settings.check_known(&command)?;
        let command = settings.apply(command);
        let matches = command
            .try_get_matches_from(std::iter::once("serve").chain(args.iter().copied()))
            .unwrap();
        Ok(<Serve as clap::FromArgMatches>::from_arg_matches(&matches)
            .unwrap()
            .config)
    }

    #[test]
    fn a_file_sets_defaults_and_flags_override_it() {
        let config = parse(
            "request_timeout = \"5s\"\nlease_duration = \"20s\"\nmax_attempts = 7\n\
             allow_target_cidrs = [\"127.0.0.0/8\", \"::1/128\"]\nrequire_https = true\n",
            &["--max-attempts", "9"],
        )
        .unwrap();
        assert_eq!(config.request_timeout, Duration::from_secs(5));
        assert_eq!(config.max_attempts, 9, "the flag wins");
        assert_eq!(config.allow_target_cidrs.len(), 2);
        assert!(config.limits.require_https);
        let printed = config.to_redacted_toml().unwrap();
        assert!(printed.contains("request_timeout = \"5s\""), "{printed}");
        assert!(printed.contains("max_attempts = 9"), "{printed}");
        // What `config print` shows reads back the same.
        let again = parse(&printed, &[]).unwrap();
        assert_eq!(again.to_redacted_toml().unwrap(), printed);
    }

    #[test]
    fn unknown_settings_and_bad_files_are_named() {
        let unknown = parse("listen_adress = \"0.0.0.0:1\"\n", &[]).unwrap_err();
        assert!(
            unknown.to_string().contains("\"listen_adress\""),
            "{unknown}"
        );
        let syntax = parse("listen_addr = \n", &[]).unwrap_err();
        assert!(syntax.to_string().contains("herald.toml"), "{syntax}");
        let table = parse("[server]\nlisten_addr = \"x\"\n", &[]).unwrap_err();
        assert!(table.to_string().contains("server"), "{table}");
    }

    #[test]
    fn printing_hides_the_database_password() {
        let config = Config {
            database_url: "postgres://herald:hunter2@db/herald".into(),
            ..Config::default()
        };
        let printed = config.to_redacted_toml().unwrap();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(
            printed.contains("postgres://herald:***@db/herald"),
            "{printed}"
        );
    }

    #[test]
    fn a_url_that_does_not_parse_loses_what_could_be_a_password() {
        assert_eq!(
            redact_url("postgres://herald:hunter2@db:port/herald"),
            "postgres://***@db:port/herald"
        );
        assert_eq!(redact_url("herald:hunter2@db"), "***@db");
        assert_eq!(redact_url("sqlite://herald.db"), "sqlite://herald.db");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
    }

    #[test]
    fn a_password_in_the_query_is_hidden() {
        assert_eq!(
            redact_url("postgres://herald@db/herald?sslmode=require&password=hunter2"),
            "postgres://herald@db/herald?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("postgres://db/herald?PASSWORD=hunter2&sslpassword=k3y#x"),
            "postgres://db/herald?PASSWORD=***&sslpassword=***#x"
        );
        assert_eq!(
            redact_url("postgres://u:p@db:port/h?password=hunter2"),
            "postgres://***@db:port/h?password=***"
        );
        assert_eq!(
            redact_url("sqlite://herald.db?mode=rwc"),
            "sqlite://herald.db?mode=rwc"
        );
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn destination_defaults_are_checked_and_named() {
        let config = Config {
            destination_rate_limit: "50/s".parse().unwrap(),
            destination_rate_burst: 5,
            ..Config::default()
        };
        let policy = config.destination_policy();
        assert_eq!(policy.rate_limit.unwrap().burst, 5);
        let printed = config.to_redacted_toml().unwrap();
        assert!(
            printed.contains("destination_rate_limit = \"50/s\""),
            "{printed}"
        );
        let bad = Config {
            circuit_cooldown_max: Duration::from_millis(10),
            ..Config::default()
        };
        let error = bad.validate().unwrap_err().to_string();
        assert!(error.contains("HERALD_CIRCUIT_COOLDOWN_MAX"), "{error}");
        assert!("5/h".parse::<RateSetting>().is_err());
        assert_eq!("off".parse::<RateSetting>().unwrap(), RateSetting(None));
        assert_eq!(
            Config::default().disable_after(),
            Some(Duration::from_secs(5 * 24 * 3600))
        );
    }

    #[test]
    fn half_a_tls_pair_is_refused_naming_both() {
        for file in ["tls_cert = \"cert.pem\"\n", "tls_key = \"key.pem\"\n"] {
            let config = parse(file, &[]).unwrap();
            let error = config.validate().unwrap_err().to_string();
            assert!(
                error.contains("HERALD_TLS_CERT") && error.contains("HERALD_TLS_KEY"),
                "{error}"
            );
        }
        let both = parse("tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n", &[]).unwrap();
        both.validate().unwrap();
    }

    #[test]
    fn lease_must_outlive_request_timeout() {
        let config = Config {
            lease_duration: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            ..Config::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("HERALD_LEASE_DURATION"), "{error}");
    }
}
