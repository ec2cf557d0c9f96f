//! `herald events types`: the catalogue of event types, each with a
//! description and optionally the JSON Schema every payload of the type
//! must match.

use std::path::PathBuf;

use clap::{ArgGroup, Subcommand};
use herald_proto::v1::{
    CreateEventTypeRequest, DeleteEventTypeRequest, EventType, GetEventTypeRequest,
    ListEventTypesRequest, UpdateEventTypeRequest, event_service_client::EventServiceClient,
};
use serde_json::json;

use super::{
    event_render::{event_type_detail, event_type_json, event_type_table},
    input::{InputError, read_text},
    operate::CliResult,
    paging::{Page, Paging},
    server_args::AuthorizedChannel,
};

/// The schema in `file`, if one is named; empty (none) otherwise.
fn schema(file: Option<PathBuf>) -> Result<String, InputError> {
    Ok(file
        .map(|path| read_text("JSON Schema", &path))
        .transpose()?
        .unwrap_or_default())
}

/// `herald events types ...`
#[derive(Debug, Subcommand)]
pub enum EventTypesCommand {
    /// List the catalogue by name.
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one event type with its schema.
    Get {
        /// Its name.
        name: String,
    },
    /// Add an event type.
    Create {
        /// Its name, e.g. order.created.
        name: String,
        /// For people.
        #[arg(long, default_value = "")]
        description: String,
        /// A JSON Schema file every payload of the type must match; `-`
        /// reads stdin.
        #[arg(long)]
        schema_file: Option<PathBuf>,
    },
    /// Change an event type's description or schema.
    #[command(group(ArgGroup::new("change").required(true).multiple(true).args([
        "description", "schema_file", "no_schema",
    ])))]
    Update {
        /// Its name.
        name: String,
        /// A new description.
        #[arg(long)]
        description: Option<String>,
        /// A new JSON Schema, from this file; `-` reads stdin.
        #[arg(long, conflicts_with = "no_schema")]
        schema_file: Option<PathBuf>,
        /// Remove the schema: payloads go unchecked.
        #[arg(long)]
        no_schema: bool,
    },
    /// Remove an event type; events of the type may still be published,
    /// unchecked.
    Delete {
        /// Its name.
        name: String,
    },
}

/// Runs a `herald events types` command over `client`.
pub async fn event_types(
    command: EventTypesCommand,
    client: &mut EventServiceClient<AuthorizedChannel>,
    json: bool,
) -> CliResult {
    let event_type = match command {
        EventTypesCommand::List { paging } => {
            let page = paging
                .fetch(|page_size, page_token| {
                    let mut client = client.clone();
                    async move {
                        let page = client
                            .list_event_types(ListEventTypesRequest {
                                page_size,
                                page_token,
                            })
                            .await?
                            .into_inner();
                        Ok(Page {
                            items: page.event_types,
                            next_page_token: page.next_page_token,
                        })
                    }
                })
                .await?;
            page.print(json, "event_types", event_type_json, event_type_table);
            return Ok(());
        }
        EventTypesCommand::Get { name } => {
            client
                .get_event_type(GetEventTypeRequest { name })
                .await?
                .into_inner()
                .event_type
        }
        EventTypesCommand::Create {
            name,
            description,
            schema_file,
        } => {
            let json_schema = schema(schema_file)?;
            client
                .create_event_type(CreateEventTypeRequest {
                    event_type: Some(EventType {
                        name,
                        description,
                        json_schema,
                        ..EventType::default()
                    }),
                })
                .await?
                .into_inner()
                .event_type
        }
        EventTypesCommand::Update {
            name,
            description,
            schema_file,
            no_schema,
        } => {
            let mut paths = Vec::new();
            if description.is_some() {
                paths.push("description".to_owned());
            }
            if schema_file.is_some() || no_schema {
                paths.push("json_schema".to_owned());
            }
            let json_schema = schema(schema_file)?;
            client
                .update_event_type(UpdateEventTypeRequest {
                    event_type: Some(EventType {
                        name,
                        description: description.unwrap_or_default(),
                        json_schema,
                        ..EventType::default()
                    }),
                    update_mask: Some(prost_types::FieldMask { paths }),
                })
                .await?
                .into_inner()
                .event_type
        }
        EventTypesCommand::Delete { name } => {
            client
                .delete_event_type(DeleteEventTypeRequest { name: name.clone() })
                .await?;
            if json {
                println!("{}", json!({ "name": name, "deleted": true }));
            } else {
                println!("removed event type {name} from the catalogue");
            }
            return Ok(());
        }
    };
    let event_type = event_type.unwrap_or_default();
    if json {
        println!("{}", event_type_json(&event_type));
    } else {
        print!("{}", event_type_detail(&event_type));
    }
    Ok(())
}
