//! `herald.v1.EventService`: publish events (checked against their type's
//! schema, stored with their deliveries through a group commit), look at
//! them, send them again, and keep the event type catalogue.

use herald_proto::v1::{
    CreateEventTypeRequest, CreateEventTypeResponse, DeleteEventTypeRequest,
    DeleteEventTypeResponse, GetEventRequest, GetEventResponse, GetEventTypeRequest,
    GetEventTypeResponse, ListEventTypesRequest, ListEventTypesResponse, ListEventsRequest,
    ListEventsResponse, PublishRequest, PublishResponse, ReplayEventRequest, ReplayEventResponse,
    UpdateEventTypeRequest, UpdateEventTypeResponse, event_service_server::EventService,
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    auth::{Caller, authenticated},
    endpoint_convert::{self as convert, description, event_type_name, json_schema},
    error::ApiError,
    filters::{page_size, uuid_field},
    page_token::{self, Listing},
    validate::{self, Limits, time_ms},
};
use crate::{
    endpoints::SchemaCache,
    metrics::Metrics,
    scheduler::SchedulerHandle,
    store::{EventPage, EventTypeChange, GroupCommit, NewEvent, PageCursor, Published, Store},
};

/// The payload's content type when the request gives none.
const DEFAULT_CONTENT_TYPE: &str = "application/json";
/// The fields `UpdateEventType` can change.
const UPDATABLE: [&str; 2] = ["description", "json_schema"];

/// The service's shared state.
#[derive(Clone)]
pub struct EventApi {
    store: Store,
    publishes: GroupCommit<NewEvent>,
    schemas: SchemaCache,
    scheduler: SchedulerHandle,
    metrics: Metrics,
    limits: Limits,
}

impl EventApi {
    /// A service over `store` that checks payloads against `schemas` and
    /// tells `scheduler` about new work; publishes share commits
    /// ([`GroupCommit`]).
    pub fn new(
        store: Store,
        schemas: SchemaCache,
        scheduler: SchedulerHandle,
        metrics: Metrics,
        limits: Limits,
    ) -> Self {
        Self {
            publishes: GroupCommit::start(store.clone()),
            store,
            schemas,
            scheduler,
            metrics,
            limits,
        }
    }

    /// Counts and wakes the scheduler for the deliveries `published` made.
    fn made(&self, published: &Published) {
        let made = published.deliveries.len() as u64;
        if published.created && made > 0 {
            self.metrics.enqueued(made);
            self.scheduler.work_added();
        }
    }
}

fn event_id(field: &'static str, raw: &str) -> Result<Uuid, ApiError> {
    uuid_field(field, raw, "an event id")
}

fn no_event(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("event {id} not found"))
}

fn no_event_type(name: &str) -> ApiError {
    ApiError::NotFound(format!(
        "event type {name:?} is not in the catalogue; `herald events types` lists it"
    ))
}

#[tonic::async_trait]
impl EventService for EventApi {
    async fn publish(
        &self,
        request: Request<PublishRequest>,
    ) -> Result<Response<PublishResponse>, Status> {
        let trace = validate::trace_context(request.metadata());
        let (Caller { tenant, .. }, request) = authenticated(request)?;
        let name = event_type_name("event_type", &request.event_type)?;
        validate::body_size("payload", request.payload.len(), &self.limits.input)?;
        let content_type = validate::content_type(request.content_type)?
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned());
        let idempotency_key = validate::non_empty(request.idempotency_key)
            .map(|key| validate::idempotency_key(key, self.limits.input.max_idempotency_key_bytes))
            .transpose()?;
        let max_attempts = validate::max_attempts(request.max_attempts, &self.limits)?;
        if let Some(schema) = self
            .schemas
            .schema(&tenant, name.as_str())
            .await
            .map_err(ApiError::from)?
        {
            schema
                .check(&request.payload)
                .map_err(|refused| ApiError::invalid("payload", refused.to_string()))?;
        }
        let published = self
            .publishes
            .write(NewEvent {
                tenant_id: tenant,
                event_type: name.as_str().to_owned(),
                payload: request.payload.into(),
                content_type: Some(content_type),
                idempotency_key,
                max_attempts,
                trace,
            })
            .await
            .map_err(ApiError::from)?;
        if published.created {
            self.metrics.published();
        }
        self.made(&published);
        let (event_id, created) = (published.event_id.to_string(), published.created);
        let (deliveries, skipped) = convert::fan_out(published);
        Ok(Response::new(PublishResponse {
            event_id,
            created,
            deliveries,
            skipped,
        }))
    }

    async fn get_event(
        &self,
        request: Request<GetEventRequest>,
    ) -> Result<Response<GetEventResponse>, Status> {
        let (Caller { tenant, .. }, request) = authenticated(request)?;
        let id = event_id("id", &request.id)?;
        let (event, deliveries, truncated) = self
            .store
            .get_event(&tenant, id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| no_event(id))?;
        Ok(Response::new(GetEventResponse {
            event: Some(convert::event(event, true)),
            deliveries: deliveries
                .into_iter()
                .map(convert::event_delivery)
                .collect(),
            deliveries_truncated: truncated,
        }))
    }

    async fn list_events(
        &self,
        request: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        let (Caller { tenant, .. }, request) = authenticated(request)?;
        let page_size = page_size(request.page_size, &self.limits);
        let event_type = validate::non_empty(request.event_type)
            .map(|raw| event_type_name("event_type", &raw))
            .transpose()?
            .map(|name| name.as_str().to_owned());
        let after = time_ms("created_after_time", request.created_after_time.as_ref())?;
        let before = time_ms("created_before_time", request.created_before_time.as_ref())?;
        let filters = serde_json::json!([event_type, after, before]).to_string();
        let cursor: Option<PageCursor> =
            page_token::decode(Listing::Events, &filters, &request.page_token)?;
        let page = EventPage {
            before: cursor.map(|cursor| (cursor.at_ms, cursor.id)),
            event_type,
            created_after_ms: after,
            created_before_ms: before,
            limit: u64::from(page_size),
        };
        let listed = self
            .store
            .list_events(&tenant, &page)
            .await
            .map_err(ApiError::from)?;
        let full = listed.len() == page_size as usize;
        let next = listed.last().filter(|_| full).map(|last| PageCursor {
            at_ms: last.created_at_ms,
            id: last.id,
        });
        Ok(Response::new(ListEventsResponse {
            next_page_token: page_token::next(Listing::Events, &filters, next.as_ref()),
            events: listed
                .into_iter()
                .map(|event| convert::event(event, false))
                .collect(),
        }))
    }

    async fn replay_event(
        &self,
        request: Request<ReplayEventRequest>,
    ) -> Result<Response<ReplayEventResponse>, Status> {
        let (caller, request) = authenticated(request)?;
        let id = event_id("id", &request.id)?;
        let endpoint = validate::non_empty(request.endpoint_id)
            .map(|raw| uuid_field("endpoint_id", &raw, "an endpoint id"))
            .transpose()?;
        let published = self
            .store
            .replay_event(
                &caller.actor(),
                id,
                endpoint,
                self.limits.default_max_attempts,
            )
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| match endpoint {
                Some(endpoint) => {
                    ApiError::NotFound(format!("event {id} or endpoint {endpoint} not found"))
                }
                None => no_event(id),
            })?;
        self.made(&published);
        let (deliveries, skipped) = convert::fan_out(published);
        Ok(Response::new(ReplayEventResponse {
            deliveries,
            skipped,
        }))
    }

    async fn create_event_type(
        &self,
        request: Request<CreateEventTypeRequest>,
    ) -> Result<Response<CreateEventTypeResponse>, Status> {
        let (caller, request) = authenticated(request)?;
        let given = request.event_type.unwrap_or_default();
        let name = event_type_name("event_type.name", &given.name)?;
        let described = description("event_type.description", given.description)?;
        let schema = json_schema(given.json_schema)?;
        let record = self
            .store
            .create_event_type(
                &caller.actor(),
                name.as_str(),
                &described,
                schema.as_deref(),
            )
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| {
                ApiError::AlreadyExists(format!(
                    "event type {name:?} is already in the catalogue; UpdateEventType changes it"
                ))
            })?;
        self.schemas.forget(&caller.tenant, name.as_str());
        Ok(Response::new(CreateEventTypeResponse {
            event_type: Some(convert::event_type(record)),
        }))
    }

    async fn get_event_type(
        &self,
        request: Request<GetEventTypeRequest>,
    ) -> Result<Response<GetEventTypeResponse>, Status> {
        let (Caller { tenant, .. }, request) = authenticated(request)?;
        let name = event_type_name("name", &request.name)?;
        let record = self
            .store
            .get_event_type(&tenant, name.as_str())
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| no_event_type(name.as_str()))?;
        Ok(Response::new(GetEventTypeResponse {
            event_type: Some(convert::event_type(record)),
        }))
    }

    async fn list_event_types(
        &self,
        request: Request<ListEventTypesRequest>,
    ) -> Result<Response<ListEventTypesResponse>, Status> {
        let (Caller { tenant, .. }, request) = authenticated(request)?;
        let page_size = page_size(request.page_size, &self.limits);
        let after: Option<String> =
            page_token::decode(Listing::EventTypes, "", &request.page_token)?;
        let listed = self
            .store
            .list_event_types(&tenant, after.as_deref(), u64::from(page_size))
            .await
            .map_err(ApiError::from)?;
        let full = listed.len() == page_size as usize;
        let next = listed.last().filter(|_| full).map(|last| last.name.clone());
        Ok(Response::new(ListEventTypesResponse {
            next_page_token: page_token::next(Listing::EventTypes, "", next.as_ref()),
            event_types: listed.into_iter().map(convert::event_type).collect(),
        }))
    }

    async fn update_event_type(
        &self,
        request: Request<UpdateEventTypeRequest>,
    ) -> Result<Response<UpdateEventTypeResponse>, Status> {
        let (caller, request) = authenticated(request)?;
        let given = request.event_type.unwrap_or_default();
        let name = event_type_name("event_type.name", &given.name)?;
        let paths = request
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        if paths.is_empty() {
            return Err(convert::empty_mask(&UPDATABLE).into());
        }
        let mut change = EventTypeChange::default();
        for path in &paths {
            match path.as_str() {
                "description" => {
                    change.description = Some(description(
                        "event_type.description",
                        given.description.clone(),
                    )?);
                }
                "json_schema" => change.json_schema = Some(json_schema(given.json_schema.clone())?),
                other => return Err(convert::unchangeable(other, &UPDATABLE).into()),
            }
        }
        let record = self
            .store
            .update_event_type(&caller.actor(), name.as_str(), &change)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| no_event_type(name.as_str()))?;
        self.schemas.forget(&caller.tenant, name.as_str());
        Ok(Response::new(UpdateEventTypeResponse {
            event_type: Some(convert::event_type(record)),
        }))
    }

    async fn delete_event_type(
        &self,
        request: Request<DeleteEventTypeRequest>,
    ) -> Result<Response<DeleteEventTypeResponse>, Status> {
        let (caller, request) = authenticated(request)?;
        let name = event_type_name("name", &request.name)?;
        let deleted = self
            .store
            .delete_event_type(&caller.actor(), name.as_str())
            .await
            .map_err(ApiError::from)?;
        self.schemas.forget(&caller.tenant, name.as_str());
        if !deleted {
            return Err(no_event_type(name.as_str()).into());
        }
        Ok(Response::new(DeleteEventTypeResponse {}))
    }
}
