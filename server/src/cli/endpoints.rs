//! `herald endpoints`: register the receivers events are published to,
//! look at them, change, delete and recover them, rotate their signing
//! secrets, on a running server. Tables for people, `--json` for scripts.

use std::time::{Duration, SystemTime};

use clap::{ArgGroup, Subcommand};
use herald_proto::v1::{
    CreateEndpointRequest, DeleteEndpointRequest, Endpoint, GetEndpointRequest, Header,
    ListEndpointsRequest, RecoverEndpointRequest, RotateEndpointSecretRequest,
    UpdateEndpointRequest, endpoint_service_client::EndpointServiceClient,
};
use serde_json::json;

use super::{
    endpoint_args::{PolicyArgs, parse_header, wire_duration},
    endpoint_render::{
        endpoint_detail, endpoint_json, endpoint_table, endpoint_with_destination_json,
    },
    operate::{CliResult, Common},
    paging::{Page, Paging},
    when::{parse_moment, shown_or_dash, wire},
};

/// `herald endpoints ...`
#[derive(Debug, Subcommand)]
pub enum EndpointsCommand {
    /// Register an endpoint; prints it and its signing secret, which is
    /// shown this once.
    Create {
        /// Where its deliveries go: an http(s) URL.
        #[arg(long)]
        url: String,
        /// For people.
        #[arg(long, default_value = "")]
        description: String,
        /// An event type it wants (repeat for several): a name, or a prefix
        /// such as `order.*`; every type when none is given.
        #[arg(long = "event-type")]
        event_types: Vec<String>,
        /// A header to add to each of its deliveries, `name=value` (repeat
        /// for several).
        #[arg(long = "header", value_parser = parse_header)]
        headers: Vec<Header>,
        /// Create it disabled: publishes pass it by until it is enabled.
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Show one endpoint and its destination's policy and health.
    Get {
        /// The endpoint's id.
        id: String,
    },
    /// List endpoints in id order.
    List {
        /// Only endpoints an event of this type would reach.
        #[arg(long)]
        event_type: Option<String>,
        /// Only enabled endpoints.
        #[arg(long, conflicts_with = "disabled")]
        enabled: bool,
        /// Only disabled endpoints.
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        paging: Paging,
    },
    /// Change what the flags name; the rest stays as it is.
    #[command(group(ArgGroup::new("change").required(true).multiple(true).args([
        "url", "description", "event_types", "all_event_types", "headers", "no_headers",
        "enable", "disable", "max_in_flight", "rate_limit", "failure_threshold", "cooldown",
        "cooldown_max",
    ])))]
    Update {
        /// The endpoint's id.
        id: String,
        /// A new URL, for deliveries made from now on.
        #[arg(long)]
        url: Option<String>,
        /// A new description.
        #[arg(long)]
        description: Option<String>,
        /// The event types it wants from now on (repeat for several).
        #[arg(long = "event-type")]
        event_types: Vec<String>,
        /// It wants every event type from now on.
        #[arg(long, conflicts_with = "event_types")]
        all_event_types: bool,
        /// The headers to add from now on, `name=value` (repeat for several).
        #[arg(long = "header", value_parser = parse_header)]
        headers: Vec<Header>,
        /// Add no headers from now on.
        #[arg(long, conflicts_with = "headers")]
        no_headers: bool,
        /// Enable it: publishes reach it again.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Disable it: publishes pass it by.
        #[arg(long)]
        disable: bool,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Delete an endpoint; its pending deliveries are cancelled.
    Delete {
        /// The endpoint's id.
        id: String,
    },
    /// Give an endpoint a new signing secret (printed once); the old one
    /// keeps signing beside it for the grace period.
    RotateSecret {
        /// The endpoint's id.
        id: String,
        /// How long the old secret keeps signing, at most 30 days (the
        /// server's default, 24h, when not given).
        #[arg(long, value_parser = humantime::parse_duration)]
        grace: Option<Duration>,
    },
    /// Send an endpoint again every event whose delivery to it was
    /// dead-lettered since a time (after it was fixed).
    Recover {
        /// The endpoint's id.
        id: String,
        /// Deliveries made since this time: RFC 3339, or a duration ago
        /// such as 2h.
        #[arg(long, value_parser = parse_moment)]
        since: SystemTime,
        /// Only count the events that would be sent again.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Runs a `herald endpoints` command.
pub async fn endpoints(command: EndpointsCommand, common: Common) -> CliResult {
    let mut client = EndpointServiceClient::new(common.server.authorized().await?);
    let json = common.json;
    match command {
        EndpointsCommand::Create {
            url,
            description,
            event_types,
            headers,
            disabled,
            policy,
        } => {
            let created = client
                .create_endpoint(CreateEndpointRequest {
                    url,
                    description,
                    event_types,
                    headers,
                    disabled,
                    policy: policy.policy(),
                })
                .await?
                .into_inner();
            let endpoint = created.endpoint.unwrap_or_default();
            let destination = created.destination.as_ref();
            if json {
                let mut shown = endpoint_with_destination_json(&endpoint, destination);
                shown["signing_secret"] = created.signing_secret.into();
                println!("{shown}");
            } else {
                println!("{}", endpoint_detail(&endpoint, destination));
                println!(
                    "signing secret: {}  (shown once: receivers verify webhook-signature with it)",
                    created.signing_secret
                );
            }
        }
        EndpointsCommand::Get { id } => {
            let got = client
                .get_endpoint(GetEndpointRequest { id })
                .await?
                .into_inner();
            show(
                &got.endpoint.unwrap_or_default(),
                got.destination.as_ref(),
                json,
            );
        }
        EndpointsCommand::List {
            event_type,
            enabled,
            disabled,
            paging,
        } => {
            let enabled = (enabled || disabled).then_some(enabled);
            let page = paging
                .fetch(|page_size, page_token| {
                    let mut client = client.clone();
                    let request = ListEndpointsRequest {
                        page_size,
                        page_token,
                        event_type: event_type.clone().unwrap_or_default(),
                        enabled,
                    };
                    async move {
                        let page = client.list_endpoints(request).await?.into_inner();
                        Ok(Page {
                            items: page.endpoints,
                            next_page_token: page.next_page_token,
                        })
                    }
                })
                .await?;
            page.print(json, "endpoints", endpoint_json, endpoint_table);
        }
        EndpointsCommand::Update {
            id,
            url,
            description,
            event_types,
            all_event_types,
            headers,
            no_headers,
            enable,
            disable,
            policy,
        } => {
            let mut paths = Vec::new();
            let mut named = |given: bool, path: &str| {
                if given {
                    paths.push(path.to_owned());
                }
            };
            named(url.is_some(), "url");
            named(description.is_some(), "description");
            named(!event_types.is_empty() || all_event_types, "event_types");
            named(!headers.is_empty() || no_headers, "headers");
            named(enable || disable, "enabled");
            let updated = client
                .update_endpoint(UpdateEndpointRequest {
                    endpoint: Some(Endpoint {
                        id,
                        url: url.unwrap_or_default(),
                        description: description.unwrap_or_default(),
                        event_types,
                        headers,
                        enabled: enable,
                        ..Endpoint::default()
                    }),
                    update_mask: Some(prost_types::FieldMask { paths }),
                    policy: policy.policy(),
                })
                .await?
                .into_inner();
            show(
                &updated.endpoint.unwrap_or_default(),
                updated.destination.as_ref(),
                json,
            );
        }
        EndpointsCommand::Delete { id } => {
            let deleted = client
                .delete_endpoint(DeleteEndpointRequest { id: id.clone() })
                .await?
                .into_inner();
            let cancelled = deleted.cancelled_count;
            if json {
                println!("{}", json!({ "id": id, "cancelled_count": cancelled }));
            } else {
                println!("deleted endpoint {id}; cancelled {cancelled} pending deliveries");
            }
        }
        EndpointsCommand::RotateSecret { id, grace } => {
            let rotated = client
                .rotate_endpoint_secret(RotateEndpointSecretRequest {
                    id,
                    grace: grace.map(wire_duration),
                })
                .await?
                .into_inner();
            let endpoint = rotated.endpoint.unwrap_or_default();
            if json {
                println!(
                    "{}",
                    json!({
                        "endpoint": endpoint_json(&endpoint),
                        "signing_secret": rotated.signing_secret,
                    })
                );
            } else {
                println!(
                    "signing secret: {}  (shown once; signs from now on)",
                    rotated.signing_secret
                );
                println!(
                    "the previous secret keeps signing alongside it until {}",
                    shown_or_dash(endpoint.previous_secret_expire_time.as_ref())
                );
            }
        }
        EndpointsCommand::Recover { id, since, dry_run } => {
            let recovered = client
                .recover_endpoint(RecoverEndpointRequest {
                    id: id.clone(),
                    since_time: Some(wire(since)),
                    dry_run,
                })
                .await?
                .into_inner();
            let count = recovered.recovered_count;
            if json {
                println!(
                    "{}",
                    json!({ "recovered_count": count, "dry_run": dry_run })
                );
            } else if dry_run {
                println!("{count} events would be sent to endpoint {id} again");
            } else {
                println!("sent {count} events to endpoint {id} again");
            }
        }
    }
    Ok(())
}

fn show(endpoint: &Endpoint, destination: Option<&herald_proto::v1::Destination>, json: bool) {
    if json {
        println!("{}", endpoint_with_destination_json(endpoint, destination));
    } else {
        print!("{}", endpoint_detail(endpoint, destination));
    }
}
