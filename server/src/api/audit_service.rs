//! `herald.v1.AuditService`: the caller's tenant's audit trail, newest
//! first, a page at a time, filtered by kind and time.

use herald_proto::v1::{
    self as proto, AuditEventKind, ListAuditEventsRequest, ListAuditEventsResponse,
    audit_service_server::AuditService,
};
use tonic::{Request, Response, Status};

use super::{
    auth::authenticated,
    convert,
    error::ApiError,
    filters::page_size,
    page_token::{self, Listing},
    repeated::{at_most, distinct},
    validate::{Limits, time_ms},
};
use crate::store::{AuditCursor, AuditKind, AuditQuery, AuditRecord, Store};

/// The service's shared state.
#[derive(Clone)]
pub struct AuditApi {
    store: Store,
    limits: Limits,
}

impl AuditApi {
    /// A service reading `store`, its pages bounded by `limits`.
    pub fn new(store: Store, limits: Limits) -> Self {
        Self { store, limits }
    }
}

/// The kinds a request filters by, each once.
fn kinds(raw: &[i32]) -> Result<Vec<AuditKind>, ApiError> {
    at_most("kinds", raw.len(), AuditKind::ALL.len())?;
    let kinds = raw
        .iter()
        .map(|&raw| match AuditEventKind::try_from(raw) {
            Ok(AuditEventKind::Unspecified) | Err(_) => Err(ApiError::invalid(
                "kinds",
                format!("{raw} is not an audit event kind"),
            )),
            Ok(kind) => Ok(domain_kind(kind)),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(distinct(kinds))
}

fn domain_kind(kind: AuditEventKind) -> AuditKind {
    match kind {
        AuditEventKind::Unspecified | AuditEventKind::TenantCreated => AuditKind::TenantCreated,
        AuditEventKind::KeyCreated => AuditKind::KeyCreated,
        AuditEventKind::KeyRevoked => AuditKind::KeyRevoked,
        AuditEventKind::SecretRotated => AuditKind::SecretRotated,
        AuditEventKind::DeliveryCancelled => AuditKind::DeliveryCancelled,
        AuditEventKind::DeadLettersRedriven => AuditKind::DeadLettersRedriven,
        AuditEventKind::DestinationPolicySet => AuditKind::DestinationPolicySet,
        AuditEventKind::DestinationPaused => AuditKind::DestinationPaused,
        AuditEventKind::DestinationResumed => AuditKind::DestinationResumed,
        AuditEventKind::DestinationEnabled => AuditKind::DestinationEnabled,
        AuditEventKind::EndpointCreated => AuditKind::EndpointCreated,
        AuditEventKind::EndpointUpdated => AuditKind::EndpointUpdated,
        AuditEventKind::EndpointDeleted => AuditKind::EndpointDeleted,
        AuditEventKind::EndpointSecretRotated => AuditKind::EndpointSecretRotated,
        AuditEventKind::EventTypeSaved => AuditKind::EventTypeSaved,
        AuditEventKind::EventTypeDeleted => AuditKind::EventTypeDeleted,
        AuditEventKind::EventReplayed => AuditKind::EventReplayed,
        AuditEventKind::EndpointRecovered => AuditKind::EndpointRecovered,
    }
}

fn proto_kind(kind: AuditKind) -> AuditEventKind {
    match kind {
        AuditKind::TenantCreated => AuditEventKind::TenantCreated,
        AuditKind::KeyCreated => AuditEventKind::KeyCreated,
        AuditKind::KeyRevoked => AuditEventKind::KeyRevoked,
        AuditKind::SecretRotated => AuditEventKind::SecretRotated,
        AuditKind::DeliveryCancelled => AuditEventKind::DeliveryCancelled,
        AuditKind::DeadLettersRedriven => AuditEventKind::DeadLettersRedriven,
        AuditKind::DestinationPolicySet => AuditEventKind::DestinationPolicySet,
        AuditKind::DestinationPaused => AuditEventKind::DestinationPaused,
        AuditKind::DestinationResumed => AuditEventKind::DestinationResumed,
        AuditKind::DestinationEnabled => AuditEventKind::DestinationEnabled,
        AuditKind::EndpointCreated => AuditEventKind::EndpointCreated,
        AuditKind::EndpointUpdated => AuditEventKind::EndpointUpdated,
        AuditKind::EndpointDeleted => AuditEventKind::EndpointDeleted,
        AuditKind::EndpointSecretRotated => AuditEventKind::EndpointSecretRotated,
        AuditKind::EventTypeSaved => AuditEventKind::EventTypeSaved,
        AuditKind::EventTypeDeleted => AuditEventKind::EventTypeDeleted,
        AuditKind::EventReplayed => AuditEventKind::EventReplayed,
        AuditKind::EndpointRecovered => AuditEventKind::EndpointRecovered,
    }
}

fn message(record: AuditRecord) -> proto::AuditEvent {
    proto::AuditEvent {
        id: record.id,
        kind: proto_kind(record.kind).into(),
        time: Some(convert::timestamp(record.at_ms)),
        key_id: record.key_id.unwrap_or_default(),
        details_json: record.details.to_string(),
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Result<Response<ListAuditEventsResponse>, Status> {
        let (caller, request) = authenticated(request)?;
        let page_size = page_size(request.page_size, &self.limits);
        let mut kinds = kinds(&request.kinds)?;
        kinds.sort_by_key(|kind| kind.as_str());
        let after_ms = time_ms("after_time", request.after_time.as_ref())?;
        let before_ms = time_ms("before_time", request.before_time.as_ref())?;
        // The filters, which page tokens are bound to.
        let filters = serde_json::json!([
            kinds.iter().map(|kind| kind.as_str()).collect::<Vec<_>>(),
            after_ms,
            before_ms,
        ])
        .to_string();
        let query = AuditQuery {
            kinds,
            after_ms,
            before_ms,
            cursor: page_token::decode(Listing::AuditEvents, &filters, &request.page_token)?,
            limit: page_size,
        };
        let events = self
            .store
            .audit_events(&caller.tenant, &query)
            .await
            .map_err(ApiError::from)?;
        let full = events.len() == page_size as usize;
        let after = events.last().filter(|_| full).map(|last| AuditCursor {
            at_ms: last.at_ms,
            id: last.id,
        });
        Ok(Response::new(ListAuditEventsResponse {
            next_page_token: page_token::next(Listing::AuditEvents, &filters, after.as_ref()),
            events: events.into_iter().map(message).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_both_ways() {
        for kind in AuditKind::ALL {
            assert_eq!(domain_kind(proto_kind(kind)), kind);
        }
        assert!(
            kinds(&[0]).is_err(),
            "unspecified is not a kind to filter by"
        );
        assert!(kinds(&[99]).is_err());
        assert_eq!(kinds(&[2, 2]).unwrap(), vec![AuditKind::KeyCreated]);
    }
}
