//! Prometheus metrics: what Herald did (counters, histograms) and what is
//! waiting (gauges), served as OpenMetrics text on a listener of its own
//! (`HERALD_METRICS_ADDR`, off by default).
//!
//! Labels are bounded: an attempt's result class, a destination event's
//! kind, a destination state; no delivery ids, URLs, destinations or
//! tenants. The gauges read from the database (due backlog, scheduled
//! retries, dead letters, destinations by state, deliveries held by rate
//! limits) are counted in the database, so they are right across replicas,
//! at most once per [`DATABASE_GAUGES_EVERY`] (a [`Throttle`]): scrapes in
//! between serve the last counts, so however often `/metrics` is fetched
//! it cannot load the database. The others are this replica's.

use std::{
    convert::Infallible,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    domain::{AttemptErrorKind, OutcomeKind, unix_ms},
    store::Store,
    transport::classify::Verdict,
};

/// What became of one attempt, as the `result` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum AttemptResult {
    /// 2xx.
    success,
    /// A status Herald retries (408, 425, 429, 5xx).
    retryable_status,
    /// A status Herald does not retry (3xx, other 4xx).
    permanent_status,
    /// No connection.
    connect,
    /// No response in time.
    timeout,
    /// The connection broke.
    io,
    /// The stored request could not be built.
    invalid_request,
    /// The destination is a blocked address.
    blocked,
}

impl AttemptResult {
    /// The class of an attempt from its verdict and error, if any.
    pub fn of(verdict: &Verdict, error: Option<AttemptErrorKind>) -> Self {
        match (error, verdict) {
            (Some(AttemptErrorKind::Connect), _) => Self::connect,
            (Some(AttemptErrorKind::Timeout), _) => Self::timeout,
            (Some(AttemptErrorKind::Io), _) => Self::io,
            (Some(AttemptErrorKind::InvalidRequest), _) => Self::invalid_request,
            (Some(AttemptErrorKind::Blocked), _) => Self::blocked,
            (None, Verdict::Success) => Self::success,
            (None, Verdict::Retry { .. }) => Self::retryable_status,
            (None, Verdict::Permanent) => Self::permanent_status,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AttemptLabels {
    result: AttemptResult,
}

/// A destination's event, as the `event` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum DestinationEvent {
    circuit_opened,
    circuit_closed,
    paused,
    resumed,
    disabled,
    enabled,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EventLabels {
    event: DestinationEvent,
}

/// A destination state, as the `state` label of the gauge says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum DestinationGaugeState {
    open,
    half_open,
    paused,
    disabled,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    state: DestinationGaugeState,
}

/// Every metric Herald keeps; cheap to clone (they are shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    enqueued: Counter,
    published: Counter,
    attempts: Family<AttemptLabels, Counter>,
    destination_events: Family<EventLabels, Counter>,
    probes: Counter,
    destinations: Family<StateLabels, Gauge>,
    rate_limited: Gauge,
    succeeded: Counter,
    retried: Counter,
    dead_lettered: Counter,
    cancelled: Counter,
    redriven: Counter,
    authentication_failures: Counter,
    attempt_duration: Histogram,
    first_attempt_latency: Histogram,
    in_flight: Gauge,
    watchers: Gauge,
    due_backlog: Gauge,
    scheduled_retries: Gauge,
    dead_letters: Gauge,
    database_gauges: Arc<Throttle>,
}

/// The database gauges are counted at most this often.
pub const DATABASE_GAUGES_EVERY: Duration = Duration::from_secs(5);

/// Lets a refresh run at most once per period, however many callers ask,
/// and only one at a time: callers that arrive while it runs wait for it,
/// then use its result.
#[derive(Debug)]
struct Throttle {
    period: Duration,
    /// When the last refresh began; the lock is held while one runs.
    last: tokio::sync::Mutex<Option<Instant>>,
}

impl Throttle {
    fn new(period: Duration) -> Self {
        Self {
            period,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// Runs `refresh` unless one began less than a period before `now`.
    /// A failed refresh counts too: a struggling database is not asked
    /// again sooner.
    async fn run<F: Future<Output = ()>>(&self, now: Instant, refresh: impl FnOnce() -> F) {
        let mut last = self.last.lock().await;
        if last.is_some_and(|at| now.saturating_duration_since(at) < self.period) {
            return;
        }
        *last = Some(now);
        refresh().await;
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let metrics = Self {
            registry: Arc::default(),
            enqueued: Counter::default(),
            published: Counter::default(),
            attempts: Family::default(),
            destination_events: Family::default(),
            probes: Counter::default(),
            destinations: Family::default(),
            rate_limited: Gauge::default(),
            succeeded: Counter::default(),
            retried: Counter::default(),
            dead_lettered: Counter::default(),
            cancelled: Counter::default(),
            redriven: Counter::default(),
            authentication_failures: Counter::default(),
            // 1 ms to about 65 s.
            attempt_duration: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            // 1 ms to about 9 h: first attempts wait for not_before too.
            first_attempt_latency: Histogram::new(exponential_buckets(0.001, 2.5, 20)),
            in_flight: Gauge::default(),
            watchers: Gauge::default(),
            due_backlog: Gauge::default(),
            scheduled_retries: Gauge::default(),
            dead_letters: Gauge::default(),
            database_gauges: Arc::new(Throttle::new(DATABASE_GAUGES_EVERY)),
        };
        let counters = [
            (
                "deliveries_enqueued",
                "Deliveries accepted (idempotent repeats not counted)",
                &metrics.enqueued,
            ),
            (
                "events_published",
                "Events stored by Publish (idempotent repeats not counted)",
                &metrics.published,
            ),
            (
                "destination_probes",
                "Probes sent to destinations whose circuit was half-open",
                &metrics.probes,
            ),
            (
                "deliveries_succeeded",
                "Deliveries that succeeded (a 2xx was recorded)",
                &metrics.succeeded,
            ),
            (
                "deliveries_retried",
                "Retries scheduled after a failed attempt",
                &metrics.retried,
            ),
            (
                "deliveries_dead_lettered",
                "Deliveries dead-lettered",
                &metrics.dead_lettered,
            ),
            (
                "authentication_failures",
                "Calls refused UNAUTHENTICATED (a missing, wrong or revoked key, or a client over its failure budget)",
                &metrics.authentication_failures,
            ),
            (
                "deliveries_cancelled",
                "Deliveries cancelled by an operator",
                &metrics.cancelled,
            ),
            (
                "deliveries_redriven",
                "Dead letters redriven by an operator",
                &metrics.redriven,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "attempts",
            "Attempts made, by result class",
            metrics.attempts.clone(),
        );
        registry.register(
            "destination_events",
            "Destination events: circuits opened and closed, destinations paused, resumed, disabled, enabled",
            metrics.destination_events.clone(),
        );
        registry.register(
            "destinations",
            "Destinations not taking deliveries, by state (all replicas)",
            metrics.destinations.clone(),
        );
        registry.register_with_unit(
            "attempt_duration",
            "How long attempts took, connect to response",
            Unit::Seconds,
            metrics.attempt_duration.clone(),
        );
        registry.register_with_unit(
            "enqueue_to_first_attempt",
            "From enqueue to the start of the first attempt",
            Unit::Seconds,
            metrics.first_attempt_latency.clone(),
        );
        let gauges = [
            (
                "attempts_in_flight",
                "Attempts in flight on this replica",
                &metrics.in_flight,
            ),
            (
                "watchers",
                "Open WatchOutcomes streams on this replica",
                &metrics.watchers,
            ),
            (
                "due_backlog",
                "Pending deliveries due now and not yet claimed",
                &metrics.due_backlog,
            ),
            (
                "scheduled_retries",
                "Pending deliveries waiting for a retry",
                &metrics.scheduled_retries,
            ),
            (
                "dead_letters",
                "Dead-lettered deliveries kept",
                &metrics.dead_letters,
            ),
            (
                "deliveries_rate_limited",
                "Pending deliveries due now, held back by their destination's rate limit (all replicas)",
                &metrics.rate_limited,
            ),
        ];
        for (name, help, gauge) in gauges {
            registry.register(name, help, gauge.clone());
        }
        Self {
            registry: Arc::new(registry),
            ..metrics
        }
    }
}

impl Metrics {
    /// `count` deliveries were accepted.
    pub fn enqueued(&self, count: u64) {
        self.enqueued.inc_by(count);
    }

    /// An event was stored by a publish (its deliveries count as
    /// enqueued).
    pub fn published(&self) {
        self.published.inc();
    }

    /// A call was refused UNAUTHENTICATED.
    pub fn authentication_failed(&self) {
        self.authentication_failures.inc();
    }

    /// A probe went to a destination whose circuit was half-open.
    pub fn probe_sent(&self) {
        self.probes.inc();
    }

    /// An attempt finished with `result` after `duration`; `first_since`
    /// is the delivery's enqueue time when this was its first attempt.
    pub fn attempted(&self, result: AttemptResult, duration: Duration, first_since: Option<i64>) {
        self.attempts.get_or_create(&AttemptLabels { result }).inc();
        self.attempt_duration.observe(duration.as_secs_f64());
        if let Some(created_at_ms) = first_since {
            let waited_ms = unix_ms(SystemTime::now()).saturating_sub(created_at_ms) as f64
                - duration.as_secs_f64() * 1e3;
            self.first_attempt_latency
                .observe((waited_ms / 1e3).max(0.0));
        }
    }

    /// An outcome was recorded.
    pub fn outcome(&self, kind: OutcomeKind) {
        let counter = match kind {
            OutcomeKind::Succeeded => Some(&self.succeeded),
            OutcomeKind::RetryScheduled => Some(&self.retried),
            OutcomeKind::DeadLettered => Some(&self.dead_lettered),
            OutcomeKind::Cancelled => Some(&self.cancelled),
            OutcomeKind::Redriven => Some(&self.redriven),
            _ => None,
        };
        if let Some(counter) = counter {
            counter.inc();
            return;
        }
        let event = match kind {
            OutcomeKind::Succeeded
            | OutcomeKind::RetryScheduled
            | OutcomeKind::DeadLettered
            | OutcomeKind::Cancelled
            | OutcomeKind::Redriven => return,
            OutcomeKind::CircuitOpened => DestinationEvent::circuit_opened,
            OutcomeKind::CircuitClosed => DestinationEvent::circuit_closed,
            OutcomeKind::DestinationPaused => DestinationEvent::paused,
            OutcomeKind::DestinationResumed => DestinationEvent::resumed,
            OutcomeKind::DestinationDisabled => DestinationEvent::disabled,
            OutcomeKind::DestinationEnabled => DestinationEvent::enabled,
        };
        self.destination_events
            .get_or_create(&EventLabels { event })
            .inc();
    }

    /// Counts one attempt in flight until the guard drops.
    pub fn in_flight(&self) -> GaugeGuard {
        GaugeGuard::new(&self.in_flight)
    }

    /// Counts one watcher until the guard drops.
    pub fn watching(&self) -> GaugeGuard {
        GaugeGuard::new(&self.watchers)
    }

    /// Reads the database gauges (unless they were read less than
    /// [`DATABASE_GAUGES_EVERY`] ago), then the whole registry as
    /// OpenMetrics text.
    pub async fn render(&self, store: &Store) -> String {
        self.database_gauges
            .run(Instant::now(), || self.count_database_gauges(store))
            .await;
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }

    /// Counts the backlog and the destinations in the database.
    async fn count_database_gauges(&self, store: &Store) {
        match store.backlog().await {
            Ok(backlog) => {
                self.due_backlog.set(backlog.due);
                self.scheduled_retries.set(backlog.scheduled_retries);
                self.dead_letters.set(backlog.dead_letters);
            }
            Err(error) => tracing::warn!(%error, "metrics: counting the backlog failed"),
        }
        match store.destination_gauges().await {
            Ok(counts) => {
                for (state, count) in [
                    (DestinationGaugeState::open, counts.open),
                    (DestinationGaugeState::half_open, counts.half_open),
                    (DestinationGaugeState::paused, counts.paused),
                    (DestinationGaugeState::disabled, counts.disabled),
                ] {
                    self.destinations
                        .get_or_create(&StateLabels { state })
                        .set(count);
                }
                self.rate_limited.set(counts.rate_limited_due);
            }
            Err(error) => tracing::warn!(%error, "metrics: counting destinations failed"),
        }
    }

    /// Serves `GET /metrics` on `listener` until `shutdown`.
    pub async fn serve(self, store: Store, listener: TcpListener, shutdown: CancellationToken) {
        loop {
            let stream = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "metrics: accepting a connection failed");
                        continue;
                    }
                },
            };
            let metrics = self.clone();
            let store = store.clone();
            let service = service_fn(move |request: Request<Incoming>| {
                let metrics = metrics.clone();
                let store = store.clone();
                async move { Ok::<_, Infallible>(metrics.respond(&store, &request).await) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    }

    async fn respond(&self, store: &Store, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let reply = |status, content_type, body: String| {
            Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, content_type)
                .body(Full::new(Bytes::from(body)))
                .expect("a valid response")
        };
        if request.method() != Method::GET || request.uri().path() != "/metrics" {
            return reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                "metrics are at GET /metrics\n".to_owned(),
            );
        }
        reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            self.render(store).await,
        )
    }
}

/// Holds one unit of a gauge; gives it back when dropped.
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn many_scrapes_in_a_period_count_the_database_once() {
        let throttle = Throttle::new(DATABASE_GAUGES_EVERY);
        let counts = std::sync::atomic::AtomicUsize::new(0);
        let count = || async {
            counts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        let start = Instant::now();
        for scrape in 0..100 {
            let now = start + DATABASE_GAUGES_EVERY * scrape / 100;
            throttle.run(now, count).await;
        }
        assert_eq!(counts.load(std::sync::atomic::Ordering::Relaxed), 1);
        throttle.run(start + DATABASE_GAUGES_EVERY, count).await;
        assert_eq!(counts.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn scrapes_during_a_count_wait_for_it_instead_of_counting_again() {
        let throttle = Arc::new(Throttle::new(DATABASE_GAUGES_EVERY));
        let counts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let now = Instant::now();
        let slow = tokio::spawn({
            let (throttle, counts) = (Arc::clone(&throttle), Arc::clone(&counts));
            async move {
                throttle
                    .run(now, || async {
                        counts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        released.await.ok();
                    })
                    .await;
            }
        });
        // The slow count holds the lock once it has counted.
        while counts.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        let waiting = tokio::spawn({
            let (throttle, counts) = (Arc::clone(&throttle), Arc::clone(&counts));
            async move {
                throttle
                    .run(now, || async {
                        counts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    })
                    .await;
            }
        });
        release.send(()).unwrap();
        slow.await.unwrap();
        waiting.await.unwrap();
        assert_eq!(counts.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    /// A scrape shows the backlog counted by the last refresh, until the
    /// period is out.
    #[tokio::test]
    async fn scrapes_within_the_period_serve_the_last_count() {
        use crate::{
            domain::{Destination, HttpMethod, HttpRequest},
            store::records::NewDelivery,
        };
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        // A period no test run outlasts: only the throttle's own record
        // of the last count decides.
        let metrics = Metrics {
            database_gauges: Arc::new(Throttle::new(Duration::from_secs(3600))),
            ..Metrics::default()
        };
        assert!(
            metrics
                .render(&store)
                .await
                .contains("herald_due_backlog 0")
        );

        let target = "http://127.0.0.1:9/";
        let delivery = NewDelivery {
            tenant_id: "default".into(),
            request: HttpRequest {
                method: HttpMethod::Post,
                url: target.into(),
                headers: Vec::new(),
                content_type: None,
                body: bytes::Bytes::new(),
            },
            destination: Destination::of(&target.parse().unwrap()).unwrap(),
            idempotency_key: None,
            max_attempts: 1,
            max_attempts_chosen: true,
            not_before_ms: None,
            deadline_ms: None,
            trace: None,
            event: None,
        };
        store.enqueue_batch(&[delivery]).await.unwrap();
        let cached = metrics.render(&store).await;
        assert!(cached.contains("herald_due_backlog 0"), "{cached}");

        *metrics.database_gauges.last.lock().await = None;
        let counted = metrics.render(&store).await;
        assert!(counted.contains("herald_due_backlog 1"), "{counted}");
        store.close().await.unwrap();
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        let metrics = Metrics::default();
        metrics.enqueued(1);
        metrics.published();
        metrics.attempted(
            AttemptResult::success,
            Duration::from_millis(3),
            Some(unix_ms(SystemTime::now())),
        );
        metrics.outcome(OutcomeKind::Succeeded);
        metrics.outcome(OutcomeKind::Redriven);
        let guard = metrics.in_flight();
        let mut text = String::new();
        encode(&mut text, &metrics.registry).unwrap();
        for line in [
            "herald_deliveries_enqueued_total 1",
            "herald_events_published_total 1",
            "herald_attempts_total{result=\"success\"} 1",
            "herald_deliveries_succeeded_total 1",
            "herald_deliveries_redriven_total 1",
            "herald_attempt_duration_seconds_count 1",
            "herald_enqueue_to_first_attempt_seconds_count 1",
            "herald_attempts_in_flight 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        drop(guard);
        let mut text = String::new();
        encode(&mut text, &metrics.registry).unwrap();
        assert!(text.contains("herald_attempts_in_flight 0"), "{text}");
    }
}
