//! `herald-bench`: Herald's speed on this machine, measured, not asserted.
//!
//! ```text
//! cargo build --release -p herald-server -p herald-tests --bin herald-bench
//! target/release/herald-bench all --db postgres
//! target/release/herald-bench burn-down --db sqlite --count 100000 --json
//! ```
//!
//! Each scenario runs on a fresh database (SQLite in a temporary directory,
//! or a new database on `HERALD_TEST_POSTGRES_URL`), against the release
//! `herald` binary as a child process, delivering to a local hyper
//! receiver in this process. BENCHMARKS.md holds the figures and what
//! bounds each.

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
    /// Deliveries for ceiling and burn-down (default 100000), calls for
    /// enqueue (default 20000), serial enqueues for latency (default 1000).
    #[arg(long)]
    count: Option<u64>,
    /// For burn-down: finished deliveries (with their attempts and
    /// outcomes) already in the tables before the run, to see whether a
    /// grown database slows the hot path.
    #[arg(long, default_value_t = 0)]
    finished: u64,
    /// Concurrent callers for enqueue.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Offered deliveries per second for sustained.
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// How long sustained offers load, e.g. 5m.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: std::time::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Herald's own claim and complete SQL, no HTTP: the database's limit.
    Ceiling,
    /// N deliveries queued, then the server started: deliveries per second.
    BurnDown,
    /// Concurrent unary Enqueue calls, then EnqueueBatch.
    Enqueue,
    /// Serial enqueues into an idle server: enqueue to receipt.
    Latency,
    /// An open-loop offered rate to a slow, sometimes failing receiver.
    Sustained,
    /// Every scenario above, in order.
    All,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Db {
    Sqlite,
    Postgres,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let backend = match args.db {
        Db::Sqlite => Backend::Sqlite,
        Db::Postgres => Backend::Postgres,
    };
    let scenarios = match args.scenario {
        Scenario::All => vec![
            Scenario::Ceiling,
            Scenario::BurnDown,
            Scenario::Enqueue,
            Scenario::Latency,
            Scenario::Sustained,
        ],
        one => vec![one],
    };
    if !args.json {
        println!("{}", Report::header());
    }
    let mut reports = Vec::new();
    for scenario in scenarios {
        let produced = match scenario {
            Scenario::Ceiling => {
                vec![scenarios::ceiling(backend, args.count.unwrap_or(100_000)).await]
            }
            Scenario::BurnDown => {
                let count = args.count.unwrap_or(100_000);
                vec![scenarios::burn_down(backend, count, args.finished).await]
            }
            Scenario::Enqueue => {
                scenarios::enqueue(backend, args.count.unwrap_or(20_000), args.concurrency).await
            }
            Scenario::Latency => {
                vec![scenarios::latency(backend, args.count.unwrap_or(1000)).await]
            }
            Scenario::Sustained => {
                vec![scenarios::sustained(backend, args.rate, args.duration).await]
            }
            Scenario::All => unreachable!("expanded above"),
        };
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
