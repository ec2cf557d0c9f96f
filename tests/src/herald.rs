//! A real Herald serving gRPC on an ephemeral port, over a test database,
//! with timings short enough for tests.

use std::{collections::HashSet, time::Duration};

use futures::StreamExt;
use herald_proto::v1::watch_outcomes_request::Start;
use herald_proto::v1::{
    DeadLetterFilter, Delivery, DeliveryIds, DeliveryState, EnqueueBatchRequest,
    EnqueueBatchResult, EnqueueRequest, EnqueueResponse, GetDeliveryRequest, Outcome, OutcomeKind,
    RedriveDeadLettersRequest, WatchOutcomesRequest, WatchOutcomesResponse,
    delivery_service_client::DeliveryServiceClient, enqueue_batch_result::Result as BatchResult,
    redrive_dead_letters_request::Selection,
};
use herald_server::{Config, RunningServer, config::InputLimits, secrets::SecretKeySettings};
use tonic::transport::Channel;

use crate::{Backend, PATIENCE, TestDb};

/// What a batch accepted for one item; `None` when it refused it.
pub fn accepted(result: &EnqueueBatchResult) -> Option<&EnqueueResponse> {
    match result.result.as_ref()? {
        BatchResult::Accepted(accepted) => Some(accepted),
        BatchResult::Error(_) => None,
    }
}

/// A redrive of exactly the dead letters `ids`.
pub fn redrive_ids(ids: Vec<String>) -> RedriveDeadLettersRequest {
    RedriveDeadLettersRequest {
        selection: Some(Selection::Deliveries(DeliveryIds { ids })),
        ..Default::default()
    }
}

/// A redrive of the dead letters `filter` selects.
pub fn redrive_filtered(filter: DeadLetterFilter) -> RedriveDeadLettersRequest {
    RedriveDeadLettersRequest {
        selection: Some(Selection::Filter(filter)),
        ..Default::default()
    }
}

/// A configuration for tests: every field the harness relies on is set
/// here, so `HERALD_*` variables in the environment cannot change it.
pub fn test_config(database_url: &str) -> Config {
    Config {
        listen_addr: "127.0.0.1:0".parse().expect("a socket address"),
        metrics_addr: None,
        dashboard_addr: None,
        cors_origins: Vec::new(),
        database_url: database_url.to_owned(),
        migrate: true,
        migration_lock_timeout: Duration::from_secs(5),
        read_pool_size: 4,
        request_timeout: Duration::from_secs(2),
        lease_duration: Duration::from_secs(5),
        max_attempts: 5,
        retry_min_backoff: Duration::from_millis(5),
        retry_max_backoff: Duration::from_millis(20),
        retry_after_cap: Duration::from_secs(1),
        concurrency: 16,
        destination_concurrency: 8,
        destination_rate_limit: herald_server::config::RateSetting(None),
        destination_rate_burst: 1,
        circuit_failure_threshold: 10,
        circuit_cooldown: Duration::from_millis(200),
        circuit_cooldown_max: Duration::from_secs(2),
        destination_disable_after: Duration::from_secs(5 * 24 * 3600),
        poll_interval: Duration::from_millis(200),
        response_excerpt_bytes: 256,
        feed_buffer: 4096,
        outcome_retention: Duration::from_secs(7 * 24 * 3600),
        retain_succeeded: Duration::from_secs(7 * 24 * 3600),
        retain_dead_lettered: Duration::from_secs(30 * 24 * 3600),
        retain_cancelled: Duration::from_secs(30 * 24 * 3600),
        audit_retention: Duration::from_secs(365 * 24 * 3600),
        shutdown_grace: Duration::from_secs(2),
        // The receivers of the tests listen on loopback.
        allow_target_cidrs: vec!["127.0.0.0/8".parse().expect("a CIDR")],
        tls_cert: None,
        tls_key: None,
        // Revocations and rotations take effect at once.
        credential_cache: Duration::ZERO,
        // A hundred failures a second, so a test can measure the slowing
        // in a few seconds.
        auth_failure_rate: "100/s".parse().expect("a rate"),
        auth_failure_burst: 10,
        max_calls_per_connection: 256,
        max_watches_per_tenant: 64,
        secret_keys: SecretKeySettings {
            secret_key: Some(crate::TEST_SECRET_KEY.parse().expect("a secret key")),
            ..SecretKeySettings::default()
        },
        limits: InputLimits {
            max_body_bytes: 64 * 1024,
            ..Config::default().limits
        },
    }
}

/// A running Herald and a gRPC client connected to it. The server stops
/// and the database is dropped when this is dropped.
pub struct TestHerald {
    server: Option<RunningServer>,
    client: DeliveryServiceClient<Channel>,
    /// `None` once [`TestHerald::stop`] dropped it; otherwise dropped
    /// after the server, which holds connections to it.
    db: Option<TestDb>,
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
            db: Some(db),
        })
    }

    /// The URL of Herald's database, for the admin commands.
    pub fn database_url(&self) -> &str {
        self.db.as_ref().expect("running").url()
    }

    /// The address of the metrics listener, when it is on.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.as_ref().expect("running").metrics_addr()
    }

    /// The address of the dashboard listener, when it is on.
    pub fn dashboard_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.as_ref().expect("running").dashboard_addr()
    }

    /// The address Herald listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.as_ref().expect("running").local_addr()
    }

    /// A gRPC client of this Herald.
    pub fn client(&self) -> DeliveryServiceClient<Channel> {
        self.client.clone()
    }

    /// Opens an outcome stream carrying only outcomes recorded from now on.
    pub async fn watch_live(&self) -> tonic::Streaming<WatchOutcomesResponse> {
        self.client()
            .watch_outcomes(WatchOutcomesRequest::default())
            .await
            .expect("watch outcomes")
            .into_inner()
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

    /// Enqueues `deliveries` in one `EnqueueBatch`, panicking if the call
    /// fails; returns each item's result, in order.
    pub async fn enqueue_batch(&self, deliveries: Vec<EnqueueRequest>) -> Vec<EnqueueBatchResult> {
        self.client()
            .enqueue_batch(EnqueueBatchRequest { deliveries })
            .await
            .expect("the batch is answered")
            .into_inner()
            .results
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

    /// Waits until `id` reaches a terminal state (succeeded, dead-lettered
    /// or cancelled), then returns it.
    pub async fn wait_terminal(&self, id: &str) -> Delivery {
        self.wait_until(id, "a terminal state", |delivery| {
            delivery.state != i32::from(DeliveryState::Pending)
        })
        .await
    }

    /// Waits until the delivery `id` satisfies `done`, looking again each
    /// time the outcome stream reports an outcome of it: its state changes
    /// only together with a recorded outcome, so nothing is polled. The
    /// stream replays `id`'s outcomes from the oldest, so one recorded
    /// before the watch began is not missed. Panics after [`PATIENCE`].
    async fn wait_until(&self, id: &str, what: &str, done: impl Fn(&Delivery) -> bool) -> Delivery {
        let mut outcomes = self
            .client()
            .watch_outcomes(WatchOutcomesRequest {
                start: Some(Start::FromOldest(true)),
                delivery_ids: vec![id.to_owned()],
                ..Default::default()
            })
            .await
            .expect("watch outcomes")
            .into_inner();
        let waited = tokio::time::timeout(PATIENCE, async {
            loop {
                let delivery = self.get(id).await;
                if done(&delivery) {
                    return delivery;
                }
                match outcomes.next().await {
                    Some(item) => {
                        item.expect("outcome stream");
                    }
                    None => panic!("the outcome stream ended while {id} was not yet {what}"),
                }
            }
        })
        .await;
        match waited {
            Ok(delivery) => delivery,
            Err(_) => {
                let delivery = self.get(id).await;
                panic!("{id} did not reach {what} within {PATIENCE:?}: {delivery:?}")
            }
        }
    }

    /// Shuts Herald down gracefully, then drops its database.
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
        if let Some(db) = self.db.take() {
            db.drop_database().await;
        }
    }
}

/// The next `count` outcomes of `stream`, within [`PATIENCE`].
pub async fn next_outcomes(
    stream: &mut tonic::Streaming<WatchOutcomesResponse>,
    count: usize,
) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(count);
    tokio::time::timeout(PATIENCE, async {
        while outcomes.len() < count {
            let item = stream
                .next()
                .await
                .expect("stream open")
                .expect("an outcome");
            outcomes.push(item.outcome.expect("outcome set"));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("expected {count} outcomes within {PATIENCE:?}, got {outcomes:?}"));
    outcomes
}

/// The next `count` outcomes of `stream`, each of which must be a success
/// of a different delivery; returns their delivery ids.
pub async fn wait_succeeded(
    stream: &mut tonic::Streaming<WatchOutcomesResponse>,
    count: usize,
) -> HashSet<String> {
    let outcomes = next_outcomes(stream, count).await;
    for outcome in &outcomes {
        assert_eq!(
            outcome.kind,
            i32::from(OutcomeKind::Succeeded),
            "{outcome:?}"
        );
    }
    let ids: HashSet<String> = outcomes.into_iter().map(|o| o.delivery_id).collect();
    assert_eq!(ids.len(), count, "one success per delivery");
    ids
}

impl Drop for TestHerald {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.shutdown_token().cancel();
        }
    }
}
