//! Composition root: wires config, store, transport, scheduler, feed and
//! API into one running server, and takes it down in order.
//!
//! Shutdown, at the signal and side by side: stop accepting RPCs, end watch
//! streams and let calls in flight finish; stop claiming and give in-flight
//! attempts the grace period, counted from the signal, to finish and be
//! recorded. Then close the database. Claiming and the grace clock do not
//! wait for the gRPC calls: a slow caller must not keep this replica taking
//! new work, or push the return of its leases past the orchestrator's kill.

use std::{net::SocketAddr, time::Duration};

use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Identity, Server, ServerTlsConfig, server::TcpIncoming};
use tonic_web::GrpcWebLayer;

use crate::{
    Config,
    api::{
        self, AuditApi, Authenticator, DeliveryApi, DestinationApi, EndpointApi, EventApi,
        FailureLimiter, GateLayer, Limits, MessageLimits, WatchCap,
    },
    config::ConfigError,
    endpoints::SchemaCache,
    janitor::{Janitor, RetentionWindows},
    metrics::Metrics,
    outcomes::OutcomeFeed,
    scheduler::{Scheduler, SchedulerConfig, retry::RetryPolicy},
    secrets::KeyError,
    store::{Store, StoreError},
    tenants::{self, Keyring, Scope},
    transport::{HttpSender, TargetPolicy, TransportConfig},
    web,
};

/// Most rows one claim statement leases.
const CLAIM_BATCH: usize = 64;
/// HTTP/2 keepalive pings, so idle watch streams survive proxies and NATs.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The database could not be opened or migrated.
    #[error("database {url}: {source}")]
    Database {
        /// The configured URL, its password hidden.
        url: String,
        /// What failed.
        source: StoreError,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The configured address.
        addr: SocketAddr,
        /// What failed.
        source: std::io::Error,
    },
    /// The outbound TLS configuration could not be built.
    #[error("outbound TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// Asked to listen beyond loopback while any caller would be let in.
    #[error(
        "refusing to listen on {addr} with no tenants: anyone who can reach it could send requests anywhere and read every payload. \
Create a tenant with `herald tenant create NAME` (it prints the API key callers send), \
or listen on a loopback address such as 127.0.0.1:50051 for local development"
    )]
    Unprotected {
        /// The configured address.
        addr: SocketAddr,
    },
    /// The listener's certificate or key could not be read.
    #[error("cannot read {path}: {source}")]
    ListenerTlsFile {
        /// The file named by HERALD_TLS_CERT or HERALD_TLS_KEY.
        path: std::path::PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The listener's certificate and key do not make a TLS configuration.
    #[error("listener TLS (HERALD_TLS_CERT, HERALD_TLS_KEY): {0}")]
    ListenerTls(#[source] tonic::transport::Error),
    /// No key to seal signing secrets with, or a bad one.
    #[error(transparent)]
    SecretKey(#[from] KeyError),
    /// The reflection service could not be built from the descriptors.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Why the running server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The server task panicked.
    #[error("server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A started Herald: gRPC listening, scheduler running.
pub struct RunningServer {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    dashboard_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ServeError>>,
}

impl RunningServer {
    /// The address the gRPC server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the metrics listener is bound to, when it is on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The address the dashboard listener is bound to, when it is on.
    pub fn dashboard_addr(&self) -> Option<SocketAddr> {
        self.dashboard_addr
    }

    /// A token that, once cancelled, shuts the server down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Shuts down gracefully and waits until everything has stopped.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.shutdown.cancel();
        self.task.await?
    }

    /// Waits until the server stops (after its shutdown token is cancelled).
    pub async fn wait(self) -> Result<(), ServeError> {
        self.task.await?
    }
}

/// Opens the database (migrating it unless `config.migrate` is off, when
/// it must be migrated already), binds
/// the listener and starts serving and delivering.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    config.validate()?;
    let database = |source| StartError::Database {
        url: crate::config::redact_url(&config.database_url),
        source,
    };
    let store = Store::connect_with(&config.database_url, config.store_options())
        .await
        .map_err(database)?;
    if config.migrate {
        store.migrate().await.map_err(database)?;
    } else {
        store.require_migrated().await.map_err(database)?;
    }
    store.look_at_every_destination().await.map_err(database)?;
    let auth = Authenticator::new(store.clone(), config.credential_cache);
    let open = !store.has_api_keys().await.map_err(database)?;
    if open {
        let exposed = std::iter::once(config.listen_addr)
            .chain(config.dashboard_addr)
            .find(|addr| !addr.ip().is_loopback());
        if let Some(addr) = exposed {
            return Err(StartError::Unprotected { addr });
        }
        tracing::warn!(
            "RUNNING OPEN: no tenant exists, so every caller is the \"default\" tenant without an API key. \
Fine for local development on loopback; create a tenant with `herald tenant create NAME` before anyone else can reach this server"
        );
    }
    // Open on loopback, a SQLite database may get a local key; with
    // tenants, a key must be configured.
    let sealer = config
        .secret_keys
        .require_sealer(&config.database_url, open)?;
    let sealed = tenants::reseal(&store, &sealer, Scope::Plain)
        .await
        .map_err(database)?;
    if sealed > 0 {
        tracing::info!(
            sealed,
            key_id = sealer.current_id(),
            "sealed the signing secrets stored in plain text"
        );
    }
    let tls = listener_tls(&config).await?;
    let listener = bind(config.listen_addr).await?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: config.listen_addr,
        source,
    })?;

    let metrics_listener = match config.metrics_addr {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let metrics_addr = metrics_listener
        .as_ref()
        .and_then(|listener| listener.local_addr().ok());
    let dashboard_listener = match config.dashboard_addr {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let dashboard_addr = dashboard_listener
        .as_ref()
        .and_then(|listener| listener.local_addr().ok());

    let shutdown = CancellationToken::new();
    let metrics = Metrics::default();
    if let Some(listener) = metrics_listener {
        tokio::spawn(
            metrics
                .clone()
                .serve(store.clone(), listener, shutdown.child_token()),
        );
    }
    let feed = OutcomeFeed::start(
        store.clone(),
        config.feed_buffer,
        config.poll_interval,
        shutdown.child_token(),
    )
    .await
    .map_err(database)?;
    let janitor = Janitor {
        store: store.clone(),
        windows: RetentionWindows {
            outcomes: config.outcome_retention,
            succeeded: config.retain_succeeded,
            dead_lettered: config.retain_dead_lettered,
            cancelled: config.retain_cancelled,
            audit: config.audit_retention,
        },
    };
    tokio::spawn(janitor.run(shutdown.child_token()));
    let targets = TargetPolicy::new(config.allow_target_cidrs.clone());
    let sender = HttpSender::new(
        TransportConfig {
            request_timeout: config.request_timeout,
            response_excerpt_bytes: config.response_excerpt_bytes,
        },
        targets.clone(),
    )?;
    let keyring = Keyring::new(store.clone(), sealer.clone(), config.credential_cache);
    api::revocations::follow(
        store.clone(),
        auth.clone(),
        keyring.clone(),
        shutdown.child_token(),
    )
    .await;
    let (scheduler, scheduler_handle) = Scheduler::start(
        store.clone(),
        sender,
        feed.clone(),
        keyring,
        SchedulerConfig {
            concurrency: config.concurrency,
            defaults: config.destination_policy(),
            disable_after: config.disable_after(),
            claim_batch: CLAIM_BATCH.min(config.concurrency),
            lease_duration: config.lease_duration,
            request_timeout: config.request_timeout,
            poll_interval: config.poll_interval,
            shutdown_grace: config.shutdown_grace,
            retry: RetryPolicy {
                min_backoff: config.retry_min_backoff,
                max_backoff: config.retry_max_backoff,
                retry_after_cap: config.retry_after_cap,
            },
        },
        metrics.clone(),
        shutdown.child_token(),
    )
    .await;
    let limits = Limits {
        input: config.limits.clone(),
        default_max_attempts: config.max_attempts,
        targets,
    };
    let destinations = DestinationApi::new(
        store.clone(),
        feed.clone(),
        scheduler_handle.clone(),
        metrics.clone(),
        config.destination_policy(),
        limits.clone(),
    );
    let audit = AuditApi::new(store.clone(), limits.clone());
    let endpoints = EndpointApi::new(
        store.clone(),
        sealer,
        feed.clone(),
        scheduler_handle.clone(),
        metrics.clone(),
        config.destination_policy(),
        limits.clone(),
    );
    let events = EventApi::new(
        store.clone(),
        SchemaCache::new(store.clone(), config.credential_cache),
        scheduler_handle.clone(),
        metrics.clone(),
        limits.clone(),
    );
    let deliveries = DeliveryApi::new(
        store.clone(),
        feed,
        scheduler_handle,
        limits,
        metrics.clone(),
        WatchCap::new(config.max_watches_per_tenant),
    );
    let gate = GateLayer::new(
        auth,
        FailureLimiter::new(config.auth_failure_rate, config.auth_failure_burst),
        MessageLimits::new(&config.limits),
        metrics,
    );
    let services = api::Services {
        deliveries,
        destinations,
        endpoints,
        events,
        audit,
    };
    let routes = api::routes(&gate, services, config.limits.max_message_bytes()).await?;
    tracing::info!(
        %local_addr,
        metrics_addr = ?metrics_addr,
        dashboard_addr = ?dashboard_addr,
        tls = tls.is_some(),
        database = %crate::config::redact_url(&config.database_url),
        "herald is serving"
    );

    let cors = web::cors_layer(&config.cors_origins);
    let calls_per_connection = config.max_calls_per_connection;
    let stop = shutdown.clone();
    let failed = shutdown.clone();
    let task = tokio::spawn(async move {
        let grpc = server_builder(tls.clone(), calls_per_connection).map(|builder| {
            builder
                .layer(cors)
                .layer(GrpcWebLayer::new())
                .add_routes(routes.clone())
                .serve_with_incoming_shutdown(incoming(listener), stop.clone().cancelled_owned())
        });
        let dashboard = dashboard_listener.map(|listener| {
            server_builder(tls, calls_per_connection).map(|mut builder| {
                builder
                    .add_routes(web::dashboard_routes(routes))
                    .serve_with_incoming_shutdown(incoming(listener), stop.cancelled_owned())
            })
        });
        // A listener that fails takes the whole server down with it, in order.
        let (served, dashboard_served) = tokio::join!(
            stop_on_error(async { grpc?.await }, failed.clone()),
            stop_on_error(
                async {
                    match dashboard {
                        Some(serve) => serve?.await,
                        None => Ok(()),
                    }
                },
                failed,
            )
        );
        scheduler.stopped().await;
        if let Err(error) = store.close().await {
            tracing::warn!(%error, "closing the database");
        }
        tracing::info!("herald stopped");
        served?;
        Ok(dashboard_served?)
    });
    Ok(RunningServer {
        local_addr,
        metrics_addr,
        dashboard_addr,
        shutdown,
        task,
    })
}

/// Runs `serve`; if it fails, cancels `shutdown` so everything else stops.
async fn stop_on_error(
    serve: impl Future<Output = Result<(), tonic::transport::Error>>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let served = serve.await;
    if served.is_err() {
        shutdown.cancel();
    }
    served
}

/// A server with Herald's settings, before its layers and routes: TLS
/// when configured, HTTP/1.1 besides HTTP/2 (gRPC-web from browsers
/// without TLS comes over HTTP/1.1), keepalive pings and each call's span.
fn server_builder(
    tls: Option<ServerTlsConfig>,
    calls_per_connection: usize,
) -> Result<Server, tonic::transport::Error> {
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    Ok(builder
        .accept_http1(true)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .concurrency_limit_per_connection(calls_per_connection)
        // Each call's span; the API records the caller's tenant (and an
        // enqueue's delivery id) on it.
        .trace_fn(|request| {
            tracing::info_span!(
                "rpc",
                method = request.uri().path(),
                tenant = tracing::field::Empty,
                delivery_id = tracing::field::Empty,
            )
        }))
}

/// The listener's connections, with Nagle's algorithm off: a response's
/// last frames must not wait for the caller's delayed ACK (up to 40 ms).
/// Tonic applies its own `tcp_nodelay` only to listeners it binds itself.
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// A listener on `addr`, or why not.
async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })
}

/// The listener's TLS configuration, when a certificate and key are set.
async fn listener_tls(config: &Config) -> Result<Option<ServerTlsConfig>, StartError> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let read = |path: &std::path::PathBuf| {
        let path = path.clone();
        async move {
            tokio::fs::read(&path)
                .await
                .map_err(|source| StartError::ListenerTlsFile { path, source })
        }
    };
    let identity = Identity::from_pem(read(cert).await?, read(key).await?);
    let tls = ServerTlsConfig::new().identity(identity);
    // Building it here reports a bad certificate or key at start, not on
    // the first connection.
    tonic::transport::Server::builder()
        .tls_config(tls.clone())
        .map_err(StartError::ListenerTls)?;
    Ok(Some(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_database_error_at_start_hides_the_password() {
        let config = Config {
            database_url: "mysql://herald:hunter2@db/herald".into(),
            ..Config::default()
        };
        let Err(error) = start(config).await else {
            panic!("started on a database Herald does not run on");
        };
        let message = error.to_string();
        assert!(!message.contains("hunter2"), "{message}");
        assert!(
            message.contains("mysql://herald:***@db/herald"),
            "{message}"
        );
    }
}
