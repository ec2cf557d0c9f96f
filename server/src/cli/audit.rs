//! `herald audit list`: the audit trail of the caller's tenant from a
//! running server, newest first. A table by default, `--json` for scripts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use herald_proto::v1::{
    AuditEvent, AuditEventKind, ListAuditEventsRequest, audit_service_client::AuditServiceClient,
};

use super::operate::{CliResult, Common};

/// `herald audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List operator actions, newest first.
    List {
        /// Only this kind (repeat for several): tenant-created,
        /// key-created, key-revoked, secret-rotated, delivery-cancelled,
        /// dead-letters-redriven, destination-policy-set,
        /// destination-paused, destination-resumed, destination-enabled.
        #[arg(long = "kind", value_parser = parse_kind)]
        kinds: Vec<AuditEventKind>,
        /// At or after this time (RFC 3339).
        #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
        after: Option<SystemTime>,
        /// Before this time (RFC 3339).
        #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
        before: Option<SystemTime>,
        /// Most events to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

/// A kind as the CLI takes it: its proto name's tail in kebab case.
fn parse_kind(text: &str) -> Result<AuditEventKind, String> {
    let name = format!(
        "AUDIT_EVENT_KIND_{}",
        text.trim().to_ascii_uppercase().replace('-', "_")
    );
    match AuditEventKind::from_str_name(&name) {
        Some(AuditEventKind::Unspecified) | None => Err(format!(
            "{text:?} is not an audit event kind; `herald audit list --help` lists them"
        )),
        Some(kind) => Ok(kind),
    }
}

/// A kind as the CLI shows it.
fn kind_name(kind: i32) -> String {
    AuditEventKind::try_from(kind)
        .map(|kind| {
            kind.as_str_name()
                .trim_start_matches("AUDIT_EVENT_KIND_")
                .to_ascii_lowercase()
                .replace('_', "-")
        })
        .unwrap_or_else(|_| kind.to_string())
}

fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

fn time_text(event: &AuditEvent) -> String {
    let seconds = event.time.map_or(0, |time| time.seconds);
    let since = Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
    humantime::format_rfc3339_seconds(UNIX_EPOCH + since).to_string()
}

/// Runs a `herald audit` command.
pub async fn audit(command: AuditCommand, common: Common) -> CliResult {
    let AuditCommand::List {
        kinds,
        after,
        before,
        limit,
    } = command;
    let mut events = Vec::new();
    let mut page_token = String::new();
    while events.len() < limit {
        let request = ListAuditEventsRequest {
            page_size: u32::try_from(limit - events.len()).unwrap_or(u32::MAX),
            page_token,
            kinds: kinds.iter().map(|&kind| kind.into()).collect(),
            after_time: after.map(timestamp),
            before_time: before.map(timestamp),
        };
        let (channel, request) = common.server.channel(request).await?;
        let page = AuditServiceClient::new(channel)
            .list_audit_events(request)
            .await?
            .into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    events.truncate(limit);
    if common.json {
        for event in &events {
            let details: serde_json::Value =
                serde_json::from_str(&event.details_json).unwrap_or_default();
            let line = serde_json::json!({
                "id": event.id,
                "time": time_text(event),
                "kind": kind_name(event.kind),
                "key_id": (!event.key_id.is_empty()).then_some(&event.key_id),
                "details": details,
            });
            println!("{line}");
        }
        return Ok(());
    }
    println!(
        "{:>8}  {:<20}  {:<24}  {:<14}  DETAILS",
        "ID", "TIME", "KIND", "KEY ID"
    );
    for event in &events {
        let key_id = if event.key_id.is_empty() {
            "-"
        } else {
            &event.key_id
        };
        println!(
            "{:>8}  {:<20}  {:<24}  {:<14}  {}",
            event.id,
            time_text(event),
            kind_name(event.kind),
            key_id,
            event.details_json
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_and_print_in_kebab_case() {
        let kind = parse_kind("dead-letters-redriven").unwrap();
        assert_eq!(kind, AuditEventKind::DeadLettersRedriven);
        assert_eq!(kind_name(kind.into()), "dead-letters-redriven");
        assert!(parse_kind("unspecified").is_err());
        assert!(parse_kind("nope").is_err());
    }
}
