//! A real HTTP/1 receiver on 127.0.0.1 that records every request and
//! answers from a per-path script. Tests await arrivals through a watch
//! channel, never by sleeping.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderMap, Method, Response};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;

use crate::PATIENCE;

/// One answer of the receiver.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This status with an empty body.
    Status(u16),
    /// This status with these headers.
    WithHeaders(u16, Vec<(&'static str, String)>),
    /// Never answer (until the receiver is dropped).
    Hang,
}

/// A request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// Headers as received.
    pub headers: HeaderMap,
    /// Body bytes as received.
    pub body: Bytes,
    /// When it arrived.
    pub at: Instant,
    /// Requests to the same path open when it arrived, itself included.
    pub open: usize,
}

impl Recorded {
    /// A header's value as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

struct State {
    requests: Mutex<Vec<Recorded>>,
    scripts: Mutex<HashMap<String, VecDeque<Reply>>>,
    /// Paths whose unscripted requests wait for the gate to open.
    held: Mutex<HashSet<String>>,
    gate: watch::Sender<bool>,
    /// Paths whose unscripted requests are answered after a delay.
    slow: Mutex<HashMap<String, Duration>>,
    /// Requests open now, per path.
    open: Mutex<HashMap<String, usize>>,
    /// Paths that answer a `webhook-id` seen before with 409, and the ids
    /// each has seen.
    dedupe: Mutex<HashMap<String, HashSet<String>>>,
}

/// The receiver; it stops serving when dropped.
pub struct Receiver {
    addr: SocketAddr,
    state: Arc<State>,
    arrivals: watch::Receiver<usize>,
    stop: CancellationToken,
}

impl Receiver {
    /// Starts a receiver that answers 204 unless a script says otherwise.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("receiver address");
        let state = Arc::new(State {
            requests: Mutex::default(),
            scripts: Mutex::default(),
            held: Mutex::default(),
            gate: watch::channel(false).0,
            slow: Mutex::default(),
            open: Mutex::default(),
            dedupe: Mutex::default(),
        });
        let (arrived, arrivals) = watch::channel(0);
        let arrived = Arc::new(arrived);
        let stop = CancellationToken::new();
        let accept_state = Arc::clone(&state);
        let accept_stop = stop.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    () = accept_stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                };
                let state = Arc::clone(&accept_state);
                let arrived = Arc::clone(&arrived);
                let stop = accept_stop.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        handle(
                            Arc::clone(&state),
                            Arc::clone(&arrived),
                            stop.clone(),
                            request,
                        )
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            state,
            arrivals,
            stop,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests to `path` with `replies`, in order; after
    /// that, 204.
    pub fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        self.state
            .scripts
            .lock()
            .unwrap()
            .insert(path.to_owned(), replies.into_iter().collect());
    }

    /// Holds every unscripted request to `path` open (no answer) until
    /// [`Receiver::open_gate`]; then they, and later ones, get 204.
    pub fn hold(&self, path: &str) {
        self.state.held.lock().unwrap().insert(path.to_owned());
    }

    /// Answers every unscripted request to `path` with 204 after `delay`,
    /// as a busy receiver would.
    pub fn slow(&self, path: &str, delay: Duration) {
        self.state
            .slow
            .lock()
            .unwrap()
            .insert(path.to_owned(), delay);
    }

    /// Answers every unscripted request to `path` whose `webhook-id` it
    /// has seen before with 409 Conflict, as a receiver that de-duplicates
    /// does.
    pub fn dedupe(&self, path: &str) {
        self.state
            .dedupe
            .lock()
            .unwrap()
            .insert(path.to_owned(), HashSet::new());
    }

    /// Answers every held request, and stops holding.
    pub fn open_gate(&self) {
        self.state.gate.send_replace(true);
    }

    /// Every request to `path` so far, in arrival order.
    pub fn requests(&self, path: &str) -> Vec<Recorded> {
        let requests = self.state.requests.lock().unwrap();
        requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits until `count` requests to `path` have arrived and returns them.
    pub async fn wait_for(&self, path: &str, count: usize) -> Vec<Recorded> {
        let mut arrivals = self.arrivals.clone();
        let waited = tokio::time::timeout(PATIENCE, async {
            loop {
                let seen = self.requests(path);
                if seen.len() >= count {
                    return seen;
                }
                arrivals.changed().await.expect("receiver alive");
            }
        })
        .await;
        waited.unwrap_or_else(|_| {
            panic!(
                "waited {PATIENCE:?} for {count} requests to {path}; got {}",
                self.requests(path).len()
            )
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn handle(
    state: Arc<State>,
    arrived: Arc<watch::Sender<usize>>,
    stop: CancellationToken,
    request: hyper::Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let scripted = state
        .scripts
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    let held = scripted.is_none() && state.held.lock().unwrap().contains(&path);
    let delay = match scripted {
        None => state.slow.lock().unwrap().get(&path).copied(),
        Some(_) => None,
    };
    let duplicate = scripted.is_none()
        && state
            .dedupe
            .lock()
            .unwrap()
            .get_mut(&path)
            .is_some_and(|seen| {
                let id = parts
                    .headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok());
                !seen.insert(id.unwrap_or_default().to_owned())
            });
    let reply = scripted.unwrap_or(Reply::Status(if duplicate { 409 } else { 204 }));
    let open = Open::enter(&state, &path);
    state.requests.lock().unwrap().push(Recorded {
        method: parts.method,
        path,
        headers: parts.headers,
        body,
        at: Instant::now(),
        open: open.count,
    });
    arrived.send_modify(|count| *count += 1);
    if held {
        let mut gate = state.gate.subscribe();
        tokio::select! {
            () = stop.cancelled() => {}
            _ = gate.wait_for(|open| *open) => {}
        }
    }
    if let Some(delay) = delay {
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(delay) => {}
        }
    }
    drop(open);
    let (status, headers) = match reply {
        Reply::Status(status) => (status, Vec::new()),
        Reply::WithHeaders(status, headers) => (status, headers),
        Reply::Hang => {
            stop.cancelled().await;
            (503, Vec::new())
        }
    };
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(name, value);
    }
    Ok(response
        .body(Full::default())
        .expect("a valid scripted response"))
}

/// One request counted open at its path until dropped.
struct Open {
    state: Arc<State>,
    path: String,
    /// Requests open at the path when this one arrived, itself included.
    count: usize,
}

impl Open {
    fn enter(state: &Arc<State>, path: &str) -> Self {
        let mut open = state.open.lock().unwrap();
        let count = open.entry(path.to_owned()).or_default();
        *count += 1;
        Self {
            state: Arc::clone(state),
            path: path.to_owned(),
            count: *count,
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(count) = self.state.open.lock().unwrap().get_mut(&self.path) {
            *count -= 1;
        }
    }
}
