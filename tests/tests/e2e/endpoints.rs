//! Endpoints and events: a publish reaches every enabled endpoint whose
//! subscription matches its type (exact names, prefixes, every type) and
//! no other; each endpoint's deliveries are signed with its own secret,
//! and with both during a rotation; tenants are walled off; a publish is
//! idempotent under concurrent retries; a schema refuses what does not
//! match; events are replayed and endpoints recovered.

use std::time::{Duration, SystemTime};

use futures::StreamExt;
use herald_client::webhook::{self, Secret};
use herald_proto::v1::{
    CreateEndpointRequest, CreateEventTypeRequest, DeleteEndpointRequest, DeliveryState, Event,
    EventDelivery, EventType, GetEndpointRequest, GetEventRequest, GetEventResponse,
    ListEndpointsRequest, ListEventsRequest, OutcomeKind, PauseDestinationRequest, PublishRequest,
    PublishResponse, RecoverEndpointRequest, ReplayEventRequest, RotateEndpointSecretRequest,
    UpdateEndpointRequest, UpdateEventTypeRequest, WatchOutcomesRequest,
    destination_service_client::DestinationServiceClient,
    endpoint_service_client::EndpointServiceClient, event_service_client::EventServiceClient,
};
use herald_tests::{
    Backend, PATIENCE, Receiver, Recorded, Reply, TestHerald, create_tenant, on_both_backends,
};
use tonic::{Code, Request, Status, transport::Channel};
use tonic_types::StatusExt;

use crate::HERALD;

on_both_backends!(
    a_publish_reaches_matching_enabled_endpoints_only,
    each_endpoint_signs_with_its_own_secret_and_rotation_signs_with_both,
    endpoints_events_and_replays_are_walled_off_by_tenant,
    concurrent_retries_of_a_publish_store_one_event,
    a_schema_refuses_payloads_that_do_not_match,
    replay_and_recovery_send_events_again,
    pending_deliveries_follow_a_changed_url_and_headers
);

/// The endpoint and event services, as one caller (a tenant's key, or
/// none while the server is open).
struct Api {
    endpoints: EndpointServiceClient<Channel>,
    events: EventServiceClient<Channel>,
    deliveries: herald_proto::v1::delivery_service_client::DeliveryServiceClient<Channel>,
    key: Option<String>,
}

impl Api {
    async fn connect(herald: &TestHerald, key: Option<&str>) -> Self {
        let channel = Channel::from_shared(format!("http://{}", herald.addr()))
            .expect("a URL")
            .connect()
            .await
            .expect("connect");
        Self {
            endpoints: EndpointServiceClient::new(channel.clone()),
            events: EventServiceClient::new(channel.clone()),
            deliveries: herald_proto::v1::delivery_service_client::DeliveryServiceClient::new(
                channel,
            ),
            key: key.map(str::to_owned),
        }
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(key) = &self.key {
            let value = format!("Bearer {key}").parse().expect("ascii");
            request.metadata_mut().insert("authorization", value);
        }
        request
    }

    /// Creates an endpoint at `url` for `event_types`; its id and secret.
    async fn endpoint(&self, url: String, event_types: &[&str]) -> (String, Secret) {
        let created = self
            .endpoints
            .clone()
            .create_endpoint(self.request(CreateEndpointRequest {
                url,
                event_types: event_types.iter().map(|t| (*t).to_owned()).collect(),
                ..CreateEndpointRequest::default()
            }))
            .await
            .expect("create endpoint")
            .into_inner();
        let secret = created.signing_secret.parse().expect("a whsec_ secret");
        (created.endpoint.expect("endpoint").id, secret)
    }

    async fn publish(&self, request: PublishRequest) -> Result<PublishResponse, Status> {
        self.events
            .clone()
            .publish(self.request(request))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn publish_json(&self, event_type: &str, payload: &str) -> PublishResponse {
        self.publish(PublishRequest {
            event_type: event_type.to_owned(),
            payload: payload.as_bytes().to_vec(),
            ..PublishRequest::default()
        })
        .await
        .expect("publish")
    }

    async fn get_event(&self, id: &str) -> Result<GetEventResponse, Status> {
        self.events
            .clone()
            .get_event(self.request(GetEventRequest { id: id.to_owned() }))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Waits until every delivery of event `id` has finished.
    async fn settled(&self, id: &str) -> GetEventResponse {
        tokio::time::timeout(PATIENCE, async {
            loop {
                let event = self.get_event(id).await.expect("get event");
                if event
                    .deliveries
                    .iter()
                    .all(|d| d.state() != DeliveryState::Pending)
                {
                    return event;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("event {id} did not settle"))
    }
}

/// Asserts that a call was answered NOT_FOUND.
fn not_found<T: std::fmt::Debug>(result: Result<tonic::Response<T>, Status>) {
    assert_eq!(result.expect_err("refused").code(), Code::NotFound);
}

/// The endpoints `deliveries` went to, sorted.
fn endpoints_of(deliveries: &[EventDelivery]) -> Vec<String> {
    let mut ids: Vec<String> = deliveries.iter().map(|d| d.endpoint_id.clone()).collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// The one request `path` got for delivery `id`.
fn received(receiver: &Receiver, path: &str, id: &str) -> Recorded {
    let seen: Vec<Recorded> = receiver
        .requests(path)
        .into_iter()
        .filter(|r| r.header("webhook-id") == id)
        .collect();
    assert_eq!(seen.len(), 1, "{path} got {} requests for {id}", seen.len());
    seen.into_iter().next().expect("one")
}

async fn a_publish_reaches_matching_enabled_endpoints_only(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let api = Api::connect(&herald, None).await;

    // An event no endpoint wants is stored, and answered as such.
    let unwanted = api.publish_json("order.created", "{}").await;
    assert!(unwanted.created && unwanted.deliveries.is_empty());
    let stored = api.get_event(&unwanted.event_id).await.expect("get event");
    assert_eq!(stored.event.expect("event").event_type, "order.created");
    assert!(stored.deliveries.is_empty());

    let (exact, _) = api
        .endpoint(receiver.url("/exact"), &["order.created"])
        .await;
    let (prefix, _) = api.endpoint(receiver.url("/prefix"), &["order.*"]).await;
    let (every, _) = api.endpoint(receiver.url("/every"), &[]).await;
    let (invoices, _) = api
        .endpoint(receiver.url("/invoices"), &["invoice.paid"])
        .await;
    let (disabled, _) = api.endpoint(receiver.url("/disabled"), &["order.*"]).await;
    api.endpoints
        .clone()
        .update_endpoint(api.request(UpdateEndpointRequest {
            endpoint: Some(herald_proto::v1::Endpoint {
                id: disabled.clone(),
                enabled: false,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["enabled".into()],
            }),
            policy: None,
        }))
        .await
        .expect("disable");
    // One that is deleted with a delivery in flight: it is cancelled.
    receiver.hold("/deleted");
    let (deleted, _) = api.endpoint(receiver.url("/deleted"), &["order.*"]).await;
    let before = api.publish_json("order.shipped", r#"{"n":0}"#).await;
    assert_eq!(
        endpoints_of(&before.deliveries),
        sorted(vec![prefix.clone(), every.clone(), deleted.clone()])
    );
    receiver.wait_for("/deleted", 1).await;
    let removed = api
        .endpoints
        .clone()
        .delete_endpoint(api.request(DeleteEndpointRequest {
            id: deleted.clone(),
        }))
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(removed.cancelled_count, 1);
    receiver.open_gate();
    let settled = api.settled(&before.event_id).await;
    let state = |endpoint: &str| {
        settled
            .deliveries
            .iter()
            .find(|d| d.endpoint_id == endpoint)
            .expect("a delivery")
            .state()
    };
    assert_eq!(state(&deleted), DeliveryState::Cancelled);
    assert_eq!(state(&prefix), DeliveryState::Succeeded);

    let order = api.publish_json("order.created", r#"{"n":1}"#).await;
    assert_eq!(
        endpoints_of(&order.deliveries),
        sorted(vec![exact.clone(), prefix.clone(), every.clone()]),
        "exact, prefix and every-type endpoints; not the disabled, deleted or invoice ones"
    );
    let invoice = api.publish_json("invoice.paid", r#"{"n":2}"#).await;
    assert_eq!(
        endpoints_of(&invoice.deliveries),
        sorted(vec![every.clone(), invoices.clone()])
    );
    api.settled(&order.event_id).await;
    api.settled(&invoice.event_id).await;

    // Each receiver got its own delivery: its id is the webhook-id, and the
    // event's type comes along.
    let mut seen_ids = Vec::new();
    for (path, delivery) in [
        ("/exact", &order.deliveries),
        ("/prefix", &order.deliveries),
        ("/every", &order.deliveries),
    ] {
        let endpoint = match path {
            "/exact" => &exact,
            "/prefix" => &prefix,
            _ => &every,
        };
        let id = &delivery
            .iter()
            .find(|d| &d.endpoint_id == endpoint)
            .expect("a delivery")
            .delivery_id;
        let seen = received(&receiver, path, id);
        assert_eq!(seen.header("herald-event-type"), "order.created");
        assert_eq!(&seen.body[..], br#"{"n":1}"#);
        assert_eq!(seen.header("content-type"), "application/json");
        seen_ids.push(id.clone());
    }
    seen_ids.dedup();
    assert_eq!(seen_ids.len(), 3, "a webhook-id per endpoint");
    assert!(receiver.requests("/disabled").is_empty());
    assert_eq!(
        receiver.requests("/deleted").len(),
        1,
        "only the cancelled one"
    );

    // The delivery shows where it came from; the outcome stream filters by
    // endpoint and by event type.
    let delivery = herald.get(&order.deliveries[0].delivery_id).await;
    assert_eq!(delivery.event_id, order.event_id);
    assert_eq!(delivery.event_type, "order.created");
    // The first `count` succeeded outcomes `filter` lets through, in feed
    // order: a filter that let others through would show them among these.
    let outcomes = |filter: WatchOutcomesRequest, count: usize| {
        let api = &api;
        async move {
            let mut stream = api
                .deliveries
                .clone()
                .watch_outcomes(api.request(WatchOutcomesRequest {
                    start: Some(herald_proto::v1::watch_outcomes_request::Start::FromOldest(
                        true,
                    )),
                    kinds: vec![OutcomeKind::Succeeded.into()],
                    ..filter
                }))
                .await
                .expect("watch")
                .into_inner();
            let mut seen = Vec::new();
            while seen.len() < count {
                let next = tokio::time::timeout(PATIENCE, stream.next())
                    .await
                    .expect("an outcome in time")
                    .expect("stream open");
                seen.push(next.expect("outcome").outcome.expect("outcome"));
            }
            seen
        }
    };
    let at_every = outcomes(
        WatchOutcomesRequest {
            endpoint_id: every.clone(),
            ..Default::default()
        },
        3,
    )
    .await;
    assert!(at_every.iter().all(|o| o.endpoint_id == every));
    let invoiced = outcomes(
        WatchOutcomesRequest {
            event_type: "invoice.paid".into(),
            ..Default::default()
        },
        2,
    )
    .await;
    assert!(invoiced.iter().all(|o| o.event_type == "invoice.paid"));

    // Listings filter by event type, and by enabled.
    let listed = api
        .endpoints
        .clone()
        .list_endpoints(api.request(ListEndpointsRequest {
            event_type: "order.created".into(),
            enabled: Some(true),
            ..Default::default()
        }))
        .await
        .expect("list")
        .into_inner();
    let listed: Vec<String> = listed.endpoints.into_iter().map(|e| e.id).collect();
    assert_eq!(sorted(listed), sorted(vec![exact, prefix, every]));
    let events = api
        .events
        .clone()
        .list_events(api.request(ListEventsRequest {
            event_type: "order.created".into(),
            ..Default::default()
        }))
        .await
        .expect("list events")
        .into_inner()
        .events;
    let listed: Vec<&str> = events.iter().map(|e: &Event| e.id.as_str()).collect();
    assert_eq!(
        listed,
        [order.event_id.as_str(), unwanted.event_id.as_str()]
    );
    herald.stop().await;
}

async fn each_endpoint_signs_with_its_own_secret_and_rotation_signs_with_both(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let api = Api::connect(&herald, None).await;
    let (a, first) = api.endpoint(receiver.url("/a"), &["user.*"]).await;
    let (_, b_secret) = api.endpoint(receiver.url("/b"), &["user.*"]).await;
    let delivered = |path: &'static str, published: PublishResponse, endpoint: Option<String>| {
        let receiver = &receiver;
        let api = &api;
        async move {
            api.settled(&published.event_id).await;
            let id = &published
                .deliveries
                .iter()
                .find(|d| endpoint.as_ref().is_none_or(|e| &d.endpoint_id == e))
                .expect("a delivery")
                .delivery_id;
            received(receiver, path, id)
        }
    };
    let published = api.publish_json("user.created", r#"{"id":1}"#).await;
    let to_a = delivered("/a", published.clone(), Some(a.clone())).await;
    webhook::verify(&first, &to_a.headers, &to_a.body).expect("a's secret verifies a's");
    assert_eq!(
        webhook::verify(&b_secret, &to_a.headers, &to_a.body),
        Err(webhook::VerifyError::NoMatchingSignature),
        "endpoints have their own secrets"
    );
    let to_b = {
        let b_delivery = published
            .deliveries
            .iter()
            .find(|d| d.endpoint_id != a)
            .expect("b's delivery");
        received(&receiver, "/b", &b_delivery.delivery_id)
    };
    webhook::verify(&b_secret, &to_b.headers, &to_b.body).expect("b's secret verifies b's");

    let rotate = |grace: Duration| {
        let api = &api;
        let a = a.clone();
        async move {
            let rotated = api
                .endpoints
                .clone()
                .rotate_endpoint_secret(api.request(RotateEndpointSecretRequest {
                    id: a,
                    grace: Some(grace.try_into().expect("a duration")),
                }))
                .await
                .expect("rotate")
                .into_inner();
            let secret: Secret = rotated.signing_secret.parse().expect("whsec_");
            (secret, rotated.endpoint.expect("endpoint"))
        }
    };
    let (second, rotated) = rotate(Duration::from_secs(3600)).await;
    assert!(rotated.previous_secret_expire_time.is_some());
    let published = api.publish_json("user.updated", r#"{"id":1}"#).await;
    let seen = delivered("/a", published, Some(a.clone())).await;
    assert_eq!(seen.header("webhook-signature").split(' ').count(), 2);
    for secret in [&first, &second] {
        webhook::verify(secret, &seen.headers, &seen.body).expect("both verify in the window");
    }
    let (third, _) = rotate(Duration::ZERO).await;
    let published = api.publish_json("user.deleted", r#"{"id":1}"#).await;
    let seen = delivered("/a", published, Some(a.clone())).await;
    webhook::verify(&third, &seen.headers, &seen.body).expect("the new secret verifies");
    assert_eq!(
        webhook::verify(&second, &seen.headers, &seen.body),
        Err(webhook::VerifyError::NoMatchingSignature)
    );
    herald.stop().await;
}

async fn endpoints_events_and_replays_are_walled_off_by_tenant(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let alpha_key = create_tenant(HERALD, herald.database_url(), "alpha").api_key;
    let beta_key = create_tenant(HERALD, herald.database_url(), "beta").api_key;
    let alpha = Api::connect(&herald, Some(&alpha_key)).await;
    let beta = Api::connect(&herald, Some(&beta_key)).await;
    let (alpha_endpoint, _) = alpha.endpoint(receiver.url("/alpha"), &[]).await;
    let (beta_endpoint, _) = beta.endpoint(receiver.url("/beta"), &[]).await;
    let published = alpha.publish_json("order.created", "{}").await;
    assert_eq!(
        endpoints_of(&published.deliveries),
        std::slice::from_ref(&alpha_endpoint)
    );
    alpha.settled(&published.event_id).await;

    let mut endpoints = beta.endpoints.clone();
    not_found(
        endpoints
            .get_endpoint(beta.request(GetEndpointRequest {
                id: alpha_endpoint.clone(),
            }))
            .await,
    );
    not_found(
        endpoints
            .delete_endpoint(beta.request(DeleteEndpointRequest {
                id: alpha_endpoint.clone(),
            }))
            .await,
    );
    not_found(
        endpoints
            .rotate_endpoint_secret(beta.request(RotateEndpointSecretRequest {
                id: alpha_endpoint.clone(),
                grace: None,
            }))
            .await,
    );
    not_found(
        endpoints
            .recover_endpoint(beta.request(RecoverEndpointRequest {
                id: alpha_endpoint.clone(),
                since_time: Some(prost_types::Timestamp::default()),
                dry_run: true,
            }))
            .await,
    );
    not_found(
        endpoints
            .update_endpoint(beta.request(UpdateEndpointRequest {
                endpoint: Some(herald_proto::v1::Endpoint {
                    id: alpha_endpoint.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["enabled".into()],
                }),
                policy: None,
            }))
            .await,
    );
    let listed = endpoints
        .list_endpoints(beta.request(ListEndpointsRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .endpoints;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, beta_endpoint);
    assert_eq!(
        beta.get_event(&published.event_id)
            .await
            .expect_err("hidden")
            .code(),
        Code::NotFound
    );
    let events = beta
        .events
        .clone()
        .list_events(beta.request(ListEventsRequest::default()))
        .await
        .expect("list events")
        .into_inner()
        .events;
    assert!(events.is_empty(), "{events:?}");
    // Replays: alpha's event cannot be sent by beta, not even to beta's
    // own endpoint, and alpha cannot send to beta's endpoint.
    for (api, event, endpoint) in [
        (&beta, &published.event_id, String::new()),
        (&beta, &published.event_id, beta_endpoint.clone()),
        (&alpha, &published.event_id, beta_endpoint.clone()),
    ] {
        let replayed = api
            .events
            .clone()
            .replay_event(api.request(ReplayEventRequest {
                id: event.clone(),
                endpoint_id: endpoint,
            }))
            .await;
        assert_eq!(replayed.expect_err("refused").code(), Code::NotFound);
    }
    // Beta's publish reaches beta's endpoint only, though alpha's takes
    // every type too.
    let own = beta.publish_json("order.created", "{}").await;
    assert_eq!(endpoints_of(&own.deliveries), [beta_endpoint]);
    beta.settled(&own.event_id).await;
    assert_eq!(receiver.requests("/alpha").len(), 1);
    herald.stop().await;
}

async fn concurrent_retries_of_a_publish_store_one_event(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let api = Api::connect(&herald, None).await;
    api.endpoint(receiver.url("/one"), &["payment.*"]).await;
    api.endpoint(receiver.url("/two"), &["payment.settled"])
        .await;
    let request = PublishRequest {
        event_type: "payment.settled".into(),
        payload: br#"{"amount":5}"#.to_vec(),
        idempotency_key: "payment-77".into(),
        ..PublishRequest::default()
    };
    let retries = futures::future::join_all((0..8).map(|_| api.publish(request.clone()))).await;
    let answers: Vec<PublishResponse> = retries
        .into_iter()
        .map(|answer| answer.expect("publish"))
        .collect();
    assert_eq!(
        answers.iter().filter(|a| a.created).count(),
        1,
        "one retry created it"
    );
    for answer in &answers {
        assert_eq!(answer.event_id, answers[0].event_id);
        assert_eq!(
            sorted(
                answer
                    .deliveries
                    .iter()
                    .map(|d| d.delivery_id.clone())
                    .collect()
            ),
            sorted(
                answers[0]
                    .deliveries
                    .iter()
                    .map(|d| d.delivery_id.clone())
                    .collect()
            ),
        );
    }
    assert_eq!(answers[0].deliveries.len(), 2);
    api.settled(&answers[0].event_id).await;
    assert_eq!(receiver.requests("/one").len(), 1);
    assert_eq!(receiver.requests("/two").len(), 1);

    let changed = api
        .publish(PublishRequest {
            payload: br#"{"amount":6}"#.to_vec(),
            ..request
        })
        .await
        .expect_err("a different request under a used key");
    assert_eq!(changed.code(), Code::AlreadyExists);
    herald.stop().await;
}

async fn a_schema_refuses_payloads_that_do_not_match(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let api = Api::connect(&herald, None).await;
    api.endpoint(receiver.url("/orders"), &["order.*"]).await;
    let schema = r#"{"type":"object","required":["id","amount"],
        "properties":{"id":{"type":"string"},"amount":{"type":"integer","minimum":1}}}"#;
    let create = |schema: &str| {
        let api = &api;
        let schema = schema.to_owned();
        async move {
            api.events
                .clone()
                .create_event_type(api.request(CreateEventTypeRequest {
                    event_type: Some(EventType {
                        name: "order.created".into(),
                        description: "A customer placed an order".into(),
                        json_schema: schema,
                        ..Default::default()
                    }),
                }))
                .await
        }
    };
    let refused = create(r#"{"type": 12}"#).await.expect_err("not a schema");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().starts_with("event_type.json_schema: "),
        "{refused:?}"
    );
    create(schema).await.expect("create the type");
    assert_eq!(
        create(schema).await.expect_err("exists").code(),
        Code::AlreadyExists
    );

    let publish = |payload: &'static str| api.publish_json_result("order.created", payload);
    let mismatch = publish(r#"{"id":"o-1","amount":0}"#)
        .await
        .expect_err("amount below the minimum");
    assert_eq!(mismatch.code(), Code::InvalidArgument);
    assert!(
        mismatch.message().contains("\"/amount\""),
        "names the failing path: {}",
        mismatch.message()
    );
    let details = mismatch.get_error_details();
    let violation = &details
        .bad_request()
        .expect("a BadRequest")
        .field_violations[0];
    assert_eq!(violation.field, "payload");
    let not_json = publish("amount=5").await.expect_err("not JSON");
    assert_eq!(not_json.code(), Code::InvalidArgument);
    let accepted = publish(r#"{"id":"o-1","amount":5}"#)
        .await
        .expect("a matching payload");
    assert_eq!(accepted.deliveries.len(), 1);
    // Types without a schema, or not in the catalogue, are not checked.
    publish_unchecked(&api, "order.cancelled").await;

    // Without its schema the type takes anything.
    api.events
        .clone()
        .update_event_type(api.request(UpdateEventTypeRequest {
            event_type: Some(EventType {
                name: "order.created".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["json_schema".into()],
            }),
        }))
        .await
        .expect("remove the schema");
    publish(r#"{"amount":0}"#)
        .await
        .expect("no schema, no check");
    herald.stop().await;
}

async fn publish_unchecked(api: &Api, event_type: &str) {
    api.publish_json_result(event_type, "not json at all")
        .await
        .expect("an unchecked type takes any payload");
}

impl Api {
    async fn publish_json_result(
        &self,
        event_type: &str,
        payload: &str,
    ) -> Result<PublishResponse, Status> {
        self.publish(PublishRequest {
            event_type: event_type.to_owned(),
            payload: payload.as_bytes().to_vec(),
            ..PublishRequest::default()
        })
        .await
    }
}

async fn replay_and_recovery_send_events_again(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let api = Api::connect(&herald, None).await;
    let start = SystemTime::now() - Duration::from_secs(1);
    // The broken endpoint answers 404: each delivery is dead-lettered.
    receiver.script("/broken", (0..3).map(|_| Reply::Status(404)));
    let (broken, _) = api.endpoint(receiver.url("/broken"), &["sync.*"]).await;
    let (healthy, _) = api.endpoint(receiver.url("/healthy"), &["sync.*"]).await;
    let mut events = Vec::new();
    for n in 0..3 {
        let published = api
            .publish_json("sync.done", &format!(r#"{{"n":{n}}}"#))
            .await;
        api.settled(&published.event_id).await;
        events.push(published);
    }
    let recover = |dry_run: bool| {
        let api = &api;
        let broken = broken.clone();
        async move {
            api.endpoints
                .clone()
                .recover_endpoint(api.request(RecoverEndpointRequest {
                    id: broken,
                    since_time: Some(start.into()),
                    dry_run,
                }))
                .await
                .expect("recover")
                .into_inner()
                .recovered_count
        }
    };
    assert_eq!(
        recover(true).await,
        3,
        "the dry run counts the failed events"
    );
    assert_eq!(receiver.requests("/broken").len(), 3);

    // Fixed: the endpoint moves to a URL that works, and recovery sends
    // the three events there, each once.
    api.endpoints
        .clone()
        .update_endpoint(api.request(UpdateEndpointRequest {
            endpoint: Some(herald_proto::v1::Endpoint {
                id: broken.clone(),
                url: receiver.url("/fixed"),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["url".into()],
            }),
            policy: None,
        }))
        .await
        .expect("fix the URL");
    assert_eq!(recover(false).await, 3);
    let fixed = receiver.wait_for("/fixed", 3).await;
    let mut bodies: Vec<String> = fixed
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    bodies.sort();
    assert_eq!(bodies, [r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#]);
    for published in &events {
        api.settled(&published.event_id).await;
    }
    assert_eq!(
        recover(true).await,
        0,
        "nothing failed that was not sent again"
    );
    assert_eq!(
        receiver.requests("/healthy").len(),
        3,
        "recovery is the endpoint's own"
    );

    // A replay to one endpoint: a new delivery, with a new webhook-id.
    let first = &events[0];
    let replayed = api
        .events
        .clone()
        .replay_event(api.request(ReplayEventRequest {
            id: first.event_id.clone(),
            endpoint_id: healthy.clone(),
        }))
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(
        endpoints_of(&replayed.deliveries),
        std::slice::from_ref(&healthy)
    );
    let again = receiver.wait_for("/healthy", 4).await;
    let original = first
        .deliveries
        .iter()
        .find(|d| d.endpoint_id == healthy)
        .expect("original");
    assert_ne!(again[3].header("webhook-id"), original.delivery_id);
    assert_eq!(
        again[3].header("webhook-id"),
        replayed.deliveries[0].delivery_id
    );
    // To every subscriber: both endpoints, the fixed one at its new URL.
    let everyone = api
        .events
        .clone()
        .replay_event(api.request(ReplayEventRequest {
            id: first.event_id.clone(),
            endpoint_id: String::new(),
        }))
        .await
        .expect("replay to all")
        .into_inner();
    assert_eq!(
        endpoints_of(&everyone.deliveries),
        sorted(vec![broken, healthy])
    );
    receiver.wait_for("/fixed", 4).await;
    receiver.wait_for("/healthy", 5).await;
    let history = api.settled(&first.event_id).await;
    assert_eq!(
        history.deliveries.len(),
        2 + 1 + 1 + 2,
        "original, recovered, replayed"
    );
    herald.stop().await;
}

async fn pending_deliveries_follow_a_changed_url_and_headers(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let down = Receiver::start().await;
    let up = Receiver::start().await;
    let api = Api::connect(&herald, None).await;
    // Held at a paused destination (made with the endpoint), the
    // deliveries stay pending.
    let (endpoint, _) = api.endpoint(down.url("/old"), &[]).await;
    let channel = Channel::from_shared(format!("http://{}", herald.addr()))
        .expect("a URL")
        .connect()
        .await
        .expect("connect");
    DestinationServiceClient::new(channel)
        .pause_destination(api.request(PauseDestinationRequest {
            destination: down.url("/"),
            reason: "down for maintenance".into(),
        }))
        .await
        .expect("pause");
    let first = api.publish_json("build.finished", r#"{"n":1}"#).await;
    let second = api.publish_json("build.finished", r#"{"n":2}"#).await;
    api.endpoints
        .clone()
        .update_endpoint(api.request(UpdateEndpointRequest {
            endpoint: Some(herald_proto::v1::Endpoint {
                id: endpoint,
                url: up.url("/new"),
                headers: vec![herald_proto::v1::Header {
                    name: "x-tenant".into(),
                    value: "blue".into(),
                }],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["url".into(), "headers".into()],
            }),
            policy: None,
        }))
        .await
        .expect("move the endpoint");
    let seen = up.wait_for("/new", 2).await;
    let mut ids: Vec<&str> = seen.iter().map(|r| r.header("webhook-id")).collect();
    ids.sort_unstable();
    let mut expected = vec![
        first.deliveries[0].delivery_id.as_str(),
        second.deliveries[0].delivery_id.as_str(),
    ];
    expected.sort_unstable();
    assert_eq!(ids, expected, "the pending deliveries moved, ids unchanged");
    assert!(seen.iter().all(|r| r.header("x-tenant") == "blue"));
    assert!(down.requests("/old").is_empty());
    let moved = herald.get(&first.deliveries[0].delivery_id).await;
    assert_eq!(moved.url, up.url("/new"));
    herald.stop().await;
}
