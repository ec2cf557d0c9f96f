//! `herald.v1.DeliveryService`: each RPC reads the request, validates and
//! converts it, calls the store, the scheduler or the feed, and maps the
//! error once.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use herald_proto::{
    WATCH_AFTER_SEQUENCE,
    v1::{
        CancelDeliveryRequest, CancelDeliveryResponse, EnqueueBatchRequest, EnqueueBatchResponse,
        EnqueueBatchResult, EnqueueRequest, EnqueueResponse, GetBacklogRequest, GetBacklogResponse,
        GetDeliveryRequest, GetDeliveryResponse, ListDeadLettersRequest, ListDeadLettersResponse,
        ListDeliveriesRequest, ListDeliveriesResponse, RedriveDeadLettersRequest,
        RedriveDeadLettersResponse, WatchOutcomesRequest, WatchOutcomesResponse,
        delivery_service_server::DeliveryService, enqueue_batch_result::Result as BatchResult,
    },
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, metadata::MetadataValue};

use super::{
    auth::{Caller, authenticated},
    convert,
    error::ApiError,
    filters::{self, delivery_id, page_size},
    listing::Page,
    page_token::{self, Listing},
    validate::{self, Limits},
    watch_cap::WatchCap,
};
use crate::{
    metrics::Metrics,
    outcomes::OutcomeFeed,
    scheduler::{SchedulerHandle, ShuttingDown},
    store::{
        GroupCommit, Store,
        records::{CancelResult, Enqueued},
    },
};

/// The service's shared state.
#[derive(Clone)]
pub struct DeliveryApi {
    store: Store,
    feed: OutcomeFeed,
    scheduler: SchedulerHandle,
    limits: Limits,
    metrics: Metrics,
    enqueues: GroupCommit,
    watches: WatchCap,
}

impl DeliveryApi {
    /// A service over `store` and `feed` that tells `scheduler` about new
    /// work and routes cancellations through it; the gate found each
    /// caller's tenant. Unary enqueues share commits ([`GroupCommit`]);
    /// `watches` caps each tenant's open outcome streams.
    pub fn new(
        store: Store,
        feed: OutcomeFeed,
        scheduler: SchedulerHandle,
        limits: Limits,
        metrics: Metrics,
        watches: WatchCap,
    ) -> Self {
        Self {
            watches,
            enqueues: GroupCommit::start(store.clone()),
            store,
            feed,
            scheduler,
            limits,
            metrics,
        }
    }

    /// Counts `created` new deliveries and wakes the scheduler for them.
    fn accepted(&self, created: u64) {
        if created == 0 {
            return;
        }
        self.metrics.enqueued(created);
        self.scheduler.work_added();
    }

    async fn delivery(
        &self,
        tenant: &str,
        id: uuid::Uuid,
    ) -> Result<herald_proto::v1::Delivery, ApiError> {
        let delivery = self
            .store
            .get_delivery(tenant, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        Ok(convert::delivery(delivery))
    }
}

/// The answer for an accepted delivery.
fn accepted(enqueued: Enqueued) -> EnqueueResponse {
    EnqueueResponse {
        id: enqueued.id.to_string(),
        created: enqueued.created,
    }
}

/// A batch item's acceptance.
fn accepted_item(enqueued: Enqueued) -> EnqueueBatchResult {
    EnqueueBatchResult {
        result: Some(BatchResult::Accepted(accepted(enqueued))),
    }
}

/// A batch item's refusal: the status Enqueue would have answered with,
/// details included.
fn refused(error: ApiError) -> EnqueueBatchResult {
    EnqueueBatchResult {
        result: Some(BatchResult::Error(error.into())),
    }
}

fn not_found(id: uuid::Uuid) -> ApiError {
    ApiError::NotFound(format!("delivery {id} not found"))
}

type OutcomeStream =
    Pin<Box<dyn Stream<Item = Result<WatchOutcomesResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl DeliveryService for DeliveryApi {
    async fn enqueue(
        &self,
        request: Request<EnqueueRequest>,
    ) -> Result<Response<EnqueueResponse>, Status> {
        let trace = validate::trace_context(request.metadata());
        let (Caller { tenant, .. }, request) = authenticated(request)?;
        let delivery = validate::enqueue(request, &tenant, trace, &self.limits)?;
        let enqueued = self
            .enqueues
            .write(delivery)
            .await
            .map_err(ApiError::from)?;
        tracing::Span::current().record("delivery_id", tracing::field::display(enqueued.id));
        self.accepted(u64::from(enqueued.created));
        Ok(Response::new(accepted(enqueued)))
    }

    async fn enqueue_batch(
        &self,
        request: Request<EnqueueBatchRequest>,
    ) -> Result<Response<EnqueueBatchResponse>, Status> {
        let trace = validate::trace_context(request.metadata());
        let (Caller { tenant, .. }, request) = authenticated(request)?;
        let max = self.limits.input.max_batch_size;
        let count = request.deliveries.len();
        if count == 0 || count > max {
            return Err(ApiError::invalid(
                "deliveries",
                format!("has {count}; send 1 to {max} (HERALD_MAX_BATCH_SIZE)"),
            )
            .into());
        }
        let mut results = vec![EnqueueBatchResult::default(); count];
        let mut valid = Vec::with_capacity(count);
        let mut positions = Vec::with_capacity(count);
        for (position, item) in request.deliveries.into_iter().enumerate() {
            match validate::enqueue(item, &tenant, trace.clone(), &self.limits) {
                Ok(delivery) => {
                    valid.push(delivery);
                    positions.push(position);
                }
                Err(error) => results[position] = refused(error),
            }
        }
        let stored = self
            .store
            .enqueue_batch(&valid)
            .await
            .map_err(ApiError::from)?;
        let mut created = 0;
        for (position, result) in positions.into_iter().zip(stored) {
            results[position] = match result {
                Ok(enqueued) => {
                    created += u64::from(enqueued.created);
                    accepted_item(enqueued)
                }
                Err(error) => refused(ApiError::from(error)),
            };
        }
        self.accepted(created);
        Ok(Response::new(EnqueueBatchResponse { results }))
    }

    async fn get_delivery(
        &self,
        request: Request<GetDeliveryRequest>,
    ) -> Result<Response<GetDeliveryResponse>, Status> {
        let (Caller { tenant, .. }, request) = authenticated(request)?;
        let id = delivery_id("id", &request.id)?;
        Ok(Response::new(GetDeliveryResponse {
            delivery: Some(self.delivery(&tenant, id).await?),
        }))
    }

    async fn list_dead_letters(
        &self,
        request: Request<ListDeadLettersRequest>,
    ) -> Result<Response<ListDeadLettersResponse>, Status> {
        let (Caller { tenant, .. }, request) = authenticated(request)?;
        let page_size = page_size(request.page_size, &self.limits);
        let view = filters::view(request.view)?;
        let cursor = page_token::decode(Listing::DeadLetters, "", &request.page_token)?;
        let mut page = Page::new(page_size, |dead| dead.finished_at_ms.unwrap_or_default());
        self.store
            .list_dead_letters(&tenant, cursor, u64::from(page_size), view, |record| {
                page.take(record)
            })
            .await
            .map_err(ApiError::from)?;
        let (deliveries, next_page_token) = page.finish(Listing::DeadLetters, "");
        Ok(Response::new(ListDeadLettersResponse {
            deliveries,
            next_page_token,
        }))
    }

    type WatchOutcomesStream = OutcomeStream;

    async fn watch_outcomes(
        &self,
        request: Request<WatchOutcomesRequest>,
    ) -> Result<Response<Self::WatchOutcomesStream>, Status> {
        let (Caller { tenant, .. }, request) = authenticated(request)?;
        let (cursor, filter) = filters::watch(&request)?;
        let slot = self.watches.take(&tenant)?;
        let watch = self
            .feed
            .watch(tenant, filter, cursor)
            .await
            .map_err(ApiError::from)?;
        // Counted as a watcher, and in its tenant's cap, for as long as the
        // stream lives.
        let watching = (self.metrics.watching(), slot);
        let stream = ReceiverStream::new(watch.outcomes).map(move |item| {
            let _watching = &watching;
            match item {
                Ok(outcome) => Ok(WatchOutcomesResponse {
                    outcome: Some(convert::outcome(outcome)),
                }),
                Err(error) => Err(Status::from(ApiError::from(error))),
            }
        });
        let mut response = Response::new(Box::pin(stream) as OutcomeStream);
        response
            .metadata_mut()
            .insert(WATCH_AFTER_SEQUENCE, MetadataValue::from(watch.after));
        Ok(response)
    }

    async fn cancel_delivery(
        &self,
        request: Request<CancelDeliveryRequest>,
    ) -> Result<Response<CancelDeliveryResponse>, Status> {
        let (caller, request) = authenticated(request)?;
        let tenant = caller.tenant.clone();
        let id = delivery_id("id", &request.id)?;
        match self
            .scheduler
            .cancel(caller.actor(), id)
            .await
            .map_err(ApiError::from)?
        {
            Ok(CancelResult::Cancelled(_)) => {}
            Ok(CancelResult::NotFound) => return Err(not_found(id).into()),
            Ok(CancelResult::Finished(state)) => {
                return Err(ApiError::FailedPrecondition(format!(
                    "delivery {id} is already {}; only pending deliveries can be cancelled",
                    state.as_str().replace('_', " ")
                ))
                .into());
            }
            Err(error) => return Err(ApiError::from(error).into()),
        }
        Ok(Response::new(CancelDeliveryResponse {
            delivery: Some(self.delivery(&tenant, id).await?),
        }))
    }

    async fn redrive_dead_letters(
        &self,
        request: Request<RedriveDeadLettersRequest>,
    ) -> Result<Response<RedriveDeadLettersResponse>, Status> {
        let (caller, request) = authenticated(request)?;
        let actor = caller.actor();
        let selection = filters::redrive_selection(&request)?;
        // Spawned, so a caller that goes away does not stop a redrive
        // between two of its batches.
        let (store, feed, scheduler, metrics) = (
            self.store.clone(),
            self.feed.clone(),
            self.scheduler.clone(),
            self.metrics.clone(),
        );
        let report = tokio::spawn(async move {
            store
                .redrive(&actor, &selection, request.dry_run, |redriven| {
                    if redriven.is_empty() {
                        return;
                    }
                    for outcome in redriven {
                        metrics.outcome(outcome.kind);
                    }
                    feed.committed();
                    scheduler.work_added();
                })
                .await
        })
        .await
        .map_err(|error| match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Cancelled: the runtime is shutting down.
            Err(_) => ApiError::ShuttingDown(ShuttingDown),
        })?
        .map_err(ApiError::from)?;
        Ok(Response::new(convert::redrive_report(report)))
    }

    async fn list_deliveries(
        &self,
        request: Request<ListDeliveriesRequest>,
    ) -> Result<Response<ListDeliveriesResponse>, Status> {
        let (Caller { tenant, .. }, request) = authenticated(request)?;
        let filter =
            filters::delivery_filter(&request, self.limits.input.max_idempotency_key_bytes)?;
        let page_size = page_size(request.page_size, &self.limits);
        let view = filters::view(request.view)?;
        let filters = filters::delivery_filter_text(&filter);
        let cursor = page_token::decode(Listing::Deliveries, &filters, &request.page_token)?;
        let mut page = Page::new(page_size, |delivery| delivery.created_at_ms);
        self.store
            .list_deliveries(
                &tenant,
                &filter,
                cursor,
                u64::from(page_size),
                view,
                |record| page.take(record),
            )
            .await
            .map_err(ApiError::from)?;
        let (deliveries, next_page_token) = page.finish(Listing::Deliveries, &filters);
        Ok(Response::new(ListDeliveriesResponse {
            deliveries,
            next_page_token,
        }))
    }

    async fn get_backlog(
        &self,
        request: Request<GetBacklogRequest>,
    ) -> Result<Response<GetBacklogResponse>, Status> {
        let (Caller { tenant, .. }, _) = authenticated(request)?;
        let backlog = self
            .store
            .tenant_backlog(&tenant)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(convert::backlog(backlog)))
    }
}
