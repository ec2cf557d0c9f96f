//! [`Client`]: one connection to Herald and every call on it (the
//! destination calls are in [`crate::destinations`]).
//!
//! The client is a thin typed layer over the generated tonic client: it adds
//! the caller's API key to each request, unwraps responses into the message
//! the caller wants and turns list RPCs into streams. It never retries on its
//! own; an enqueue with an idempotency key is safe for the caller to repeat.

use futures::{Stream, stream::BoxStream};
use herald_proto::v1::{
    CancelDeliveryRequest, Delivery, DeliveryView, GetDeliveryRequest, ListDeadLettersRequest,
    Outcome, delivery_service_client::DeliveryServiceClient,
};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::pages::pages;
use crate::{DeliveryQuery, EnqueueBuilder, Error, Redrive, WatchOptions};

/// How often an idle connection is pinged.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is dropped.
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// The endpoint for `url`, with keepalive pings that keep idle outcome
/// streams open through proxies and NATs, and notice a dead server
/// without waiting for TCP.
fn endpoint(url: &str) -> Result<Endpoint, Error> {
    let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|cause| Error::InvalidUrl {
        url: url.to_owned(),
        cause,
    })?;
    Ok(endpoint
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true))
}

/// The largest response the client takes, well above anything Herald
/// sends: a listing page stops at 2 MiB but always holds one delivery, and
/// one delivery (from a listing or `GetDelivery`) carries a body of up to
/// the server's `HERALD_MAX_BODY_BYTES`; tonic's default of 4 MiB would
/// refuse a body a server configured for larger ones accepted.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// A connection to one Herald server; cheap to clone and share between
/// tasks (clones share the underlying HTTP/2 connection).
#[derive(Debug, Clone)]
pub struct Client {
    channel: Channel,
    /// `Bearer <api key>`, marked sensitive so it never shows in `Debug`.
    authorization: Option<MetadataValue<Ascii>>,
}

impl Client {
    /// Connects to Herald at `url`, e.g. `http://127.0.0.1:50051`.
    ///
    /// Fails with [`Error::InvalidUrl`] or [`Error::Connect`]; after a
    /// successful connect, a lost connection is re-established on the next
    /// call, and calls made while it is down fail with code `Unavailable`.
    pub async fn connect(url: impl Into<String>) -> Result<Self, Error> {
        let url = url.into();
        let endpoint = endpoint(&url)?;
        Self::connect_endpoint(url, endpoint).await
    }

    /// Connects over TLS to a Herald whose listener has a certificate
    /// issued by `ca_pem` (PEM), e.g. `https://herald.internal:50051`. The
    /// certificate must name the URL's host.
    pub async fn connect_tls(url: impl Into<String>, ca_pem: &[u8]) -> Result<Self, Error> {
        let url = url.into();
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
        let endpoint = endpoint(&url)?
            .tls_config(tls)
            .map_err(|cause| Error::InvalidUrl {
                url: url.clone(),
                cause,
            })?;
        Self::connect_endpoint(url, endpoint).await
    }

    async fn connect_endpoint(url: String, endpoint: Endpoint) -> Result<Self, Error> {
        match endpoint.connect().await {
            Ok(channel) => Ok(Self::from_channel(channel)),
            Err(cause) => Err(Error::Connect { url, cause }),
        }
    }

    /// Uses a channel the caller built (for TLS, timeouts, lazy connection
    /// or load balancing).
    pub fn from_channel(channel: Channel) -> Self {
        Self {
            channel,
            authorization: None,
        }
    }

    /// Sends `authorization: Bearer <api_key>` with every call, which is how
    /// Herald knows the caller's tenant.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), herald_client::Error> {
    /// let client = herald_client::Client::connect("http://127.0.0.1:50051")
    ///     .await?
    ///     .with_api_key("my-api-key")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_api_key(mut self, api_key: &str) -> Result<Self, Error> {
        let mut value: MetadataValue<Ascii> = format!("Bearer {api_key}")
            .parse()
            .map_err(|_| Error::InvalidApiKey)?;
        value.set_sensitive(true);
        self.authorization = Some(value);
        Ok(self)
    }

    /// Starts an enqueue of a request to `url`; describe it on the returned
    /// builder and finish with [`EnqueueBuilder::send`].
    pub fn enqueue(&self, url: impl Into<String>) -> EnqueueBuilder {
        EnqueueBuilder::new(self.clone(), url.into())
    }

    /// Enqueues many deliveries in one call, stored in one transaction;
    /// describe each with [`Client::enqueue`] (without sending it). Results
    /// come back in order: each the accepted delivery or why Herald refused
    /// it. The call fails as a whole only if nothing could be stored.
    ///
    /// ```no_run
    /// # async fn example(client: herald_client::Client) -> Result<(), herald_client::Error> {
    /// let results = client
    ///     .enqueue_batch([
    ///         client.enqueue("https://a.example/hook").body(b"{}".to_vec()),
    ///         client.enqueue("https://b.example/hook").body(b"{}".to_vec()),
    ///     ])
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_batch(
        &self,
        deliveries: impl IntoIterator<Item = EnqueueBuilder>,
    ) -> Result<Vec<Result<crate::Enqueued, crate::Refused>>, Error> {
        crate::enqueue::batch(self, deliveries.into_iter().collect()).await
    }

    /// The delivery with `id`, with all its attempts. An unknown id (or one
    /// of another tenant) is an error with code `NotFound`.
    pub async fn get_delivery(&self, id: &str) -> Result<Delivery, Error> {
        let request = self.request(GetDeliveryRequest { id: id.to_owned() });
        let response = self.grpc().get_delivery(request).await?.into_inner();
        response.delivery.ok_or(Error::MissingField("delivery"))
    }

    /// Cancels the pending delivery `id` and returns it, now CANCELLED. A
    /// delivery that already finished is an error with code
    /// `FailedPrecondition`.
    pub async fn cancel_delivery(&self, id: &str) -> Result<Delivery, Error> {
        let request = self.request(CancelDeliveryRequest { id: id.to_owned() });
        let response = self.grpc().cancel_delivery(request).await?.into_inner();
        response.delivery.ok_or(Error::MissingField("delivery"))
    }

    /// Starts a redrive of dead letters; choose them on the returned
    /// [`Redrive`] and finish with [`Redrive::send`].
    pub fn redrive_dead_letters(&self) -> Redrive {
        Redrive::new(self.clone())
    }

    /// Deliveries matching `query`, newest first, fetched a page at a time
    /// as the stream is read.
    pub fn deliveries(
        &self,
        query: DeliveryQuery,
    ) -> impl Stream<Item = Result<Delivery, Error>> + Send + 'static {
        let client = self.clone();
        pages(move |page_token| {
            let client = client.clone();
            let request = client.request(query.request(page_token));
            async move {
                let page = client.grpc().list_deliveries(request).await?.into_inner();
                Ok((page.deliveries, page.next_page_token))
            }
        })
    }

    /// Every dead letter, oldest first, fetched a page at a time (of the
    /// server's default size) as the stream is read. Each is in the basic
    /// view: body, headers and attempts are not filled in; use
    /// [`Client::get_delivery`] for them.
    pub fn dead_letters(&self) -> impl Stream<Item = Result<Delivery, Error>> + Send + 'static {
        self.dead_letters_by_page(0)
    }

    /// Like [`Client::dead_letters`], asking for `page_size` deliveries per
    /// request (0: the server's default).
    pub fn dead_letters_by_page(
        &self,
        page_size: u32,
    ) -> impl Stream<Item = Result<Delivery, Error>> + Send + 'static {
        let client = self.clone();
        pages(move |page_token| {
            let client = client.clone();
            let request = client.request(ListDeadLettersRequest {
                page_size,
                page_token,
                view: DeliveryView::Basic.into(),
            });
            async move {
                let page = client.grpc().list_dead_letters(request).await?.into_inner();
                Ok((page.deliveries, page.next_page_token))
            }
        })
    }

    /// Streams outcomes as Herald records them, from where `options` says
    /// (now, the oldest kept, or after a sequence) and filtered as it says.
    /// The stream reconnects by itself when the connection drops or the
    /// server restarts, resuming after the last outcome it yielded, so every
    /// outcome is seen once, in order. It ends only with an error the
    /// request itself caused (e.g. `OutOfRange` for a cursor older than the
    /// server keeps) or when dropped. The stream is open when this returns,
    /// so "now" means the call; a failure to open it is returned at once.
    /// Started "now", a reconnect before the first outcome resumes from
    /// where the server said "now" was, so nothing recorded while the
    /// stream was down is skipped.
    pub async fn watch_outcomes(
        &self,
        options: WatchOptions,
    ) -> Result<BoxStream<'static, Result<Outcome, Error>>, Error> {
        crate::watch::resuming(self.clone(), options).await
    }

    /// A handle on the generated delivery client for one call (clients
    /// are cheap to make and share the channel).
    pub(crate) fn grpc(&self) -> DeliveryServiceClient<Channel> {
        DeliveryServiceClient::new(self.channel()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// The connection every call goes over.
    pub(crate) fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// `message` as a request carrying the caller's credentials.
    pub(crate) fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        request
    }
}
