//! `herald-bench`: Herald's speed on this machine, measured, not asserted.
//!
//! ```text
//! cargo build --release -p herald-server -p herald-tests --bin herald --bin herald-bench
//! target/release/herald-bench all --db postgres
//! target/release/herald-bench burn-down --db sqlite --count 100000 --json
//! target/release/herald-bench rate-limit --db postgres --duration 60s
//! ```
//!
//! Each scenario runs on a fresh database (SQLite in a temporary directory,
//! or a new database on `HERALD_TEST_POSTGRES_URL`), against the release
//! `herald` binary as a child process with its default settings (a
//! scenario that changes one says which, and why, in its note),
//! delivering to a local hyper receiver in this process; each port the
//! receiver listens on is a destination of its own. BENCHMARKS.md holds
//! the figures and what bounds each.
//!
//! The scenarios, in the order `all` runs them:
//!
//! - `ceiling`: Herald's claim and complete SQL in a loop, no HTTP: the
//!   database's limit.
//! - `burn-down`: 100,000 deliveries queued round-robin over 100
//!   destinations answering at once, then the server started: deliveries
//!   per second, CPU, memory, and on PostgreSQL commits and row writes per
//!   delivery.
//! - `burn-down-one`: the same, every delivery to one destination, which
//!   the default 16 in flight per destination bounds.
//! - `hot-destination`: 3,000 deliveries to one destination answering
//!   after 20 ms, at most 800/s at 16 in flight: the share of that reached
//!   and the row writes per delivery.
//! - `enqueue`: concurrent unary Enqueue calls, then EnqueueBatch, due in
//!   an hour: what accepting costs.
//! - `latency`: serial enqueues into an idle server, enqueue to receipt.
//! - `sustained`: 2,000 enqueues a second (`--rate`) for `--duration`,
//!   round-robin over 100 destinations taking 20 ms and answering every
//!   tenth request 503: successes per second and enqueue to first receipt.
//! - `sustained-one`: the same offer to one destination answering at once.
//! - `failing-destination`: 500 deliveries to one destination answering
//!   503 for 30 s, then 204: requests taken while failing, seconds from
//!   recovery until all succeeded, deliveries dead-lettered.
//! - `tenant-fairness`: tenant A floods 100 destinations answering after
//!   500 ms, alone, then with tenant B probing a fast destination: B's
//!   latency and A's throughput against alone.
//! - `rate-limit`: two replicas on one PostgreSQL database (one on SQLite)
//!   with a limit of 50/s per destination, draining a backlog to one
//!   destination for `--duration`: the rate delivered and the most
//!   requests in any one second.
//! - `publish`: events published by concurrent callers to 1, 3, 10 and 100
//!   subscribed endpoints each (`--count` events, default 20,000, fewer
//!   for wide fan-outs), then one event at a time to 1,000 endpoints:
//!   events and deliveries accepted per second, and call to committed
//!   answer.

mod precise_timer;
mod publish;
mod receiver;
mod report;
mod scenarios;
mod server;

use clap::{Parser, ValueEnum};
use herald_tests::Backend;

use report::Report;

/// Measures Herald's throughput and latency on this machine.
#[derive(Debug, Parser)]
#[command(name = "herald-bench")]
struct Args {
    /// What to measure.
    scenario: Scenario,
    /// The database to run on.
    #[arg(long, value_enum, default_value = "sqlite")]
    db: Db,
    /// Print JSON (one array of reports) instead of a table.
    #[arg(long)]
    json: bool,
    /// Deliveries for ceiling, burn-down and burn-down-one (default
    /// 100000), hot-destination (3000), failing-destination (500) and
    /// tenant A's flood in tenant-fairness (6000); calls for enqueue
    /// (20000); serial enqueues for latency (1000); events per fan-out for
    /// publish (20000).
    #[arg(long)]
    count: Option<u64>,
    /// For burn-down and burn-down-one: finished deliveries (with their attempts and
    /// outcomes) already in the tables before the run, to see whether a
    /// grown database slows the hot path.
    #[arg(long, default_value_t = 0)]
    finished: u64,
    /// Concurrent callers for enqueue and publish.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Offered deliveries per second for sustained and sustained-one.
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// How long sustained and sustained-one offer load, and rate-limit
    /// measures, e.g. 5m.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: std::time::Duration,
}

/// What to measure (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Herald's own claim and complete SQL, no HTTP: the database's limit.
    Ceiling,
    /// N deliveries queued over 100 destinations, then the server started:
    /// deliveries per second.
    BurnDown,
    /// N deliveries queued to one destination, then the server started.
    BurnDownOne,
    /// A backlog to one destination answering after 20 ms: the share of
    /// the per-destination bound reached, and row writes per delivery.
    HotDestination,
    /// Concurrent unary Enqueue calls, then EnqueueBatch.
    Enqueue,
    /// Serial enqueues into an idle server: enqueue to receipt.
    Latency,
    /// An open-loop offered rate to 100 slow, sometimes failing destinations.
    Sustained,
    /// An open-loop offered rate to one destination answering at once.
    SustainedOne,
    /// One destination failing for 30 s, then recovering.
    FailingDestination,
    /// One tenant's flood of slow destinations, and another tenant's probes.
    TenantFairness,
    /// Two replicas holding one destination to a rate limit.
    RateLimit,
    /// Events published to 1, 3, 10, 100 and 1,000 endpoints each.
    Publish,
    /// Every scenario above, in order.
    All,
}

/// Every scenario, in the order `all` runs them.
const ALL: [Scenario; 12] = [
    Scenario::Ceiling,
    Scenario::BurnDown,
    Scenario::BurnDownOne,
    Scenario::HotDestination,
    Scenario::Enqueue,
    Scenario::Latency,
    Scenario::Sustained,
    Scenario::SustainedOne,
    Scenario::FailingDestination,
    Scenario::TenantFairness,
    Scenario::RateLimit,
    Scenario::Publish,
];

/// The database to run on.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Db {
    Sqlite,
    Postgres,
}

/// Runs `scenario` on `backend` as `args` say; its reports.
async fn run(scenario: Scenario, backend: Backend, args: &Args) -> Vec<Report> {
    let count = |default: u64| args.count.unwrap_or(default);
    match scenario {
        Scenario::Ceiling => vec![scenarios::ceiling(backend, count(100_000)).await],
        Scenario::BurnDown => {
            vec![scenarios::burn_down(backend, count(100_000), args.finished).await]
        }
        Scenario::BurnDownOne => {
            vec![scenarios::burn_down_one(backend, count(100_000), args.finished).await]
        }
        Scenario::HotDestination => {
            vec![scenarios::hot_destination(backend, count(3000)).await]
        }
        Scenario::Enqueue => scenarios::enqueue(backend, count(20_000), args.concurrency).await,
        Scenario::Latency => vec![scenarios::latency(backend, count(1000)).await],
        Scenario::Sustained => {
            vec![scenarios::sustained(backend, args.rate, args.duration).await]
        }
        Scenario::SustainedOne => {
            vec![scenarios::sustained_one(backend, args.rate, args.duration).await]
        }
        Scenario::FailingDestination => {
            vec![scenarios::failing_destination(backend, count(500)).await]
        }
        Scenario::TenantFairness => scenarios::tenant_fairness(backend, count(6000)).await,
        Scenario::RateLimit => vec![scenarios::rate_limit(backend, args.duration).await],
        Scenario::Publish => publish::publish(backend, count(20_000), args.concurrency).await,
        Scenario::All => unreachable!("expanded into each scenario"),
    }
}

/// Runs the scenarios asked for and prints their reports.
#[tokio::main]
async fn main() {
    let args = Args::parse();
    let backend = match args.db {
        Db::Sqlite => Backend::Sqlite,
        Db::Postgres => Backend::Postgres,
    };
    let scenarios = match args.scenario {
        Scenario::All => ALL.to_vec(),
        one => vec![one],
    };
    if !args.json {
        println!("{}", Report::header());
    }
    let mut reports = Vec::new();
    for scenario in scenarios {
        let produced = run(scenario, backend, &args).await;
        for report in produced {
            if !args.json {
                println!("{}", report.row());
            }
            reports.push(report);
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).expect("reports serialize")
        );
    }
}
