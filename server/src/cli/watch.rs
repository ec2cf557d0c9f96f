//! `herald watch`: outcomes as they happen, for people. One aligned line
//! per outcome and, every few seconds, a summary of counts per kind and
//! deliveries finished per second.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use clap::{Args, ValueEnum};
use futures::StreamExt;
use herald_client::{Outcome, OutcomeKind, WatchOptions};

use super::server_args::ServerArgs;

/// How often the summary line is printed.
const SUMMARY_EVERY: Duration = Duration::from_secs(5);

/// Options of `herald watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Replay outcomes after this sequence first (resume where you left off).
    #[arg(long, conflicts_with = "from_oldest")]
    after: Option<u64>,
    /// Replay every retained outcome first.
    #[arg(long)]
    from_oldest: bool,
    /// Only this delivery (repeat for several).
    #[arg(long = "delivery")]
    deliveries: Vec<String>,
    /// Only this kind of outcome (repeat for several).
    #[arg(long = "kind", value_enum)]
    kinds: Vec<Kind>,
    /// Only deliveries to this URL host.
    #[arg(long)]
    host: Option<String>,
    /// Only deliveries to this endpoint (made by publishing).
    #[arg(long)]
    endpoint: Option<String>,
    /// Only deliveries of events of this type.
    #[arg(long)]
    event_type: Option<String>,
}

/// Outcome kinds as typed on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    Succeeded,
    Retry,
    DeadLettered,
    Cancelled,
    CircuitOpened,
    CircuitClosed,
    Paused,
    Resumed,
    Disabled,
    Enabled,
    Redriven,
}

impl From<Kind> for OutcomeKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Succeeded => Self::Succeeded,
            Kind::Retry => Self::RetryScheduled,
            Kind::DeadLettered => Self::DeadLettered,
            Kind::Cancelled => Self::Cancelled,
            Kind::CircuitOpened => Self::CircuitOpened,
            Kind::CircuitClosed => Self::CircuitClosed,
            Kind::Paused => Self::DestinationPaused,
            Kind::Resumed => Self::DestinationResumed,
            Kind::Disabled => Self::DestinationDisabled,
            Kind::Enabled => Self::DestinationEnabled,
            Kind::Redriven => Self::Redriven,
        }
    }
}

/// Streams outcomes to stdout until interrupted or the server refuses.
pub async fn run(args: WatchArgs) -> Result<(), Box<dyn std::error::Error>> {
    let client = args.server.client().await?;
    let mut options = WatchOptions::default()
        .delivery_ids(args.deliveries)
        .kinds(args.kinds.into_iter().map(OutcomeKind::from));
    if let Some(host) = args.host {
        options = options.destination_host(host);
    }
    if let Some(endpoint) = args.endpoint {
        options = options.endpoint_id(endpoint);
    }
    if let Some(event_type) = args.event_type {
        options = options.event_type(event_type);
    }
    if let Some(after) = args.after {
        options = options.after(after);
    } else if args.from_oldest {
        options = options.from_oldest();
    }
    let mut outcomes = client.watch_outcomes(options).await?;
    println!("{}", header());
    let mut summary = Summary::default();
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + SUMMARY_EVERY, SUMMARY_EVERY);
    loop {
        tokio::select! {
            next = outcomes.next() => match next {
                Some(outcome) => {
                    let outcome = outcome?;
                    summary.count(&outcome);
                    println!("{}", line(&outcome));
                }
                None => return Ok(()),
            },
            _ = ticker.tick() => println!("{}", summary.line()),
            _ = tokio::signal::ctrl_c() => {
                println!("{}", summary.line());
                return Ok(());
            }
        }
    }
}

fn header() -> String {
    format!(
        "{:>10}  {:<24}  {:<15}  {:<36}  {:>7}  RESULT",
        "SEQUENCE", "TIME", "KIND", "DELIVERY (OR DESTINATION)", "ATTEMPT"
    )
}

fn kind_name(kind: OutcomeKind) -> &'static str {
    match kind {
        OutcomeKind::Succeeded => "succeeded",
        OutcomeKind::RetryScheduled => "retry scheduled",
        OutcomeKind::DeadLettered => "dead-lettered",
        OutcomeKind::Cancelled => "cancelled",
        OutcomeKind::CircuitOpened => "circuit opened",
        OutcomeKind::CircuitClosed => "circuit closed",
        OutcomeKind::DestinationPaused => "paused",
        OutcomeKind::DestinationResumed => "resumed",
        OutcomeKind::DestinationDisabled => "disabled",
        OutcomeKind::DestinationEnabled => "enabled",
        OutcomeKind::Redriven => "redriven",
        _ => "unknown",
    }
}

/// Whether `kind` ends a delivery (a destination's event does not).
fn finishes(kind: OutcomeKind) -> bool {
    matches!(
        kind,
        OutcomeKind::Succeeded | OutcomeKind::DeadLettered | OutcomeKind::Cancelled
    )
}

/// One aligned line for `outcome`.
fn line(outcome: &Outcome) -> String {
    let time = outcome.create_time.map_or_else(
        || "-".to_owned(),
        |time| humantime::format_rfc3339_millis(time).to_string(),
    );
    let result = match (outcome.status_code, outcome.error_message.as_str()) {
        (0, "") => String::new(),
        (0, message) => message.to_owned(),
        (status, "") => status.to_string(),
        (status, message) => format!("{status} {message}"),
    };
    let retry = outcome
        .next_attempt_time
        .map(|time| format!(" (next {})", humantime::format_rfc3339_millis(time)))
        .unwrap_or_default();
    format!(
        "{:>10}  {:<24}  {:<15}  {:<36}  {:>7}  {result}{retry}",
        outcome.sequence,
        time,
        kind_name(outcome.kind),
        if outcome.delivery_id.is_empty() {
            &outcome.destination
        } else {
            &outcome.delivery_id
        },
        outcome.attempt_number
    )
}

/// Counts since the watch began, and the rate since the last summary.
struct Summary {
    kinds: BTreeMap<&'static str, u64>,
    finished_since: u64,
    since: Instant,
}

impl Default for Summary {
    fn default() -> Self {
        Self {
            kinds: BTreeMap::new(),
            finished_since: 0,
            since: Instant::now(),
        }
    }
}

impl Summary {
    fn count(&mut self, outcome: &Outcome) {
        *self.kinds.entry(kind_name(outcome.kind)).or_default() += 1;
        if finishes(outcome.kind) {
            self.finished_since += 1;
        }
    }

    /// The summary line; resets the rate window.
    fn line(&mut self) -> String {
        let elapsed = self.since.elapsed().as_secs_f64().max(f64::EPSILON);
        let rate = self.finished_since as f64 / elapsed;
        let counts: Vec<String> = self
            .kinds
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect();
        self.finished_since = 0;
        self.since = Instant::now();
        let counts = if counts.is_empty() {
            "no outcomes yet".to_owned()
        } else {
            counts.join(", ")
        };
        format!("-- {counts}; {rate:.1} deliveries/s finished")
    }
}

#[cfg(test)]
mod tests {
    use herald_proto::v1 as wire;

    use super::*;

    fn outcome(kind: OutcomeKind, status_code: u32, error_message: &str) -> Outcome {
        Outcome::from(wire::Outcome {
            sequence: 42,
            delivery_id: "019ab2c4-0000-7000-8000-000000000000".into(),
            kind: kind.number(),
            attempt_number: 2,
            status_code,
            error_message: error_message.into(),
            create_time: Some(prost_types::Timestamp {
                seconds: 1_795_000_000,
                nanos: 5_000_000,
            }),
            ..Default::default()
        })
    }

    #[test]
    fn lines_line_up_under_the_header() {
        let ok = line(&outcome(OutcomeKind::Succeeded, 204, ""));
        let failed = line(&outcome(
            OutcomeKind::DeadLettered,
            400,
            "HTTP 400 Bad Request",
        ));
        assert!(
            ok.contains("2026-11-18T11:06:40.005Z")
                && ok.contains("succeeded")
                && ok.ends_with("204"),
            "{ok}"
        );
        assert!(failed.ends_with("400 HTTP 400 Bad Request"), "{failed}");
        let column = |text: &str, word: &str| text.find(word).unwrap();
        assert_eq!(column(&header(), "DELIVERY"), column(&ok, "019ab2c4"));
        assert_eq!(column(&ok, "019ab2c4"), column(&failed, "019ab2c4"));
    }

    #[test]
    fn the_summary_counts_kinds_and_finished_deliveries() {
        let mut summary = Summary::default();
        summary.count(&outcome(OutcomeKind::RetryScheduled, 503, ""));
        summary.count(&outcome(OutcomeKind::Succeeded, 204, ""));
        let line = summary.line();
        assert!(
            line.starts_with("-- 1 retry scheduled, 1 succeeded;"),
            "{line}"
        );
        assert_eq!(summary.finished_since, 0, "the rate window restarts");
    }
}
