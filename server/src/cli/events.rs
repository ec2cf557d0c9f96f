//! `herald events`: publish events to every endpoint subscribed to their
//! type, look at them and their deliveries, send them again, and keep the
//! event type catalogue (`herald events types`), on a running server.
//! Tables for people, `--json` for scripts.

use std::{path::PathBuf, time::SystemTime};

use clap::Subcommand;
use herald_proto::v1::{
    GetEventRequest, ListEventsRequest, PublishRequest, ReplayEventRequest,
    event_service_client::EventServiceClient,
};
use serde_json::json;

use super::{
    event_render::{
        event_delivery_json, event_delivery_table, event_detail, event_json, event_table,
        made_json, made_text,
    },
    event_types::{EventTypesCommand, event_types},
    input::read_bytes,
    operate::{CliResult, Common},
    paging::{Page, Paging},
    server_args::AuthorizedChannel,
    when::{parse_moment, wire},
};

/// `herald events ...`
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Publish an event: one delivery to each enabled endpoint that wants
    /// its type.
    Publish {
        /// Its type, e.g. order.created.
        event_type: String,
        /// The payload, e.g. '{"id": 42}' (empty when neither this nor
        /// --payload-file is given).
        #[arg(long, conflicts_with = "payload_file")]
        payload: Option<String>,
        /// Read the payload from this file; `-` reads stdin.
        #[arg(long)]
        payload_file: Option<PathBuf>,
        /// The payload's content type (application/json when not given).
        #[arg(long)]
        content_type: Option<String>,
        /// Makes the publish idempotent: the same key and request again
        /// answers the same event and deliveries.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Most attempts each delivery makes (the server's default when not
        /// given).
        #[arg(long)]
        max_attempts: Option<u32>,
    },
    /// Show one event with its deliveries.
    Get {
        /// The event's id.
        id: String,
    },
    /// List events, newest first (without their payloads).
    List {
        /// Only events of this type.
        #[arg(long)]
        event_type: Option<String>,
        /// Published at or after this time: RFC 3339, or a duration ago such
        /// as 2h.
        #[arg(long, value_parser = parse_moment)]
        since: Option<SystemTime>,
        /// Published before this time: RFC 3339, or a duration ago.
        #[arg(long, value_parser = parse_moment)]
        until: Option<SystemTime>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Send an event again, as new deliveries (new webhook-ids): to one
    /// endpoint, or to every endpoint subscribed to its type now.
    Replay {
        /// The event's id.
        id: String,
        /// Only to this endpoint (whatever it subscribes to).
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// The event type catalogue: names, descriptions and the JSON Schemas
    /// payloads must match.
    Types {
        #[command(subcommand)]
        command: EventTypesCommand,
    },
}

/// Runs a `herald events` command.
pub async fn events(command: EventsCommand, common: Common) -> CliResult {
    let json = common.json;
    let mut client: EventServiceClient<AuthorizedChannel> =
        EventServiceClient::new(common.server.authorized().await?);
    match command {
        EventsCommand::Publish {
            event_type,
            payload,
            payload_file,
            content_type,
            idempotency_key,
            max_attempts,
        } => {
            let payload = match (payload, payload_file) {
                (Some(text), _) => text.into_bytes(),
                (None, Some(path)) => read_bytes("payload", &path)?,
                (None, None) => Vec::new(),
            };
            let published = client
                .publish(PublishRequest {
                    event_type: event_type.clone(),
                    payload,
                    content_type: content_type.unwrap_or_default(),
                    idempotency_key: idempotency_key.unwrap_or_default(),
                    max_attempts,
                })
                .await?
                .into_inner();
            if json {
                let mut shown = made_json(&published.deliveries, &published.skipped);
                shown["event_id"] = published.event_id.into();
                shown["created"] = published.created.into();
                println!("{shown}");
                return Ok(());
            }
            println!("event         {}", published.event_id);
            println!(
                "created       {}",
                if published.created {
                    "yes"
                } else {
                    "no: an earlier publish with this idempotency key stored it"
                }
            );
            match published.deliveries.len() {
                0 => println!("deliveries    none: no enabled endpoint wants {event_type}"),
                count => println!("deliveries    {count}"),
            }
            print!("{}", made_text(&published.deliveries, &published.skipped));
        }
        EventsCommand::Get { id } => {
            let got = client.get_event(GetEventRequest { id }).await?.into_inner();
            let event = got.event.unwrap_or_default();
            if json {
                println!(
                    "{}",
                    json!({
                        "event": event_json(&event, true),
                        "deliveries": got.deliveries.iter().map(event_delivery_json).collect::<Vec<_>>(),
                        "deliveries_truncated": got.deliveries_truncated,
                    })
                );
                return Ok(());
            }
            println!("{}", event_detail(&event));
            print!("{}", event_delivery_table(&got.deliveries));
            if got.deliveries_truncated {
                println!("-- more deliveries than listed");
            }
        }
        EventsCommand::List {
            event_type,
            since,
            until,
            paging,
        } => {
            let page = paging
                .fetch(|page_size, page_token| {
                    let mut client = client.clone();
                    let request = ListEventsRequest {
                        page_size,
                        page_token,
                        event_type: event_type.clone().unwrap_or_default(),
                        created_after_time: since.map(wire),
                        created_before_time: until.map(wire),
                    };
                    async move {
                        let page = client.list_events(request).await?.into_inner();
                        Ok(Page {
                            items: page.events,
                            next_page_token: page.next_page_token,
                        })
                    }
                })
                .await?;
            page.print(
                json,
                "events",
                |event| event_json(event, false),
                event_table,
            );
        }
        EventsCommand::Replay { id, endpoint } => {
            let replayed = client
                .replay_event(ReplayEventRequest {
                    id: id.clone(),
                    endpoint_id: endpoint.unwrap_or_default(),
                })
                .await?
                .into_inner();
            if json {
                println!("{}", made_json(&replayed.deliveries, &replayed.skipped));
                return Ok(());
            }
            println!(
                "sent event {id} again: {} deliveries",
                replayed.deliveries.len()
            );
            print!("{}", made_text(&replayed.deliveries, &replayed.skipped));
        }
        EventsCommand::Types { command } => event_types(command, &mut client, json).await?,
    }
    Ok(())
}
