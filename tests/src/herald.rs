//! A real Herald serving gRPC on an ephemeral port, over a test database,
//! with timings short enough for tests.

use std::time::Duration;

use futures::StreamExt;
use herald_proto::v1::{
    Delivery, DeliveryState, EnqueueRequest, GetDeliveryRequest, OutcomeKind, WatchOutcomesRequest,
    delivery_service_client::DeliveryServiceClient,
};
use herald_server::{Config, RunningServer};
use tonic::transport::Channel;

use crate::{Backend, PATIENCE, TestDb};

/// A configuration for tests: every field the harness relies on is set
/// here, so `HERALD_*` variables in the environment cannot change it.
pub fn test_config(database_url: &str) -> Config {
    Config {
        listen_addr: "127.0.0.1:0".parse().expect("a socket address"),
        database_url: database_url.to_owned(),
        migrate: true,
        request_timeout: Duration::from_secs(2),
        lease_duration: Duration::from_secs(5),
        max_attempts: 5,
        retry_min_backoff: Duration::from_millis(5),
        retry_max_backoff: Duration::from_millis(20),
        retry_after_cap: Duration::from_secs(1),
        concurrency: 16,
        destination_concurrency: 8,
        poll_interval: Duration::from_millis(200),
        max_body_bytes: 64 * 1024,
        response_excerpt_bytes: 256,
        feed_buffer: 4096,
        outcome_retention: Duration::from_secs(7 * 24 * 3600),
        shutdown_grace: Duration::from_secs(2),
    }
}

/// A running Herald and a gRPC client connected to it. The server stops
/// and the database is dropped when this is dropped.
pub struct TestHerald {
    server: Option<RunningServer>,
    client: DeliveryServiceClient<Channel>,
    // Dropped after the server, which holds connections to it.
    _db: TestDb,
}

impl TestHerald {
    /// Starts Herald on `backend` with [`test_config`]; `None` when the
    /// backend is skipped.
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::start_with(backend, |_| {}).await
    }

    /// Like [`TestHerald::start`], with `adjust` applied to the config.
    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Option<Self> {
        let db = TestDb::create(backend).await?;
        let mut config = test_config(db.url());
        adjust(&mut config);
        let server = herald_server::start(config).await.expect("Herald starts");
        let endpoint = format!("http://{}", server.local_addr());
        let client = DeliveryServiceClient::connect(endpoint)
            .await
            .expect("connect to Herald");
        Some(Self {
            server: Some(server),
            client,
            _db: db,
        })
    }

    /// The address Herald listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.as_ref().expect("running").local_addr()
    }

    /// A gRPC client of this Herald.
    pub fn client(&self) -> DeliveryServiceClient<Channel> {
        self.client.clone()
    }

    /// Enqueues `request`, panicking on error; returns the id.
    pub async fn enqueue(&self, request: EnqueueRequest) -> String {
        self.client()
            .enqueue(request)
            .await
            .expect("enqueue")
            .into_inner()
            .id
    }

    /// Enqueues a POST of `body` to `url`.
    pub async fn post(&self, url: String, body: &[u8]) -> String {
        self.enqueue(EnqueueRequest {
            url,
            body: body.to_vec(),
            ..Default::default()
        })
        .await
    }

    /// The delivery with `id`.
    pub async fn get(&self, id: &str) -> Delivery {
        self.client()
            .get_delivery(GetDeliveryRequest { id: id.to_owned() })
            .await
            .expect("get delivery")
            .into_inner()
            .delivery
            .expect("a delivery")
    }

    /// Waits, on the outcome stream, until `id` reaches a terminal state,
    /// then returns it.
    pub async fn wait_terminal(&self, id: &str) -> Delivery {
        let mut outcomes = self
            .client()
            .watch_outcomes(WatchOutcomesRequest {
                after_sequence: Some(0),
                ..Default::default()
            })
            .await
            .expect("watch outcomes")
            .into_inner();
        let finished = tokio::time::timeout(PATIENCE, async {
            while let Some(item) = outcomes.next().await {
                let outcome = item.expect("outcome stream").outcome.expect("an outcome");
                let terminal = [OutcomeKind::Succeeded, OutcomeKind::DeadLettered]
                    .map(i32::from)
                    .contains(&outcome.kind);
                if outcome.delivery_id == id && terminal {
                    return;
                }
            }
            panic!("the outcome stream ended before {id} finished");
        })
        .await;
        if finished.is_err() {
            let delivery = self.get(id).await;
            panic!("{id} did not finish within {PATIENCE:?}: {delivery:?}");
        }
        let delivery = self.get(id).await;
        assert_ne!(
            delivery.state,
            i32::from(DeliveryState::Pending),
            "{delivery:?}"
        );
        delivery
    }

    /// Shuts Herald down gracefully.
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
    }
}

impl Drop for TestHerald {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.shutdown_token().cancel();
        }
    }
}
