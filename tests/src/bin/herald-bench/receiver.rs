//! The benchmark's receiver: a lean hyper server that answers every
//! request (after an optional delay, with an optional share of 503s) and
//! notes when each delivery's first attempt arrived.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{net::TcpListener, sync::Notify};

/// How the receiver answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    /// Added before every answer.
    pub delay: Duration,
    /// Answer 503 to every n-th request (0: never).
    pub fail_every: u64,
}

/// A running receiver; it serves until the process ends.
#[derive(Clone)]
pub struct BenchReceiver {
    addr: SocketAddr,
    state: Arc<State>,
}

struct State {
    behaviour: Behaviour,
    requests: AtomicU64,
    successes: AtomicU64,
    first_seen: Mutex<HashMap<String, Instant>>,
    arrived: Notify,
}

impl BenchReceiver {
    /// Starts serving on 127.0.0.1.
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("receiver address");
        let state = Arc::new(State {
            behaviour,
            requests: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            first_seen: Mutex::new(HashMap::new()),
            arrived: Notify::new(),
        });
        let serving = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&serving);
                let service = service_fn(move |request: Request<Incoming>| {
                    let state = Arc::clone(&state);
                    async move { Ok::<_, Infallible>(state.answer(request).await) }
                });
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, state }
    }

    /// The URL deliveries should go to.
    pub fn url(&self) -> String {
        format!("http://{}/bench", self.addr)
    }

    /// Requests answered 2xx so far.
    pub fn successes(&self) -> u64 {
        self.state.successes.load(Ordering::Relaxed)
    }

    /// When the first attempt of delivery `id` arrived.
    pub fn first_seen(&self, id: &str) -> Option<Instant> {
        lock(&self.state.first_seen).get(id).copied()
    }

    /// Waits until delivery `id` has arrived at least once.
    pub async fn wait_for(&self, id: &str) -> Instant {
        loop {
            let notified = self.state.arrived.notified();
            if let Some(at) = self.first_seen(id) {
                return at;
            }
            notified.await;
        }
    }
}

impl State {
    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let now = Instant::now();
        let id = request
            .headers()
            .get("webhook-id")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        lock(&self.first_seen).entry(id).or_insert(now);
        self.arrived.notify_waiters();
        // Read the body, as a real receiver would.
        let _ = request.into_body().collect().await;
        if !self.behaviour.delay.is_zero() {
            tokio::time::sleep(self.behaviour.delay).await;
        }
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let status = if self.behaviour.fail_every > 0 && n.is_multiple_of(self.behaviour.fail_every)
        {
            503
        } else {
            self.successes.fetch_add(1, Ordering::Relaxed);
            204
        };
        Response::builder()
            .status(status)
            .body(Full::default())
            .expect("a response")
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
