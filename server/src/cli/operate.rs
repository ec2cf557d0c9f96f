//! `herald deliveries` and `herald dead-letters`: the operator RPCs from a
//! shell, over the client crate. Tables by default, `--json` for scripts.

use std::time::SystemTime;

use clap::{Args, Subcommand};
use futures::{StreamExt, TryStreamExt};
use herald_client::{Delivery, DeliveryQuery, NotRedriven, NotRedrivenReason};
use serde_json::json;

use super::{
    render::{delivery_detail, delivery_json, delivery_table, parse_state},
    server_args::ServerArgs,
};

/// What an operator command returns.
pub(super) type CliResult = Result<(), Box<dyn std::error::Error>>;

/// Options every operator command takes.
#[derive(Debug, Args)]
pub struct Common {
    #[command(flatten)]
    pub(super) server: ServerArgs,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub(super) json: bool,
}

/// `herald deliveries ...`
#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// Show one delivery with all its attempts.
    Get {
        /// The delivery id.
        id: String,
    },
    /// List deliveries, newest first.
    List {
        /// Only this state: pending, succeeded, dead-lettered or cancelled.
        #[arg(long, value_parser = parse_state)]
        state: Option<herald_client::DeliveryState>,
        /// Only deliveries to this URL host.
        #[arg(long)]
        host: Option<String>,
        /// Only the delivery enqueued with this idempotency key.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Created at or after this time (RFC 3339).
        #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
        created_after: Option<SystemTime>,
        /// Created before this time (RFC 3339).
        #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
        created_before: Option<SystemTime>,
        /// Most deliveries to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Fetch each delivery's body and headers too (shown with --json);
        /// without it the listing leaves them out, which keeps it small.
        #[arg(long)]
        full: bool,
    },
    /// Cancel a pending delivery.
    Cancel {
        /// The delivery id.
        id: String,
    },
}

/// `herald dead-letters ...`
#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// List dead letters, oldest first.
    List {
        /// Most dead letters to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Send dead letters again with a fresh attempt budget: name them with
    /// --id, or select them with --after/--before/--host.
    #[command(group(
        clap::ArgGroup::new("selection")
            .required(true)
            .multiple(true)
            .args(["ids", "after", "before", "host"])
    ))]
    Redrive {
        /// This dead letter (repeat for several).
        #[arg(long = "id", conflicts_with_all = ["after", "before", "host"])]
        ids: Vec<String>,
        /// Dead-lettered at or after this time (RFC 3339).
        #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
        after: Option<SystemTime>,
        /// Dead-lettered before this time (RFC 3339).
        #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
        before: Option<SystemTime>,
        /// Only dead letters to this URL host.
        #[arg(long)]
        host: Option<String>,
        /// Only count what would be redriven.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Runs a `herald deliveries` command.
pub async fn deliveries(command: DeliveriesCommand, common: Common) -> CliResult {
    let client = common.server.client().await?;
    match command {
        DeliveriesCommand::Get { id } => {
            show_one(&client.get_delivery(&id).await?, common.json);
        }
        DeliveriesCommand::List {
            state,
            host,
            idempotency_key,
            created_after,
            created_before,
            limit,
            full,
        } => {
            let mut query = DeliveryQuery::default();
            if full {
                query = query.full();
            }
            if let Some(state) = state {
                query = query.state(state);
            }
            if let Some(host) = host {
                query = query.destination_host(host);
            }
            if let Some(key) = idempotency_key {
                query = query.idempotency_key(key);
            }
            if let Some(after) = created_after {
                query = query.created_after(after);
            }
            if let Some(before) = created_before {
                query = query.created_before(before);
            }
            let listed = first(client.deliveries(query), limit).await?;
            show_many(&listed, common.json, full);
        }
        DeliveriesCommand::Cancel { id } => {
            show_one(&client.cancel_delivery(&id).await?, common.json);
        }
    }
    Ok(())
}

/// Runs a `herald dead-letters` command.
pub async fn dead_letters(command: DeadLettersCommand, common: Common) -> CliResult {
    let client = common.server.client().await?;
    match command {
        DeadLettersCommand::List { limit } => {
            let listed = first(client.dead_letters(), limit).await?;
            show_many(&listed, common.json, false);
        }
        DeadLettersCommand::Redrive {
            ids,
            after,
            before,
            host,
            dry_run,
        } => {
            let mut redrive = client.redrive_dead_letters().ids(ids);
            if let Some(after) = after {
                redrive = redrive.dead_lettered_after(after);
            }
            if let Some(before) = before {
                redrive = redrive.dead_lettered_before(before);
            }
            if let Some(host) = host {
                redrive = redrive.destination_host(host);
            }
            if dry_run {
                redrive = redrive.dry_run();
            }
            let report = redrive.report().await?;
            let count = report.count;
            if common.json {
                let not_redriven: Vec<_> = report.not_redriven.iter().map(skip_json).collect();
                println!(
                    "{}",
                    json!({ "count": count, "dry_run": dry_run, "not_redriven": not_redriven })
                );
            } else {
                if dry_run {
                    println!("{count} dead letters would be redriven");
                } else {
                    println!("redrove {count} dead letters");
                }
                for skipped in &report.not_redriven {
                    println!("not redriven: {}", skip_line(skipped));
                }
            }
        }
    }
    Ok(())
}

/// A named id that was not redriven, as JSON: `{"id", "reason", "state"}`
/// (`state` only when the delivery exists).
fn skip_json(skipped: &NotRedriven) -> serde_json::Value {
    let reason = skipped.reason.as_str();
    match skipped.state {
        Some(state) => json!({ "id": skipped.id, "reason": reason, "state": state.as_str() }),
        None => json!({ "id": skipped.id, "reason": reason }),
    }
}

/// A named id that was not redriven, and why, for people.
fn skip_line(skipped: &NotRedriven) -> String {
    match (skipped.reason, skipped.state) {
        (NotRedrivenReason::NotFound, _) => format!("{}: no such delivery", skipped.id),
        (NotRedrivenReason::NotDeadLettered, Some(state)) => {
            format!("{}: is {state}, not dead-lettered", skipped.id)
        }
        _ => format!("{}: for a reason this build does not know", skipped.id),
    }
}

/// At most `limit` items of a paged listing (pages are fetched as needed).
pub(super) async fn first<T>(
    listing: impl futures::Stream<Item = Result<T, herald_client::Error>>,
    limit: usize,
) -> Result<Vec<T>, herald_client::Error> {
    listing.take(limit).try_collect().await
}

fn show_one(delivery: &Delivery, json: bool) {
    if json {
        println!("{}", delivery_json(delivery));
    } else {
        print!("{}", delivery_detail(delivery));
    }
}

/// Prints a listing; `full` when it holds bodies and headers (otherwise
/// the JSON leaves them out rather than show them empty).
fn show_many(deliveries: &[Delivery], json: bool, full: bool) {
    if json {
        let all: Vec<_> = deliveries
            .iter()
            .map(|delivery| {
                let mut value = delivery_json(delivery);
                if let (false, Some(object)) = (full, value.as_object_mut()) {
                    object.remove("body");
                    object.remove("headers");
                }
                value
            })
            .collect();
        println!("{}", serde_json::Value::Array(all));
    } else {
        print!("{}", delivery_table(deliveries));
    }
}
