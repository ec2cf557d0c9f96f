//! Parsing of the operator RPCs' selections and filters, with
//! INVALID_ARGUMENT naming the field at fault.

use herald_proto::v1::{ListDeliveriesRequest, RedriveDeadLettersRequest};
use uuid::Uuid;

use super::{
    convert::{UnknownState, state_filter},
    error::ApiError,
    validate::time_ms,
};
use crate::store::records::{DeliveryFilter, RedriveSelection};

/// Most ids one redrive may name.
const MAX_REDRIVE_IDS: usize = 1000;
/// Page size when the request leaves it at 0.
const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest page a caller may ask for.
const MAX_PAGE_SIZE: u32 = 1000;

/// The page size asked for, defaulted and bounded.
pub fn page_size(requested: u32) -> Result<u32, ApiError> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n <= MAX_PAGE_SIZE => Ok(n),
        n => Err(ApiError::invalid(
            "page_size",
            format!("is {n}; the most is {MAX_PAGE_SIZE}"),
        )),
    }
}

/// A delivery id from the API.
pub fn delivery_id(field: &'static str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::invalid(field, format!("{raw:?} is not a delivery id (a UUID)")))
}

fn host(raw: &str) -> Option<String> {
    (!raw.is_empty()).then(|| raw.to_ascii_lowercase())
}

/// Which dead letters a redrive selects: ids, or filters, never both.
pub fn redrive_selection(
    request: &RedriveDeadLettersRequest,
) -> Result<RedriveSelection, ApiError> {
    let after_ms = time_ms(
        "dead_lettered_after_time",
        request.dead_lettered_after_time.as_ref(),
    )?;
    let before_ms = time_ms(
        "dead_lettered_before_time",
        request.dead_lettered_before_time.as_ref(),
    )?;
    let host = host(&request.destination_host);
    let filtered = after_ms.is_some() || before_ms.is_some() || host.is_some();
    if request.ids.is_empty() {
        if !filtered {
            return Err(ApiError::invalid(
                "ids",
                "name the dead letters to redrive, or select them by dead_lettered_after_time, \
                 dead_lettered_before_time or destination_host",
            ));
        }
        return Ok(RedriveSelection::Filter {
            after_ms,
            before_ms,
            host,
        });
    }
    if filtered {
        return Err(ApiError::invalid(
            "ids",
            "cannot be combined with time or destination filters; give one or the other",
        ));
    }
    if request.ids.len() > MAX_REDRIVE_IDS {
        return Err(ApiError::invalid(
            "ids",
            format!(
                "has {} ids; the most is {MAX_REDRIVE_IDS}",
                request.ids.len()
            ),
        ));
    }
    let ids = request
        .ids
        .iter()
        .map(|id| delivery_id("ids", id))
        .collect::<Result<_, _>>()?;
    Ok(RedriveSelection::Ids(ids))
}

/// The filters of a delivery listing.
pub fn delivery_filter(request: &ListDeliveriesRequest) -> Result<DeliveryFilter, ApiError> {
    let state = state_filter(request.state).map_err(|UnknownState(raw)| {
        ApiError::invalid("state", format!("{raw} is not a delivery state"))
    })?;
    Ok(DeliveryFilter {
        state,
        host: host(&request.destination_host),
        created_after_ms: time_ms("created_after_time", request.created_after_time.as_ref())?,
        created_before_ms: time_ms("created_before_time", request.created_before_time.as_ref())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(error: ApiError) -> &'static str {
        match error {
            ApiError::InvalidArgument { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn redrive_needs_ids_or_filters_but_not_both() {
        let none = RedriveDeadLettersRequest::default();
        assert_eq!(field(redrive_selection(&none).unwrap_err()), "ids");
        let both = RedriveDeadLettersRequest {
            ids: vec![Uuid::now_v7().to_string()],
            destination_host: "example.com".into(),
            ..Default::default()
        };
        assert_eq!(field(redrive_selection(&both).unwrap_err()), "ids");
        let bad = RedriveDeadLettersRequest {
            ids: vec!["nope".into()],
            ..Default::default()
        };
        assert_eq!(field(redrive_selection(&bad).unwrap_err()), "ids");
        let by_host = RedriveDeadLettersRequest {
            destination_host: "API.example.com".into(),
            ..Default::default()
        };
        assert_eq!(
            redrive_selection(&by_host).unwrap(),
            RedriveSelection::Filter {
                after_ms: None,
                before_ms: None,
                host: Some("api.example.com".into())
            }
        );
    }

    #[test]
    fn page_sizes_default_and_cap() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(7).unwrap(), 7);
        assert_eq!(
            field(page_size(MAX_PAGE_SIZE + 1).unwrap_err()),
            "page_size"
        );
    }
}
