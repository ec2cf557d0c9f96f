//! One scenario's figures, printed as a table row or JSON.

use std::time::Duration;

use herald_tests::Backend;
use serde::Serialize;

use crate::server::DbStats;

/// What a scenario measured. Latencies are milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The scenario.
    pub scenario: String,
    /// `sqlite` or `postgres`.
    pub db: String,
    /// Deliveries (or calls) measured.
    pub count: u64,
    /// Wall-clock seconds measured.
    pub seconds: f64,
    /// The throughput figure: count per second.
    pub per_second: f64,
    /// Median latency, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// Worst latency, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ms: Option<f64>,
    /// Server CPU seconds per 1,000 deliveries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_s_per_1000: Option<f64>,
    /// Server peak resident memory, MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
    /// PostgreSQL commits per delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commits_per_delivery: Option<f64>,
    /// PostgreSQL rows inserted per delivery, over all tables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inserts_per_delivery: Option<f64>,
    /// PostgreSQL rows updated per delivery, over all tables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updates_per_delivery: Option<f64>,
    /// PostgreSQL rows deleted per delivery, over all tables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletes_per_delivery: Option<f64>,
    /// Anything else worth knowing (offered rate, backlog...).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// The median, 99th percentile and maximum of some durations, in ms.
pub struct Spread {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Spread {
    /// The spread of `samples`; `None` when there are none.
    pub fn of(mut samples: Vec<Duration>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort();
        let at = |q: f64| {
            let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples[index].as_secs_f64() * 1e3
        };
        Some(Self {
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        })
    }
}

impl Report {
    /// `count` in `seconds` of `scenario` on `backend`; the rest to fill in.
    pub fn new(scenario: &str, backend: Backend, count: u64, seconds: f64) -> Self {
        Self {
            scenario: scenario.to_owned(),
            db: match backend {
                Backend::Sqlite => "sqlite",
                Backend::Postgres => "postgres",
            }
            .to_owned(),
            count,
            seconds,
            per_second: if seconds > 0.0 {
                count as f64 / seconds
            } else {
                0.0
            },
            ..Self::default()
        }
    }

    /// Fills the latency fields from `samples`.
    pub fn latencies(mut self, samples: Vec<Duration>) -> Self {
        if let Some(spread) = Spread::of(samples) {
            self.p50_ms = Some(spread.p50_ms);
            self.p99_ms = Some(spread.p99_ms);
            self.max_ms = Some(spread.max_ms);
        }
        self
    }

    /// Fills the server's costs: `cpu_seconds` of CPU for `count`
    /// deliveries, and its peak memory.
    pub fn server_costs(mut self, cpu_seconds: f64, peak_rss_mib: f64, count: u64) -> Self {
        self.cpu_s_per_1000 = Some(cpu_seconds * 1000.0 / count.max(1) as f64);
        self.peak_rss_mib = Some(peak_rss_mib);
        self
    }

    /// Fills the database's costs per delivery, `count` deliveries between
    /// the `before` and `after` counts (left empty without them: SQLite).
    pub fn database_costs(
        mut self,
        before: Option<DbStats>,
        after: Option<DbStats>,
        count: u64,
    ) -> Self {
        if let (Some(before), Some(after)) = (before, after) {
            let per = |of: fn(&DbStats) -> i64| {
                Some((of(&after) - of(&before)) as f64 / count.max(1) as f64)
            };
            self.commits_per_delivery = per(|s| s.commits);
            self.inserts_per_delivery = per(|s| s.inserts);
            self.updates_per_delivery = per(|s| s.updates);
            self.deletes_per_delivery = per(|s| s.deletes);
        }
        self
    }

    /// The header of the table.
    pub fn header() -> String {
        format!(
            "{:<21} {:<8} {:>8} {:>8} {:>10} {:>8} {:>8} {:>8} {:>9} {:>8} {:>9} {:>6} {:>6} {:>6}  NOTE",
            "SCENARIO",
            "DB",
            "COUNT",
            "SECONDS",
            "PER_SEC",
            "P50_MS",
            "P99_MS",
            "MAX_MS",
            "CPU/1000",
            "RSS_MIB",
            "COMMITS/D",
            "INS/D",
            "UPD/D",
            "DEL/D"
        )
    }

    /// One table row.
    pub fn row(&self) -> String {
        let opt = |value: Option<f64>, precision: usize| {
            value.map_or_else(|| "-".to_owned(), |v| format!("{v:.precision$}"))
        };
        format!(
            "{:<21} {:<8} {:>8} {:>8.2} {:>10.0} {:>8} {:>8} {:>8} {:>9} {:>8} {:>9} {:>6} {:>6} {:>6}  {}",
            self.scenario,
            self.db,
            self.count,
            self.seconds,
            self.per_second,
            opt(self.p50_ms, 1),
            opt(self.p99_ms, 1),
            opt(self.max_ms, 1),
            opt(self.cpu_s_per_1000, 3),
            opt(self.peak_rss_mib, 0),
            opt(self.commits_per_delivery, 2),
            opt(self.inserts_per_delivery, 2),
            opt(self.updates_per_delivery, 2),
            opt(self.deletes_per_delivery, 2),
            self.note
        )
    }
}
