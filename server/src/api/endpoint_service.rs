//! `herald.v1.EndpointService`: each RPC authenticates the caller, checks
//! the request, calls the store, and tells the scheduler and the feed what
//! changed.

use std::time::Duration;

use herald_proto::v1::{
    self as proto, CreateEndpointRequest, CreateEndpointResponse, DeleteEndpointRequest,
    DeleteEndpointResponse, GetEndpointRequest, GetEndpointResponse, ListEndpointsRequest,
    ListEndpointsResponse, RecoverEndpointRequest, RecoverEndpointResponse,
    RotateEndpointSecretRequest, RotateEndpointSecretResponse, UpdateEndpointRequest,
    UpdateEndpointResponse, endpoint_service_server::EndpointService,
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    auth::{Caller, authenticated},
    destination_convert,
    endpoint_convert::{self as convert, description, subscription},
    error::ApiError,
    filters::{page_size, uuid_field},
    page_token::{self, Listing},
    validate::{self, Limits, time_ms},
};
use crate::{
    destinations::policy::Policy,
    domain::Destination,
    metrics::Metrics,
    outcomes::OutcomeFeed,
    scheduler::SchedulerHandle,
    secrets::Sealer,
    store::{
        EndpointChange, EndpointPage, EndpointRecord, NewEndpoint, Store, records::DestinationRef,
    },
    tenants::{Signer, SigningSecret},
};

/// How long a rotated-away secret keeps signing when the request does not
/// say.
const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);
/// The longest grace a rotation may ask for.
const MAX_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);
/// The fields `UpdateEndpoint` can change.
const UPDATABLE: [&str; 5] = ["url", "description", "event_types", "headers", "enabled"];

/// The service's shared state.
#[derive(Clone)]
pub struct EndpointApi {
    store: Store,
    sealer: Sealer,
    feed: OutcomeFeed,
    scheduler: SchedulerHandle,
    metrics: Metrics,
    /// The configured destination policy, for what destinations do not set.
    defaults: Policy,
    limits: Limits,
}

impl EndpointApi {
    /// A service over `store` that seals endpoints' secrets with `sealer`,
    /// tells `scheduler` when work may start and `feed` and `metrics` of
    /// the outcomes it records; `defaults` is the configured destination
    /// policy and `limits` bound what requests carry.
    pub fn new(
        store: Store,
        sealer: Sealer,
        feed: OutcomeFeed,
        scheduler: SchedulerHandle,
        metrics: Metrics,
        defaults: Policy,
        limits: Limits,
    ) -> Self {
        Self {
            store,
            sealer,
            feed,
            scheduler,
            metrics,
            defaults,
            limits,
        }
    }

    /// Applies `policy`, if given, to `destination` for `caller`.
    async fn apply_policy(
        &self,
        caller: &Caller,
        destination: &Destination,
        policy: Option<&proto::EndpointPolicy>,
    ) -> Result<(), ApiError> {
        let Some(policy) = policy else {
            return Ok(());
        };
        let update = convert::policy_update(policy)?;
        self.store
            .set_destination_policy(
                &caller.actor(),
                &destination_ref(&caller.tenant, &destination.key),
                &destination.host,
                &update,
                &self.defaults,
            )
            .await?;
        self.scheduler.destination_changed();
        self.scheduler.work_added();
        Ok(())
    }

    /// `record`'s destination as the API shows it.
    async fn destination_of(
        &self,
        record: &EndpointRecord,
    ) -> Result<Option<proto::Destination>, ApiError> {
        let destination = destination_ref(&record.tenant_id, &record.destination);
        Ok(self
            .store
            .get_destination(&destination, &self.defaults)
            .await?
            .map(destination_convert::message))
    }

    /// A new secret for endpoint `id` of `tenant`: shown once, stored sealed.
    fn new_secret(&self, tenant: &str, id: Uuid) -> (SigningSecret, crate::secrets::Sealed) {
        let secret = SigningSecret::generate();
        let sealed = secret.seal(
            &self.sealer,
            &Signer::Endpoint {
                tenant_id: tenant.to_owned(),
                id,
            },
        );
        (secret, sealed)
    }
}

fn destination_ref(tenant: &str, key: &str) -> DestinationRef {
    DestinationRef {
        tenant_id: tenant.to_owned(),
        destination: key.to_owned(),
    }
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!(
        "endpoint {id} not found; `herald endpoints list` shows them"
    ))
}

fn endpoint_id(raw: &str) -> Result<Uuid, ApiError> {
    uuid_field("id", raw, "an endpoint id")
}

#[tonic::async_trait]
impl EndpointService for EndpointApi {
    async fn create_endpoint(
        &self,
        request: Request<CreateEndpointRequest>,
    ) -> Result<Response<CreateEndpointResponse>, Status> {
        let (caller, request) = authenticated(request)?;
        let (url, destination) = validate::url(&request.url, &self.limits)?;
        let headers = validate::headers(
            request
                .headers
                .into_iter()
                .map(|header| (header.name, header.value))
                .collect(),
            &self.limits.input,
        )?;
        let description = description("description", request.description)?;
        let subscription = subscription(&request.event_types)?;
        // The policy first: one out of range refuses the whole request
        // before the endpoint exists.
        self.apply_policy(&caller, &destination, request.policy.as_ref())
            .await?;
        let id = Uuid::now_v7();
        let (secret, sealed) = self.new_secret(&caller.tenant, id);
        let new = NewEndpoint {
            id,
            url,
            destination,
            description,
            headers,
            subscription,
            enabled: !request.disabled,
            secret: sealed,
        };
        let record = self
            .store
            .create_endpoint(&caller.actor(), &new)
            .await
            .map_err(ApiError::from)?;
        let destination = self.destination_of(&record).await?;
        Ok(Response::new(CreateEndpointResponse {
            endpoint: Some(convert::endpoint(record)),
            signing_secret: secret.expose().to_owned(),
            destination,
        }))
    }

    async fn get_endpoint(
        &self,
        request: Request<GetEndpointRequest>,
    ) -> Result<Response<GetEndpointResponse>, Status> {
        let (Caller { tenant, .. }, request) = authenticated(request)?;
        let id = endpoint_id(&request.id)?;
        let record = self
            .store
            .get_endpoint(&tenant, id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| not_found(id))?;
        let destination = self.destination_of(&record).await?;
        Ok(Response::new(GetEndpointResponse {
            endpoint: Some(convert::endpoint(record)),
            destination,
        }))
    }

    async fn list_endpoints(
        &self,
        request: Request<ListEndpointsRequest>,
    ) -> Result<Response<ListEndpointsResponse>, Status> {
        let (Caller { tenant, .. }, request) = authenticated(request)?;
        let page_size = page_size(request.page_size, &self.limits);
        let event_type = validate::non_empty(request.event_type)
            .map(|raw| convert::event_type_name("event_type", &raw))
            .transpose()?
            .map(|name| name.as_str().to_owned());
        // The filters, which page tokens are bound to.
        let filters = serde_json::json!([event_type, request.enabled]).to_string();
        let page = EndpointPage {
            after: page_token::decode(Listing::Endpoints, &filters, &request.page_token)?,
            limit: u64::from(page_size),
            enabled: request.enabled,
            event_type,
        };
        let listed = self
            .store
            .list_endpoints(&tenant, &page)
            .await
            .map_err(ApiError::from)?;
        let full = listed.len() == page_size as usize;
        let after = listed.last().filter(|_| full).map(|last| last.id);
        Ok(Response::new(ListEndpointsResponse {
            next_page_token: page_token::next(Listing::Endpoints, &filters, after.as_ref()),
            endpoints: listed.into_iter().map(convert::endpoint).collect(),
        }))
    }

    async fn update_endpoint(
        &self,
        request: Request<UpdateEndpointRequest>,
    ) -> Result<Response<UpdateEndpointResponse>, Status> {
        let (caller, request) = authenticated(request)?;
        let endpoint = request.endpoint.unwrap_or_default();
        let id = uuid_field("endpoint.id", &endpoint.id, "an endpoint id")?;
        let paths = request
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        if paths.is_empty() && request.policy.is_none() {
            return Err(convert::empty_mask(&UPDATABLE).into());
        }
        let mut change = EndpointChange::default();
        for path in &paths {
            match path.as_str() {
                "url" => change.url = Some(validate::url(&endpoint.url, &self.limits)?),
                "description" => {
                    change.description = Some(description(
                        "endpoint.description",
                        endpoint.description.clone(),
                    )?);
                }
                "event_types" => change.subscription = Some(subscription(&endpoint.event_types)?),
                "headers" => {
                    change.headers = Some(validate::headers(
                        endpoint
                            .headers
                            .iter()
                            .map(|header| (header.name.clone(), header.value.clone()))
                            .collect(),
                        &self.limits.input,
                    )?);
                }
                "enabled" => change.enabled = Some(endpoint.enabled),
                other => return Err(convert::unchangeable(other, &UPDATABLE).into()),
            }
        }
        let current = self
            .store
            .get_endpoint(&caller.tenant, id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| not_found(id))?;
        let destination = match &change.url {
            Some((_, destination)) => destination.clone(),
            None => Destination {
                key: current.destination.clone(),
                host: current.host.clone(),
            },
        };
        self.apply_policy(&caller, &destination, request.policy.as_ref())
            .await?;
        let record = if paths.is_empty() {
            Some(current)
        } else {
            self.store
                .update_endpoint(&caller.actor(), id, &change)
                .await
                .map_err(ApiError::from)?
        };
        let record = record.ok_or_else(|| not_found(id))?;
        let destination = self.destination_of(&record).await?;
        Ok(Response::new(UpdateEndpointResponse {
            endpoint: Some(convert::endpoint(record)),
            destination,
        }))
    }

    async fn delete_endpoint(
        &self,
        request: Request<DeleteEndpointRequest>,
    ) -> Result<Response<DeleteEndpointResponse>, Status> {
        let (caller, request) = authenticated(request)?;
        let id = endpoint_id(&request.id)?;
        let cancelled = self
            .store
            .delete_endpoint(&caller.actor(), id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| not_found(id))?;
        if !cancelled.is_empty() {
            self.feed.committed();
            for outcome in &cancelled {
                self.metrics.outcome(outcome.kind);
            }
        }
        Ok(Response::new(DeleteEndpointResponse {
            cancelled_count: cancelled.len() as u64,
        }))
    }

    async fn rotate_endpoint_secret(
        &self,
        request: Request<RotateEndpointSecretRequest>,
    ) -> Result<Response<RotateEndpointSecretResponse>, Status> {
        let (caller, request) = authenticated(request)?;
        let id = endpoint_id(&request.id)?;
        let grace = match request.grace {
            None => DEFAULT_GRACE,
            Some(grace) => {
                let grace = Duration::try_from(grace)
                    .map_err(|_| ApiError::invalid("grace", "must not be negative"))?;
                if grace > MAX_GRACE {
                    return Err(ApiError::invalid("grace", "may be at most 30 days").into());
                }
                grace
            }
        };
        let (secret, sealed) = self.new_secret(&caller.tenant, id);
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        let record = self
            .store
            .rotate_endpoint_secret(&caller.actor(), id, &sealed, grace_ms)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| not_found(id))?;
        Ok(Response::new(RotateEndpointSecretResponse {
            endpoint: Some(convert::endpoint(record)),
            signing_secret: secret.expose().to_owned(),
        }))
    }

    async fn recover_endpoint(
        &self,
        request: Request<RecoverEndpointRequest>,
    ) -> Result<Response<RecoverEndpointResponse>, Status> {
        let (caller, request) = authenticated(request)?;
        let id = endpoint_id(&request.id)?;
        let since_ms = time_ms("since_time", request.since_time.as_ref())?.ok_or_else(|| {
            ApiError::invalid(
                "since_time",
                "is required: events whose delivery to the endpoint was made since then are sent again",
            )
        })?;
        let recovered = self
            .store
            .recover_endpoint(
                &caller.actor(),
                id,
                since_ms,
                request.dry_run,
                self.limits.default_max_attempts,
            )
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| not_found(id))?;
        if !request.dry_run && recovered > 0 {
            self.metrics.enqueued(recovered);
            self.scheduler.work_added();
        }
        Ok(Response::new(RecoverEndpointResponse {
            recovered_count: recovered,
        }))
    }
}
