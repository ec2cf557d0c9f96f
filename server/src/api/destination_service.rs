//! `herald.v1.DestinationService`: each RPC authenticates the caller,
//! parses the destination and the change, calls the store, and tells the
//! scheduler, the feed and the metrics what changed.

use herald_proto::v1::{
    self as proto, EnableDestinationRequest, EnableDestinationResponse, GetDestinationRequest,
    GetDestinationResponse, ListDestinationsRequest, ListDestinationsResponse,
    PauseDestinationRequest, PauseDestinationResponse, ResumeDestinationRequest,
    ResumeDestinationResponse, SetDestinationPolicyRequest, SetDestinationPolicyResponse,
    destination_service_server::DestinationService,
};
use tonic::{Request, Response, Status};

use super::{
    auth::{Caller, authenticated},
    destination_convert::{self as convert, destination},
    error::ApiError,
    filters::page_size,
    page_token::{self, Listing},
    validate::Limits,
};
use crate::{
    destinations::{policy::Policy, state::StateChange},
    domain::DestinationStatus,
    metrics::Metrics,
    outcomes::OutcomeFeed,
    scheduler::SchedulerHandle,
    store::{DestinationPage, Store, StoreError},
};

/// The service's shared state.
#[derive(Clone)]
pub struct DestinationApi {
    store: Store,
    feed: OutcomeFeed,
    scheduler: SchedulerHandle,
    metrics: Metrics,
    /// The configured policy, for what destinations do not set.
    defaults: Policy,
    limits: Limits,
}

impl DestinationApi {
    /// A service over `store` that tells `scheduler` when work may start,
    /// and `feed` and `metrics` of the events it records (the gate found
    /// each caller's tenant); `defaults` is the configured policy and
    /// `limits` bound page sizes.
    pub fn new(
        store: Store,
        feed: OutcomeFeed,
        scheduler: SchedulerHandle,
        metrics: Metrics,
        defaults: Policy,
        limits: Limits,
    ) -> Self {
        Self {
            store,
            feed,
            scheduler,
            metrics,
            defaults,
            limits,
        }
    }

    /// Makes `change` to the destination `raw` names for `caller`'s tenant.
    async fn change_state(
        &self,
        caller: &Caller,
        raw: &str,
        change: StateChange,
        reason: Option<&str>,
    ) -> Result<proto::Destination, ApiError> {
        let (destination, _) = destination(&caller.tenant, raw)?;
        let (record, event) = self
            .store
            .change_destination_state(
                &caller.actor(),
                &destination,
                change,
                reason,
                &self.defaults,
            )
            .await?;
        self.scheduler.destination_changed();
        self.feed.committed();
        self.metrics.outcome(event.kind);
        if change.to() == DestinationStatus::Active {
            self.scheduler.work_added();
        }
        Ok(convert::message(record))
    }
}

#[tonic::async_trait]
impl DestinationService for DestinationApi {
    async fn list_destinations(
        &self,
        request: Request<ListDestinationsRequest>,
    ) -> Result<Response<ListDestinationsResponse>, Status> {
        let (Caller { tenant, .. }, request) = authenticated(request)?;
        let page_size = page_size(request.page_size, &self.limits);
        let status = convert::status_filter(request.state)?;
        // The one filter, which page tokens are bound to.
        let filters = status.map_or("", |status| status.as_str());
        let page = DestinationPage {
            status,
            after: page_token::decode(Listing::Destinations, filters, &request.page_token)?,
            limit: u64::from(page_size),
        };
        let listed = self
            .store
            .list_destinations(&tenant, &page, &self.defaults)
            .await
            .map_err(ApiError::from)?;
        let full = listed.len() == page_size as usize;
        let after = listed
            .last()
            .filter(|_| full)
            .map(|last| last.destination.clone());
        let next_page_token = page_token::next(Listing::Destinations, filters, after.as_ref());
        Ok(Response::new(ListDestinationsResponse {
            destinations: listed.into_iter().map(convert::message).collect(),
            next_page_token,
        }))
    }

    async fn get_destination(
        &self,
        request: Request<GetDestinationRequest>,
    ) -> Result<Response<GetDestinationResponse>, Status> {
        let (Caller { tenant, .. }, request) = authenticated(request)?;
        let (destination, _) = destination(&tenant, &request.destination)?;
        let record = self
            .store
            .get_destination(&destination, &self.defaults)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| {
                ApiError::from(StoreError::DestinationNotFound(destination.destination))
            })?;
        Ok(Response::new(GetDestinationResponse {
            destination: Some(convert::message(record)),
        }))
    }

    async fn set_destination_policy(
        &self,
        request: Request<SetDestinationPolicyRequest>,
    ) -> Result<Response<SetDestinationPolicyResponse>, Status> {
        let (caller, request) = authenticated(request)?;
        let (destination, host) = destination(&caller.tenant, &request.destination)?;
        let update = convert::policy_update(&request)?;
        let record = self
            .store
            .set_destination_policy(
                &caller.actor(),
                &destination,
                &host,
                &update,
                &self.defaults,
            )
            .await
            .map_err(ApiError::from)?;
        self.scheduler.destination_changed();
        // A raised limit may let held work start.
        self.scheduler.work_added();
        Ok(Response::new(SetDestinationPolicyResponse {
            destination: Some(convert::message(record)),
        }))
    }

    async fn pause_destination(
        &self,
        request: Request<PauseDestinationRequest>,
    ) -> Result<Response<PauseDestinationResponse>, Status> {
        let (caller, request) = authenticated(request)?;
        let reason = convert::pause_reason(&request.reason)?;
        let destination = self
            .change_state(
                &caller,
                &request.destination,
                StateChange::Pause,
                Some(&reason),
            )
            .await?;
        Ok(Response::new(PauseDestinationResponse {
            destination: Some(destination),
        }))
    }

    async fn resume_destination(
        &self,
        request: Request<ResumeDestinationRequest>,
    ) -> Result<Response<ResumeDestinationResponse>, Status> {
        let (caller, request) = authenticated(request)?;
        let destination = self
            .change_state(&caller, &request.destination, StateChange::Resume, None)
            .await?;
        Ok(Response::new(ResumeDestinationResponse {
            destination: Some(destination),
        }))
    }

    async fn enable_destination(
        &self,
        request: Request<EnableDestinationRequest>,
    ) -> Result<Response<EnableDestinationResponse>, Status> {
        let (caller, request) = authenticated(request)?;
        let destination = self
            .change_state(&caller, &request.destination, StateChange::Enable, None)
            .await?;
        Ok(Response::new(EnableDestinationResponse {
            destination: Some(destination),
        }))
    }
}
