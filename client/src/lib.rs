//! A typed client for [Herald](https://example.invalid/herald), the durable
//! HTTP/webhook delivery service: enqueue deliveries, look at them, page
//! through dead letters and stream outcomes as they happen.
//!
//! ```no_run
//! use futures::StreamExt;
//! use herald_client::{Client, OutcomeKind};
//!
//! # async fn example() -> Result<(), herald_client::Error> {
//! let client = Client::connect("http://127.0.0.1:50051").await?;
//!
//! // Durable once `send` returns; the same key again returns the same delivery.
//! let enqueued = client
//!     .enqueue("https://example.com/webhooks")
//!     .json(&serde_json::json!({ "type": "order.created", "id": 42 }))
//!     .header("x-event-type", "order.created")
//!     .idempotency_key("order-42")
//!     .send()
//!     .await?;
//!
//! let delivery = client.get_delivery(&enqueued.id).await?;
//! println!("{} is {:?}", delivery.id, delivery.state());
//!
//! let mut outcomes = client.watch_outcomes(None).await?;
//! while let Some(outcome) = outcomes.next().await {
//!     let outcome = outcome?;
//!     if outcome.kind() == OutcomeKind::DeadLettered {
//!         eprintln!("gave up on {}: {}", outcome.delivery_id, outcome.error_message);
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod enqueue;
mod error;
mod operate;

use futures::{Stream, StreamExt, TryStreamExt, stream};
use herald_proto::v1::{
    GetDeliveryRequest, ListDeadLettersRequest, WatchOutcomesRequest,
    delivery_service_client::DeliveryServiceClient,
};
use tonic::transport::{Channel, Endpoint};

pub use enqueue::{EnqueueBuilder, Enqueued};
pub use error::Error;
/// The generated protocol types, for anything this crate does not wrap.
pub use herald_proto::v1 as proto;
pub use herald_proto::v1::{
    Attempt, Delivery, DeliveryState, Header, HttpMethod, Outcome, OutcomeKind,
};
pub use operate::{DeliveryQuery, Redrive};

/// Page size used by [`Client::dead_letters`].
const DEFAULT_PAGE_SIZE: u32 = 100;

/// A connection to one Herald server; cheap to clone and share.
#[derive(Debug, Clone)]
pub struct Client {
    grpc: DeliveryServiceClient<Channel>,
}

impl Client {
    /// Connects to Herald at `url`, e.g. `http://127.0.0.1:50051`.
    pub async fn connect(url: impl Into<String>) -> Result<Self, Error> {
        let url = url.into();
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|source| Error::InvalidUrl { url, source })?;
        let channel = endpoint.connect().await.map_err(Error::Connect)?;
        Ok(Self::from_channel(channel))
    }

    /// Uses an existing channel (for TLS, timeouts or load balancing set up
    /// by the caller).
    pub fn from_channel(channel: Channel) -> Self {
        Self {
            grpc: DeliveryServiceClient::new(channel),
        }
    }

    /// Starts an enqueue of a request to `url`; finish it with
    /// [`EnqueueBuilder::send`].
    pub fn enqueue(&self, url: impl Into<String>) -> EnqueueBuilder {
        EnqueueBuilder::new(self.grpc.clone(), url.into())
    }

    /// Cancels the pending delivery `id` and returns it, now CANCELLED. A
    /// delivery that already finished is an error with code
    /// `FailedPrecondition`.
    pub async fn cancel_delivery(&self, id: &str) -> Result<Delivery, Error> {
        let response = self
            .grpc
            .clone()
            .cancel_delivery(proto::CancelDeliveryRequest { id: id.to_owned() })
            .await?;
        response
            .into_inner()
            .delivery
            .ok_or(Error::MissingField("delivery"))
    }

    /// Starts a redrive of dead letters; choose them on the returned
    /// [`Redrive`] and finish with [`Redrive::send`].
    pub fn redrive_dead_letters(&self) -> Redrive {
        Redrive::new(self.grpc.clone())
    }

    /// Deliveries matching `query`, newest first, fetched a page at a time
    /// as the stream is read.
    pub fn deliveries(
        &self,
        query: DeliveryQuery,
    ) -> impl Stream<Item = Result<Delivery, Error>> + Send + 'static {
        let grpc = self.grpc.clone();
        pages(move |page_token| {
            let mut grpc = grpc.clone();
            let request = query.request(page_token);
            async move {
                let page = grpc.list_deliveries(request).await?.into_inner();
                Ok((page.deliveries, page.next_page_token))
            }
        })
    }

    /// The delivery with `id`, with all its attempts.
    pub async fn get_delivery(&self, id: &str) -> Result<Delivery, Error> {
        let response = self
            .grpc
            .clone()
            .get_delivery(GetDeliveryRequest { id: id.to_owned() })
            .await?;
        response
            .into_inner()
            .delivery
            .ok_or(Error::MissingField("delivery"))
    }

    /// Every dead letter, oldest first, fetched a page at a time as the
    /// stream is read.
    pub fn dead_letters(&self) -> impl Stream<Item = Result<Delivery, Error>> + Send + 'static {
        self.dead_letters_by_page(DEFAULT_PAGE_SIZE)
    }

    /// Like [`Client::dead_letters`], fetching `page_size` per request.
    pub fn dead_letters_by_page(
        &self,
        page_size: u32,
    ) -> impl Stream<Item = Result<Delivery, Error>> + Send + 'static {
        let grpc = self.grpc.clone();
        pages(move |page_token| {
            let mut grpc = grpc.clone();
            async move {
                let page = grpc
                    .list_dead_letters(ListDeadLettersRequest {
                        page_size,
                        page_token,
                    })
                    .await?
                    .into_inner();
                Ok((page.deliveries, page.next_page_token))
            }
        })
    }

    /// Streams outcomes as Herald records them. With `after_sequence`,
    /// first replays every recorded outcome after that sequence.
    pub async fn watch_outcomes(
        &self,
        after_sequence: Option<u64>,
    ) -> Result<impl Stream<Item = Result<Outcome, Error>> + Send + 'static, Error> {
        let stream = self
            .grpc
            .clone()
            .watch_outcomes(WatchOutcomesRequest { after_sequence })
            .await?
            .into_inner();
        Ok(stream.map(|item| item?.outcome.ok_or(Error::MissingField("outcome"))))
    }
}

/// Follows page tokens: `fetch` gets the page for a token and returns its
/// items and the next token (empty after the last page).
fn pages<F, Fut>(fetch: F) -> impl Stream<Item = Result<Delivery, Error>> + Send + 'static
where
    F: Fn(String) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(Vec<Delivery>, String), Error>> + Send + 'static,
{
    // State: the token of the next page, or None once the last is read.
    stream::try_unfold(Some(String::new()), move |token| {
        let page = token.map(&fetch);
        async move {
            let Some(page) = page else {
                return Ok(None);
            };
            let (items, next) = page.await?;
            let next = (!next.is_empty()).then_some(next);
            Ok::<_, Error>(Some((stream::iter(items.into_iter().map(Ok)), next)))
        }
    })
    .try_flatten()
}
