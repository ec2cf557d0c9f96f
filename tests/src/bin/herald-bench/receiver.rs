//! The benchmark's receiver: a lean hyper server that answers every
//! request (after an optional delay, with an optional share of 503s, or
//! 503 to everything until a given instant) and notes when every request
//! arrived and when each delivery's first attempt did. It can listen on
//! many ports at once, all answering alike and counted together: to
//! Herald each port is a destination of its own.

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

use crate::precise_timer;

/// How the receiver answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    /// From a request's arrival to its answer.
    pub delay: Duration,
    /// Answer 503 to every n-th request (0: never).
    pub fail_every: u64,
    /// Answer 503 to every request that arrives before this instant.
    pub fail_until: Option<Instant>,
}

impl Behaviour {
    /// Answers 204 after `delay`.
    pub fn slow(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }
}

/// A running receiver; it serves until the process ends.
#[derive(Clone)]
pub struct BenchReceiver {
    addrs: Vec<SocketAddr>,
    state: Arc<State>,
}

/// What every listener of one receiver shares.
struct State {
    /// How to answer.
    behaviour: Behaviour,
    /// Requests answered so far (for `fail_every`).
    answered: AtomicU64,
    /// Requests answered 2xx so far.
    successes: AtomicU64,
    /// When each delivery (by `webhook-id`) first arrived.
    first_seen: Mutex<HashMap<String, Instant>>,
    /// When each request arrived, in order.
    arrivals: Mutex<Vec<Instant>>,
    /// Woken on every arrival.
    arrived: Notify,
}

impl BenchReceiver {
    /// Starts serving on one port of 127.0.0.1: one destination.
    pub async fn start(behaviour: Behaviour) -> Self {
        Self::start_many(behaviour, 1).await
    }

    /// Starts serving on `listeners` ports of 127.0.0.1 (at least one),
    /// each a destination of its own, all sharing one behaviour and one
    /// set of counts.
    pub async fn start_many(behaviour: Behaviour, listeners: usize) -> Self {
        let state = Arc::new(State {
            behaviour,
            answered: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            first_seen: Mutex::new(HashMap::new()),
            arrivals: Mutex::new(Vec::new()),
            arrived: Notify::new(),
        });
        let mut addrs = Vec::with_capacity(listeners.max(1));
        for _ in 0..listeners.max(1) {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind the receiver");
            addrs.push(listener.local_addr().expect("receiver address"));
            tokio::spawn(serve(listener, Arc::clone(&state)));
        }
        Self { addrs, state }
    }

    /// The URL deliveries should go to (the first listener's).
    pub fn url(&self) -> String {
        bench_url(self.addrs[0])
    }

    /// One URL per listener, each a separate destination.
    pub fn urls(&self) -> Vec<String> {
        self.addrs.iter().copied().map(bench_url).collect()
    }

    /// Requests answered 2xx so far.
    pub fn successes(&self) -> u64 {
        self.state.successes.load(Ordering::Relaxed)
    }

    /// When every request so far arrived, in order.
    pub fn arrivals(&self) -> Vec<Instant> {
        lock(&self.state.arrivals).clone()
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

/// The path every delivery goes to on `addr`.
fn bench_url(addr: SocketAddr) -> String {
    format!("http://{addr}/bench")
}

/// Answers every connection `listener` accepts, each in its own task.
async fn serve(listener: TcpListener, state: Arc<State>) {
    while let Ok((stream, _)) = listener.accept().await {
        let state = Arc::clone(&state);
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
}

impl State {
    /// Notes `request`'s arrival, then answers it as the behaviour says.
    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let now = Instant::now();
        let id = request
            .headers()
            .get("webhook-id")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        lock(&self.arrivals).push(now);
        lock(&self.first_seen).entry(id).or_insert(now);
        self.arrived.notify_waiters();
        // Read the body, as a real receiver would.
        let _ = request.into_body().collect().await;
        if !self.behaviour.delay.is_zero() {
            precise_timer::sleep_until(now + self.behaviour.delay).await;
        }
        let n = self.answered.fetch_add(1, Ordering::Relaxed) + 1;
        let failing = self.behaviour.fail_until.is_some_and(|until| now < until)
            || (self.behaviour.fail_every > 0 && n.is_multiple_of(self.behaviour.fail_every));
        let status = if failing {
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

/// `mutex`'s guard, poisoned or not (a panicking handler leaves the
/// counts usable).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
