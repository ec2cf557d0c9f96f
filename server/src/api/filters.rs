//! Parsing of the operator RPCs' selections and filters, with
//! INVALID_ARGUMENT naming the field at fault.

use herald_proto::v1::{
    DeadLetterFilter, DeliveryView as ProtoView, ListDeliveriesRequest, OutcomeKind as ProtoKind,
    RedriveDeadLettersRequest, WatchOutcomesRequest, redrive_dead_letters_request::Selection,
    watch_outcomes_request::Start,
};
use uuid::Uuid;

use super::validate::Limits;
use super::{
    convert::{UnknownState, state_filter},
    error::ApiError,
    repeated::{at_most, distinct},
    validate::{self, time_ms},
};
use crate::{
    domain::{Destination, OutcomeKind},
    endpoints::EventTypeName,
    outcomes::Cursor,
    store::records::{DeliveryFilter, DeliveryView, OutcomeFilter, RedriveSelection},
};

/// Most ids one redrive or watch may name.
const MAX_IDS: usize = 1000;
/// Most kinds one watch may name: one of each kind there is.
const MAX_KINDS: usize = OutcomeKind::ALL.len();
/// Page size when the request leaves it at 0.
const DEFAULT_PAGE_SIZE: u32 = 100;

/// The page size asked for, defaulted (to 100, or the limit if lower) and
/// reduced to the most `limits` allow (AIP-158: a larger size is not an
/// error).
pub fn page_size(requested: u32, limits: &Limits) -> u32 {
    let max = limits.input.max_page_size;
    match requested {
        0 => DEFAULT_PAGE_SIZE.min(max),
        n => n.min(max),
    }
}

/// A delivery id from the API.
pub fn delivery_id(field: &'static str, raw: &str) -> Result<Uuid, ApiError> {
    uuid_field(field, raw, "a delivery id")
}

/// An id from the API (`what` says whose, for the error).
pub fn uuid_field(field: &'static str, raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::invalid(field, format!("{raw:?} is not {what} (a UUID)")))
}

/// The `destination_host` filter in the form stored hosts take (see
/// [`Destination::host_named`]); `None` when not given.
fn host(raw: &str) -> Result<Option<String>, ApiError> {
    host_at("destination_host", raw)
}

/// [`host`] of the request field named `field`.
fn host_at(field: &'static str, raw: &str) -> Result<Option<String>, ApiError> {
    if raw.is_empty() {
        return Ok(None);
    }
    Destination::host_named(raw).map(Some).ok_or_else(|| {
        ApiError::invalid(
            field,
            format!(
                "{raw:?} is not a host: give the host alone, without scheme, port or path, \
                 e.g. api.example.com, bücher.example or [2001:db8::1]"
            ),
        )
    })
}

/// Which dead letters a redrive selects: named ids, or a filter.
pub fn redrive_selection(
    request: &RedriveDeadLettersRequest,
) -> Result<RedriveSelection, ApiError> {
    match &request.selection {
        Some(Selection::Deliveries(named)) => {
            if named.ids.is_empty() {
                return Err(ApiError::invalid(
                    "deliveries.ids",
                    "is empty; name at least one dead letter",
                ));
            }
            at_most("deliveries.ids", named.ids.len(), MAX_IDS)?;
            let ids = named
                .ids
                .iter()
                .map(|id| delivery_id("deliveries.ids", id))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(RedriveSelection::Ids(distinct(ids)))
        }
        Some(Selection::Filter(filter)) => dead_letter_filter(filter),
        None => Err(ApiError::invalid(
            "selection",
            "name the dead letters to redrive (deliveries), or select them by a filter \
             (filter: dead_lettered_after_time, dead_lettered_before_time, destination_host)",
        )),
    }
}

/// A redrive's filter; at least one of its fields must be set.
fn dead_letter_filter(filter: &DeadLetterFilter) -> Result<RedriveSelection, ApiError> {
    let after_ms = time_ms(
        "filter.dead_lettered_after_time",
        filter.dead_lettered_after_time.as_ref(),
    )?;
    let before_ms = time_ms(
        "filter.dead_lettered_before_time",
        filter.dead_lettered_before_time.as_ref(),
    )?;
    let host = host_at("filter.destination_host", &filter.destination_host)?;
    if after_ms.is_none() && before_ms.is_none() && host.is_none() {
        return Err(ApiError::invalid(
            "filter",
            "is empty; set dead_lettered_after_time, dead_lettered_before_time or \
             destination_host (to redrive every dead letter, a dead_lettered_before_time \
             of now)",
        ));
    }
    Ok(RedriveSelection::Filter {
        after_ms,
        before_ms,
        host,
    })
}

/// The filters of a delivery listing.
/// `max_key_bytes` is the longest idempotency key an enqueue takes: no
/// stored delivery has a longer one.
pub fn delivery_filter(
    request: &ListDeliveriesRequest,
    max_key_bytes: usize,
) -> Result<DeliveryFilter, ApiError> {
    let state = state_filter(request.state).map_err(|UnknownState(raw)| {
        ApiError::invalid("state", format!("{raw} is not a delivery state"))
    })?;
    Ok(DeliveryFilter {
        state,
        host: host(&request.destination_host)?,
        created_after_ms: time_ms("created_after_time", request.created_after_time.as_ref())?,
        created_before_ms: time_ms("created_before_time", request.created_before_time.as_ref())?,
        idempotency_key: Some(&request.idempotency_key)
            .filter(|key| !key.is_empty())
            .map(|key| validate::idempotency_key(key.clone(), max_key_bytes))
            .transpose()?,
    })
}

/// How much of each delivery a listing returns: the basic view unless the
/// full one is asked for (AIP-157).
pub fn view(raw: i32) -> Result<DeliveryView, ApiError> {
    match ProtoView::try_from(raw) {
        Ok(ProtoView::Unspecified | ProtoView::Basic) => Ok(DeliveryView::Basic),
        Ok(ProtoView::Full) => Ok(DeliveryView::Full),
        Err(_) => Err(ApiError::invalid(
            "view",
            format!("{raw} is not a view; use DELIVERY_VIEW_BASIC or DELIVERY_VIEW_FULL"),
        )),
    }
}

/// The filters of a delivery listing as one canonical text, which its
/// page tokens are bound to.
pub fn delivery_filter_text(filter: &DeliveryFilter) -> String {
    serde_json::json!([
        filter.state.map(|state| state.as_str()),
        filter.host,
        filter.created_after_ms,
        filter.created_before_ms,
        filter.idempotency_key,
    ])
    .to_string()
}

/// Where a watch starts and what it streams.
pub fn watch(request: &WatchOutcomesRequest) -> Result<(Cursor, OutcomeFilter), ApiError> {
    let cursor = match request.start {
        None => Cursor::Now,
        Some(Start::FromOldest(true)) => Cursor::Oldest,
        Some(Start::FromOldest(false)) => {
            return Err(ApiError::invalid(
                "from_oldest",
                "is false; set it true to replay from the oldest outcome, or leave start unset \
                 to watch from now",
            ));
        }
        Some(Start::AfterSequence(sequence)) => {
            Cursor::After(i64::try_from(sequence).map_err(|_| {
                ApiError::invalid(
                    "after_sequence",
                    format!("{sequence} is beyond any sequence Herald assigns"),
                )
            })?)
        }
    };
    at_most("delivery_ids", request.delivery_ids.len(), MAX_IDS)?;
    at_most("kinds", request.kinds.len(), MAX_KINDS)?;
    let delivery_ids = request
        .delivery_ids
        .iter()
        .map(|id| delivery_id("delivery_ids", id))
        .collect::<Result<Vec<_>, _>>()?;
    let kinds = request
        .kinds
        .iter()
        .map(|&raw| match ProtoKind::try_from(raw) {
            Ok(ProtoKind::Succeeded) => Ok(OutcomeKind::Succeeded),
            Ok(ProtoKind::RetryScheduled) => Ok(OutcomeKind::RetryScheduled),
            Ok(ProtoKind::DeadLettered) => Ok(OutcomeKind::DeadLettered),
            Ok(ProtoKind::Cancelled) => Ok(OutcomeKind::Cancelled),
            Ok(ProtoKind::CircuitOpened) => Ok(OutcomeKind::CircuitOpened),
            Ok(ProtoKind::CircuitClosed) => Ok(OutcomeKind::CircuitClosed),
            Ok(ProtoKind::DestinationPaused) => Ok(OutcomeKind::DestinationPaused),
            Ok(ProtoKind::DestinationResumed) => Ok(OutcomeKind::DestinationResumed),
            Ok(ProtoKind::DestinationDisabled) => Ok(OutcomeKind::DestinationDisabled),
            Ok(ProtoKind::DestinationEnabled) => Ok(OutcomeKind::DestinationEnabled),
            Ok(ProtoKind::Redriven) => Ok(OutcomeKind::Redriven),
            Ok(ProtoKind::Unspecified) | Err(_) => Err(ApiError::invalid(
                "kinds",
                format!("{raw} is not an outcome kind to filter by"),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        cursor,
        OutcomeFilter {
            delivery_ids: distinct(delivery_ids),
            kinds: distinct(kinds),
            host: host(&request.destination_host)?,
            endpoint_id: (!request.endpoint_id.is_empty())
                .then(|| uuid_field("endpoint_id", &request.endpoint_id, "an endpoint id"))
                .transpose()?,
            event_type: (!request.event_type.is_empty())
                .then(|| {
                    EventTypeName::parse(&request.event_type)
                        .map(|name| name.as_str().to_owned())
                        .map_err(|problem| ApiError::invalid("event_type", problem.to_string()))
                })
                .transpose()?,
        },
    ))
}

#[cfg(test)]
mod tests {
    use herald_proto::v1::DeliveryIds;

    use super::*;

    fn field(error: ApiError) -> &'static str {
        match error {
            ApiError::InvalidArgument { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    fn by_ids(ids: Vec<String>) -> RedriveDeadLettersRequest {
        RedriveDeadLettersRequest {
            selection: Some(Selection::Deliveries(DeliveryIds { ids })),
            ..Default::default()
        }
    }

    fn by_filter(filter: DeadLetterFilter) -> RedriveDeadLettersRequest {
        RedriveDeadLettersRequest {
            selection: Some(Selection::Filter(filter)),
            ..Default::default()
        }
    }

    #[test]
    fn redrive_needs_ids_or_a_filter_with_something_in_it() {
        let none = RedriveDeadLettersRequest::default();
        assert_eq!(field(redrive_selection(&none).unwrap_err()), "selection");
        let no_ids = by_ids(Vec::new());
        assert_eq!(
            field(redrive_selection(&no_ids).unwrap_err()),
            "deliveries.ids"
        );
        let bad = by_ids(vec!["nope".into()]);
        assert_eq!(
            field(redrive_selection(&bad).unwrap_err()),
            "deliveries.ids"
        );
        let empty = by_filter(DeadLetterFilter::default());
        assert_eq!(field(redrive_selection(&empty).unwrap_err()), "filter");
        let bad_host = by_filter(DeadLetterFilter {
            destination_host: "example.com:443".into(),
            ..Default::default()
        });
        assert_eq!(
            field(redrive_selection(&bad_host).unwrap_err()),
            "filter.destination_host"
        );
        let by_host = by_filter(DeadLetterFilter {
            destination_host: "API.example.com".into(),
            ..Default::default()
        });
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
    fn watch_cursors_and_filters() {
        let start = |start| WatchOutcomesRequest {
            start,
            ..Default::default()
        };
        assert_eq!(watch(&start(None)).unwrap().0, Cursor::Now);
        assert_eq!(
            watch(&start(Some(Start::AfterSequence(3)))).unwrap().0,
            Cursor::After(3)
        );
        let not_oldest = start(Some(Start::FromOldest(false)));
        assert_eq!(field(watch(&not_oldest).unwrap_err()), "from_oldest");
        let beyond = start(Some(Start::AfterSequence(u64::MAX)));
        assert_eq!(field(watch(&beyond).unwrap_err()), "after_sequence");
        let kinds = WatchOutcomesRequest {
            kinds: vec![0],
            ..Default::default()
        };
        assert_eq!(field(watch(&kinds).unwrap_err()), "kinds");
        let (cursor, filter) = watch(&WatchOutcomesRequest {
            start: Some(Start::FromOldest(true)),
            kinds: vec![ProtoKind::DeadLettered.into()],
            destination_host: "Example.COM".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(cursor, Cursor::Oldest);
        assert_eq!(filter.kinds, [OutcomeKind::DeadLettered]);
        assert_eq!(filter.host.as_deref(), Some("example.com"));
        let with_port = WatchOutcomesRequest {
            destination_host: "example.com:443".into(),
            ..Default::default()
        };
        assert_eq!(field(watch(&with_port).unwrap_err()), "destination_host");
    }

    #[test]
    fn watch_filters_are_bounded_and_lose_their_repeats() {
        let id = Uuid::now_v7();
        let dead: i32 = ProtoKind::DeadLettered.into();
        let succeeded: i32 = ProtoKind::Succeeded.into();
        let (_, filter) = watch(&WatchOutcomesRequest {
            delivery_ids: vec![id.to_string(); 3],
            kinds: vec![dead, succeeded, dead, dead],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(filter.delivery_ids, [id]);
        assert_eq!(
            filter.kinds,
            [OutcomeKind::DeadLettered, OutcomeKind::Succeeded]
        );
        let too_many = WatchOutcomesRequest {
            kinds: vec![dead; MAX_KINDS + 1],
            ..Default::default()
        };
        assert_eq!(field(watch(&too_many).unwrap_err()), "kinds");
        let redrive = by_ids(vec![id.to_string(); 2]);
        assert_eq!(
            redrive_selection(&redrive).unwrap(),
            RedriveSelection::Ids(vec![id])
        );
    }

    #[test]
    fn page_sizes_default_and_are_reduced_to_the_most() {
        let limits = |max_page_size| Limits {
            input: crate::config::InputLimits {
                max_page_size,
                ..crate::Config::default().limits
            },
            default_max_attempts: 1,
            targets: crate::transport::TargetPolicy::default(),
        };
        assert_eq!(page_size(0, &limits(1000)), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(0, &limits(10)), 10);
        assert_eq!(page_size(7, &limits(7)), 7);
        assert_eq!(page_size(8, &limits(7)), 7, "reduced, not refused");
    }
}
