//! `herald destinations`: look at the receivers a tenant sends to, give one
//! its own policy, pause, resume and enable it, on a running server over
//! the client crate. Tables for people, `--json` for scripts.

use std::time::Duration;

use clap::{ArgGroup, Subcommand};
use herald_client::{Destination, DestinationQuery, DestinationState, RatePeriod};

use super::{
    destination_render::{destination_detail, destination_json, destination_table},
    operate::{CliResult, Common, first},
};
use crate::{
    config::RateSetting,
    destinations::policy::{PolicyField, RatePeriod as Period},
};

/// `herald destinations ...`
#[derive(Debug, Subcommand)]
pub enum DestinationsCommand {
    /// List destinations in the order of their names.
    List {
        /// Only this state: active, paused or disabled.
        #[arg(long, value_parser = parse_state)]
        state: Option<DestinationState>,
        /// Most destinations to show.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show one destination: its state, circuit, policy and recent health.
    Get {
        /// `scheme://host:port`, or an http(s) URL to it.
        destination: String,
    },
    /// Give a destination its own policy values, or return some to the
    /// server's defaults (a destination not seen yet is kept from now on).
    #[command(group(ArgGroup::new("change").required(true).multiple(true)))]
    Set {
        /// `scheme://host:port`, or an http(s) URL to it.
        destination: String,
        /// Most attempts in flight to it at once.
        #[arg(long, group = "change")]
        max_in_flight: Option<u32>,
        /// Its rate limit: `50/s`, `3000/min`, or `off` for none whatever
        /// the default.
        #[arg(long, group = "change")]
        rate_limit: Option<RateSetting>,
        /// Requests that may go at once after a quiet spell (with
        /// --rate-limit; 1 when not given).
        #[arg(long, requires = "rate_limit")]
        burst: Option<u32>,
        /// Consecutive failures that open its circuit.
        #[arg(long, group = "change")]
        failure_threshold: Option<u32>,
        /// How long its open circuit waits before the first probe, e.g. 1s.
        #[arg(long, group = "change", value_parser = humantime::parse_duration)]
        cooldown: Option<Duration>,
        /// The longest its open circuit waits between probes, e.g. 60s.
        #[arg(long, group = "change", value_parser = humantime::parse_duration)]
        cooldown_max: Option<Duration>,
        /// Return a field to the server's default (repeat for several):
        /// max_in_flight, rate_limit, circuit.failure_threshold,
        /// circuit.cooldown or circuit.cooldown_max.
        #[arg(long = "reset", group = "change")]
        reset: Vec<PolicyField>,
    },
    /// Pause an active destination: its deliveries are held until resumed.
    Pause {
        /// `scheme://host:port`, or an http(s) URL to it.
        destination: String,
        /// Why, shown with the destination and in its outcome.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Resume a paused destination.
    Resume {
        /// `scheme://host:port`, or an http(s) URL to it.
        destination: String,
    },
    /// Enable a disabled destination (then redrive its dead letters).
    Enable {
        /// `scheme://host:port`, or an http(s) URL to it.
        destination: String,
    },
}

/// Runs a `herald destinations` command.
pub async fn destinations(command: DestinationsCommand, common: Common) -> CliResult {
    let client = common.server.client().await?;
    let destination = match command {
        DestinationsCommand::List { state, limit } => {
            let mut query = DestinationQuery::default();
            if let Some(state) = state {
                query = query.state(state);
            }
            let listed = first(client.destinations(query), limit).await?;
            if common.json {
                let all: Vec<_> = listed.iter().map(destination_json).collect();
                println!("{}", serde_json::Value::Array(all));
            } else {
                print!("{}", destination_table(&listed));
            }
            return Ok(());
        }
        DestinationsCommand::Get { destination } => client.get_destination(&destination).await?,
        DestinationsCommand::Set {
            destination,
            max_in_flight,
            rate_limit,
            burst,
            failure_threshold,
            cooldown,
            cooldown_max,
            reset,
        } => {
            let mut update = client.set_destination_policy(destination);
            if let Some(max_in_flight) = max_in_flight {
                update = update.max_in_flight(max_in_flight);
            }
            update = match rate_limit {
                Some(RateSetting(Some(rate))) => {
                    let period = match rate.period {
                        Period::Second => RatePeriod::Second,
                        Period::Minute => RatePeriod::Minute,
                    };
                    update.rate_limit(rate.requests, period)
                }
                Some(RateSetting(None)) => update.no_rate_limit(),
                None => update,
            };
            if let Some(burst) = burst {
                update = update.burst(burst);
            }
            if let Some(failures) = failure_threshold {
                update = update.failure_threshold(failures);
            }
            if let Some(cooldown) = cooldown {
                update = update.cooldown(cooldown);
            }
            if let Some(cooldown_max) = cooldown_max {
                update = update.cooldown_max(cooldown_max);
            }
            for field in reset {
                update = update.reset(field.as_str());
            }
            update.send().await?
        }
        DestinationsCommand::Pause {
            destination,
            reason,
        } => client.pause_destination(&destination, &reason).await?,
        DestinationsCommand::Resume { destination } => {
            client.resume_destination(&destination).await?
        }
        DestinationsCommand::Enable { destination } => {
            client.enable_destination(&destination).await?
        }
    };
    show(&destination, common.json);
    Ok(())
}

fn show(destination: &Destination, json: bool) {
    if json {
        println!("{}", destination_json(destination));
    } else {
        print!("{}", destination_detail(destination));
    }
}

/// A state filter as typed: `active`, `paused` or `disabled`.
fn parse_state(text: &str) -> Result<DestinationState, String> {
    text.parse()
        .map_err(|error: herald_client::UnknownName| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_as_typed() {
        assert_eq!(parse_state("paused"), Ok(DestinationState::Paused));
        assert_eq!(parse_state("DISABLED"), Ok(DestinationState::Disabled));
        assert!(parse_state("unspecified").is_err());
        assert!(parse_state("off").is_err());
    }
}
