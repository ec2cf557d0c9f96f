//! `publish`: what accepting events costs as their fan-out grows.
//!
//! Endpoints are registered first, each subscribed to the event type of
//! its fan-out (`bench.f3` reaches three endpoints), all at one paused
//! destination, so the scheduler sends nothing and only accepting is
//! measured: the event and its deliveries committed before Publish
//! answers. Then, for each fan-out, concurrent callers publish; and last,
//! events to 1,000 endpoints are published one at a time, each timed from
//! call to answer (committed).

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use herald_proto::v1::{
    CreateEndpointRequest, PauseDestinationRequest, PublishRequest,
    destination_service_client::DestinationServiceClient,
    endpoint_service_client::EndpointServiceClient, event_service_client::EventServiceClient,
};
use herald_tests::Backend;
use tonic::transport::Channel;

use crate::{
    receiver::{Behaviour, BenchReceiver},
    report::Report,
    server::{BenchDb, BenchServer, Settle},
};

/// The fan-outs measured under concurrent publishes.
const FAN_OUTS: [u64; 4] = [1, 3, 10, 100];
/// The fan-out of the single-event measurement.
const WIDE: u64 = 1000;
/// Events published one at a time to [`WIDE`] endpoints.
const WIDE_SAMPLES: u64 = 20;
/// Most deliveries one fan-out's run makes (fewer events when wide).
const DELIVERIES_PER_RUN: u64 = 100_000;
/// The payload of every event.
const PAYLOAD: &[u8] = br#"{"type":"bench.event","id":1}"#;

/// The event type endpoints of fan-out `n` subscribe to.
fn event_type(n: u64) -> String {
    format!("bench.f{n}")
}

/// Registers the endpoints, then measures each fan-out with `count`
/// events (fewer for wide fan-outs) from `concurrency` callers, then one
/// event at a time to 1,000 endpoints.
pub async fn publish(backend: Backend, count: u64, concurrency: usize) -> Vec<Report> {
    let db = BenchDb::create(backend).await;
    let receiver = BenchReceiver::start(Behaviour::default()).await;
    let server = BenchServer::start(&db, &[]).await;
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .expect("a URL")
        .connect()
        .await
        .expect("connect");
    let url = receiver.url();
    let endpoints = EndpointServiceClient::new(channel.clone());
    for n in FAN_OUTS.into_iter().chain([WIDE]) {
        for i in 0..n {
            endpoints
                .clone()
                .create_endpoint(CreateEndpointRequest {
                    url: format!("{url}/f{n}/{i}"),
                    event_types: vec![event_type(n)],
                    ..CreateEndpointRequest::default()
                })
                .await
                .expect("create an endpoint");
        }
    }
    // Paused once its row exists (the first endpoint made it).
    DestinationServiceClient::new(channel.clone())
        .pause_destination(PauseDestinationRequest {
            destination: url.clone(),
            reason: "the publish benchmark measures accepting only".into(),
        })
        .await
        .expect("pause the destination");
    let events = EventServiceClient::new(channel);
    let mut reports = Vec::new();
    for n in FAN_OUTS {
        let runs = count.min(DELIVERIES_PER_RUN / n).max(1);
        let before = db.stats(Settle::Open).await;
        let cpu = server.cpu_seconds();
        let latencies = Arc::new(Mutex::new(Vec::with_capacity(runs as usize)));
        let started = Instant::now();
        let per_caller = runs.div_ceil(concurrency as u64);
        let callers = (0..concurrency as u64).map(|caller| {
            let events = events.clone();
            let latencies = Arc::clone(&latencies);
            let mine = per_caller.min(runs.saturating_sub(caller * per_caller));
            tokio::spawn(async move {
                for _ in 0..mine {
                    let call = Instant::now();
                    let published = events
                        .clone()
                        .publish(PublishRequest {
                            event_type: event_type(n),
                            payload: PAYLOAD.to_vec(),
                            ..PublishRequest::default()
                        })
                        .await
                        .expect("publish")
                        .into_inner();
                    assert_eq!(published.deliveries.len() as u64, n, "every endpoint");
                    latencies.lock().unwrap().push(call.elapsed());
                }
            })
        });
        for caller in futures::future::join_all(callers).await {
            caller.expect("caller");
        }
        let seconds = started.elapsed().as_secs_f64();
        let samples = std::mem::take(&mut *latencies.lock().unwrap());
        let published = samples.len() as u64;
        let used = server.cpu_seconds() - cpu;
        let after = db.stats(Settle::Open).await;
        let deliveries = published * n;
        let report = Report {
            cpu_s_per_1000: Some(used * 1000.0 / deliveries as f64),
            note: format!(
                "{n} endpoint(s) per event: {:.0} deliveries/s accepted; {concurrency} callers, \
                 destination paused (acceptance only); costs per delivery",
                deliveries as f64 / seconds
            ),
            ..Report::new(&format!("publish-{n}"), backend, published, seconds)
        }
        .database_costs(before, after, deliveries)
        .latencies(samples);
        reports.push(report);
    }
    let mut samples = Vec::with_capacity(WIDE_SAMPLES as usize);
    let started = Instant::now();
    for _ in 0..WIDE_SAMPLES {
        let call = Instant::now();
        let published = events
            .clone()
            .publish(PublishRequest {
                event_type: event_type(WIDE),
                payload: PAYLOAD.to_vec(),
                ..PublishRequest::default()
            })
            .await
            .expect("publish")
            .into_inner();
        assert_eq!(published.deliveries.len() as u64, WIDE, "every endpoint");
        samples.push(call.elapsed());
    }
    let seconds = started.elapsed().as_secs_f64();
    reports.push(
        Report {
            note: format!(
                "one event to {WIDE} endpoints at a time: call to committed answer, per event"
            ),
            ..Report::new(&format!("publish-{WIDE}"), backend, WIDE_SAMPLES, seconds)
        }
        .latencies(samples),
    );
    server.stop().await;
    db.db.drop_database().await;
    reports.retain(|report| report.count > 0);
    reports
}
