//! `herald.v1.DeliveryService`: each RPC reads the request, validates and
//! converts it, calls the store or the feed, and maps the error once.

use std::{pin::Pin, sync::Arc};

use futures::{Stream, StreamExt};
use herald_proto::v1::{
    EnqueueRequest, EnqueueResponse, GetDeliveryRequest, GetDeliveryResponse,
    ListDeadLettersRequest, ListDeadLettersResponse, WatchOutcomesRequest, WatchOutcomesResponse,
    delivery_service_server::DeliveryService,
};
use tokio::sync::Notify;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    convert,
    error::ApiError,
    page_token,
    validate::{self, Limits},
};
use crate::{
    outcomes::{Cursor, OutcomeFeed},
    store::{DeadLetterCursor, Store},
};

/// Every caller belongs to this tenant until API keys arrive.
pub const DEFAULT_TENANT: &str = "default";
/// Page size when the request leaves it at 0.
const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest page a caller may ask for.
const MAX_PAGE_SIZE: u32 = 1000;

/// The service's shared state.
#[derive(Clone)]
pub struct DeliveryApi {
    store: Store,
    feed: OutcomeFeed,
    wake: Arc<Notify>,
    limits: Limits,
}

impl DeliveryApi {
    /// A service over `store` and `feed` that wakes the scheduler through
    /// `wake` after each enqueue.
    pub fn new(store: Store, feed: OutcomeFeed, wake: Arc<Notify>, limits: Limits) -> Self {
        Self {
            store,
            feed,
            wake,
            limits,
        }
    }
}

fn delivery_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::invalid("id", format!("{raw:?} is not a delivery id (a UUID)")))
}

type OutcomeStream =
    Pin<Box<dyn Stream<Item = Result<WatchOutcomesResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl DeliveryService for DeliveryApi {
    async fn enqueue(
        &self,
        request: Request<EnqueueRequest>,
    ) -> Result<Response<EnqueueResponse>, Status> {
        let delivery = validate::enqueue(request.into_inner(), DEFAULT_TENANT, &self.limits)?;
        let enqueued = self
            .store
            .enqueue(&delivery)
            .await
            .map_err(ApiError::from)?;
        if enqueued.created {
            self.wake.notify_one();
        }
        Ok(Response::new(EnqueueResponse {
            id: enqueued.id.to_string(),
            created: enqueued.created,
        }))
    }

    async fn get_delivery(
        &self,
        request: Request<GetDeliveryRequest>,
    ) -> Result<Response<GetDeliveryResponse>, Status> {
        let id = delivery_id(&request.into_inner().id)?;
        let delivery = self
            .store
            .get_delivery(DEFAULT_TENANT, id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::NotFound(format!("delivery {id} not found")))?;
        Ok(Response::new(GetDeliveryResponse {
            delivery: Some(convert::delivery(delivery)),
        }))
    }

    async fn list_dead_letters(
        &self,
        request: Request<ListDeadLettersRequest>,
    ) -> Result<Response<ListDeadLettersResponse>, Status> {
        let request = request.into_inner();
        let page_size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n <= MAX_PAGE_SIZE => n,
            n => {
                return Err(ApiError::invalid(
                    "page_size",
                    format!("is {n}; the most is {MAX_PAGE_SIZE}"),
                )
                .into());
            }
        };
        let cursor = page_token::decode(&request.page_token)?;
        let page = self
            .store
            .list_dead_letters(DEFAULT_TENANT, cursor, u64::from(page_size))
            .await
            .map_err(ApiError::from)?;
        let next_page_token = match page.last() {
            Some(last) if page.len() == page_size as usize => {
                page_token::encode(DeadLetterCursor {
                    finished_at_ms: last.finished_at_ms.unwrap_or_default(),
                    id: last.id,
                })
            }
            _ => String::new(),
        };
        Ok(Response::new(ListDeadLettersResponse {
            deliveries: page.into_iter().map(convert::delivery).collect(),
            next_page_token,
        }))
    }

    type WatchOutcomesStream = OutcomeStream;

    async fn watch_outcomes(
        &self,
        request: Request<WatchOutcomesRequest>,
    ) -> Result<Response<Self::WatchOutcomesStream>, Status> {
        let cursor = match request.into_inner().after_sequence {
            None => Cursor::Now,
            Some(sequence) => Cursor::After(i64::try_from(sequence).map_err(|_| {
                ApiError::invalid(
                    "after_sequence",
                    format!("{sequence} is beyond any sequence Herald assigns"),
                )
            })?),
        };
        let outcomes = self
            .feed
            .watch(DEFAULT_TENANT.to_owned(), cursor)
            .await
            .map_err(ApiError::from)?;
        let stream = ReceiverStream::new(outcomes).map(|item| match item {
            Ok(outcome) => Ok(WatchOutcomesResponse {
                outcome: Some(convert::outcome(outcome)),
            }),
            Err(error) => Err(Status::from(ApiError::from(error))),
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
