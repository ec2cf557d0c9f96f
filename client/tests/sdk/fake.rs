//! A scripted `DeliveryService` on a real port: it answers from a [`Script`]
//! and records every request it gets in [`Seen`], so tests can check what
//! the client put on the wire.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::Stream;
use herald_proto::v1::delivery_service_server::{DeliveryService, DeliveryServiceServer};
use herald_proto::v1::enqueue_batch_result::Result as BatchResult;
use herald_proto::v1::*;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status};

/// What the fake answers.
#[derive(Default)]
pub struct Script {
    /// The answer to every Enqueue.
    pub enqueue: EnqueueResponse,
    /// GetDelivery answers these by id; other ids are NOT_FOUND, and the id
    /// "hollow" gets a response without a delivery.
    pub deliveries: Vec<Delivery>,
    /// ListDeadLetters and ListDeliveries pages by request token: (items,
    /// next token).
    pub dead_letter_pages: HashMap<String, (Vec<Delivery>, String)>,
    /// What WatchOutcomes streams; the stream ends when the sender is dropped.
    /// Without it, WatchOutcomes answers OUT_OF_RANGE.
    pub watch_feed: Option<mpsc::Receiver<Result<WatchOutcomesResponse, Status>>>,
}

/// Every request the fake got, in order.
#[derive(Debug, Default)]
pub struct Seen {
    pub enqueues: Vec<EnqueueRequest>,
    pub gets: Vec<GetDeliveryRequest>,
    pub dead_letter_pages: Vec<ListDeadLettersRequest>,
    pub delivery_pages: Vec<ListDeliveriesRequest>,
    pub watches: Vec<WatchOutcomesRequest>,
    pub redrives: Vec<RedriveDeadLettersRequest>,
    /// The `authorization` header of every call, whatever the RPC.
    pub authorizations: Vec<Option<String>>,
    /// The `traceparent` and `tracestate` headers of every call.
    pub trace_contexts: Vec<(Option<String>, Option<String>)>,
}

struct Fake {
    enqueue: EnqueueResponse,
    deliveries: Vec<Delivery>,
    dead_letter_pages: HashMap<String, (Vec<Delivery>, String)>,
    watch_feed: Mutex<Option<mpsc::Receiver<Result<WatchOutcomesResponse, Status>>>>,
    seen: Arc<Mutex<Seen>>,
}

/// A fake serving on 127.0.0.1; stops when dropped.
pub struct Running {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    _stop: oneshot::Sender<()>,
}

impl Running {
    /// The URL to connect to.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Runs `read` on what the fake has seen so far.
    pub fn seen<T>(&self, read: impl FnOnce(&Seen) -> T) -> T {
        read(&self.seen.lock().unwrap())
    }
}

/// Starts a fake answering from `script`. The listener is bound before this
/// returns, so a client can connect at once.
pub async fn start(script: Script) -> Running {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let fake = Fake {
        enqueue: script.enqueue,
        deliveries: script.deliveries,
        dead_letter_pages: script.dead_letter_pages,
        watch_feed: Mutex::new(script.watch_feed),
        seen: seen.clone(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(DeliveryServiceServer::new(fake))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            }),
    );
    Running {
        addr,
        seen,
        _stop: stop,
    }
}

impl Fake {
    /// Records the call's credentials and trace context and returns the
    /// message.
    fn record<T>(&self, request: Request<T>) -> T {
        let header = |name: &str| {
            request
                .metadata()
                .get(name)
                .map(|value| value.to_str().unwrap().to_owned())
        };
        let mut seen = self.seen.lock().unwrap();
        seen.authorizations.push(header("authorization"));
        seen.trace_contexts
            .push((header("traceparent"), header("tracestate")));
        drop(seen);
        request.into_inner()
    }
}

type OutcomeStream = Pin<Box<dyn Stream<Item = Result<WatchOutcomesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DeliveryService for Fake {
    async fn enqueue(
        &self,
        request: Request<EnqueueRequest>,
    ) -> Result<Response<EnqueueResponse>, Status> {
        let request = self.record(request);
        if request.url == "ftp://refused" {
            return Err(Status::invalid_argument(
                "url: scheme must be http or https",
            ));
        }
        self.seen.lock().unwrap().enqueues.push(request);
        Ok(Response::new(self.enqueue.clone()))
    }

    async fn enqueue_batch(
        &self,
        request: Request<EnqueueBatchRequest>,
    ) -> Result<Response<EnqueueBatchResponse>, Status> {
        let request = self.record(request);
        let results = request
            .deliveries
            .into_iter()
            .map(|delivery| {
                let result = if delivery.url == "ftp://refused" {
                    BatchResult::Error(tonic_types::Status {
                        code: tonic::Code::InvalidArgument.into(),
                        message: "url: scheme must be http or https".into(),
                        details: Vec::new(),
                    })
                } else {
                    self.seen.lock().unwrap().enqueues.push(delivery);
                    BatchResult::Accepted(self.enqueue.clone())
                };
                EnqueueBatchResult {
                    result: Some(result),
                }
            })
            .collect();
        Ok(Response::new(EnqueueBatchResponse { results }))
    }

    async fn get_delivery(
        &self,
        request: Request<GetDeliveryRequest>,
    ) -> Result<Response<GetDeliveryResponse>, Status> {
        let request = self.record(request);
        self.seen.lock().unwrap().gets.push(request.clone());
        if request.id == "hollow" {
            return Ok(Response::new(GetDeliveryResponse { delivery: None }));
        }
        match self.deliveries.iter().find(|d| d.id == request.id) {
            Some(delivery) => Ok(Response::new(GetDeliveryResponse {
                delivery: Some(delivery.clone()),
            })),
            None => Err(Status::not_found(format!("no delivery {}", request.id))),
        }
    }

    async fn list_dead_letters(
        &self,
        request: Request<ListDeadLettersRequest>,
    ) -> Result<Response<ListDeadLettersResponse>, Status> {
        let request = self.record(request);
        self.seen
            .lock()
            .unwrap()
            .dead_letter_pages
            .push(request.clone());
        match self.dead_letter_pages.get(&request.page_token) {
            Some((deliveries, next)) => Ok(Response::new(ListDeadLettersResponse {
                deliveries: deliveries.clone(),
                next_page_token: next.clone(),
            })),
            None => Err(Status::invalid_argument(
                "page_token: not one this server gave",
            )),
        }
    }

    type WatchOutcomesStream = OutcomeStream;

    async fn watch_outcomes(
        &self,
        request: Request<WatchOutcomesRequest>,
    ) -> Result<Response<OutcomeStream>, Status> {
        let request = self.record(request);
        self.seen.lock().unwrap().watches.push(request);
        match self.watch_feed.lock().unwrap().take() {
            Some(feed) => Ok(Response::new(Box::pin(ReceiverStream::new(feed)))),
            None => Err(Status::out_of_range("after_sequence: older than retention")),
        }
    }

    async fn cancel_delivery(
        &self,
        _: Request<CancelDeliveryRequest>,
    ) -> Result<Response<CancelDeliveryResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn redrive_dead_letters(
        &self,
        request: Request<RedriveDeadLettersRequest>,
    ) -> Result<Response<RedriveDeadLettersResponse>, Status> {
        let request = self.record(request);
        self.seen.lock().unwrap().redrives.push(request);
        Ok(Response::new(RedriveDeadLettersResponse::default()))
    }

    async fn list_deliveries(
        &self,
        request: Request<ListDeliveriesRequest>,
    ) -> Result<Response<ListDeliveriesResponse>, Status> {
        let request = self.record(request);
        self.seen
            .lock()
            .unwrap()
            .delivery_pages
            .push(request.clone());
        match self.dead_letter_pages.get(&request.page_token) {
            Some((deliveries, next)) => Ok(Response::new(ListDeliveriesResponse {
                deliveries: deliveries.clone(),
                next_page_token: next.clone(),
            })),
            None => Err(Status::invalid_argument(
                "page_token: not one this server gave",
            )),
        }
    }

    async fn get_backlog(
        &self,
        _: Request<GetBacklogRequest>,
    ) -> Result<Response<GetBacklogResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
}

/// A delivery with just an id, as listings return them.
pub fn delivery(id: &str) -> Delivery {
    Delivery {
        id: id.to_owned(),
        state: DeliveryState::DeadLettered.into(),
        ..Default::default()
    }
}
