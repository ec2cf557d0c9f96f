//! [`Client`]: one connection to Herald and every call on it (the
//! destination calls are in [`crate::destinations`]).
//!
//! The client is a thin typed layer over the generated tonic client: it adds
//! the caller's API key to each request, unwraps responses into the message
//! the caller wants and turns list RPCs into streams. It never retries on its
//! own; an enqueue with an idempotency key is safe for the caller to repeat.

use futures::{Stream, stream::BoxStream};
use herald_proto::v1::{
    CancelDeliveryRequest, DeliveryView, GetDeliveryRequest, ListDeadLettersRequest,
    delivery_service_client::DeliveryServiceClient,
};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::pages::{Page, pages};
use crate::{Delivery, DeliveryQuery, EnqueueBuilder, Error, Outcome, Redrive, WatchOptions};

/// How often an idle connection is pinged.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is dropped.
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// The endpoint for `url`, with keepalive pings that keep idle outcome
/// streams open through proxies and NATs, and notice a dead server
/// without waiting for TCP. An `https://` URL speaks TLS, trusting `ca_pem`
/// when given, otherwise the system's certificate authorities.
fn endpoint(url: &str, ca_pem: Option<&[u8]>) -> Result<Endpoint, Error> {
    let invalid = |cause: tonic::transport::Error| Error::InvalidUrl {
        url: url.to_owned(),
        cause: cause.into(),
    };
    let mut endpoint = Endpoint::from_shared(url.to_owned()).map_err(invalid)?;
    let tls = match ca_pem {
        Some(ca_pem) => Some(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem))),
        None => url
            .starts_with("https://")
            .then(|| ClientTlsConfig::new().with_native_roots()),
    };
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(invalid)?;
    }
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
    /// The W3C `traceparent` and `tracestate` sent with every call.
    trace_context: Option<(MetadataValue<Ascii>, Option<MetadataValue<Ascii>>)>,
}

impl Client {
    /// Connects to Herald at `url`, e.g. `http://127.0.0.1:50051`, or
    /// `https://herald.example.com:50051` for a TLS listener whose
    /// certificate a certificate authority of the system issued (the
    /// platform's store; `SSL_CERT_FILE` or `SSL_CERT_DIR` name others).
    ///
    /// Fails with [`Error::InvalidUrl`] or [`Error::Connect`]; after a
    /// successful connect, a lost connection is re-established on the next
    /// call, and calls made while it is down fail with code `Unavailable`.
    pub async fn connect(url: impl Into<String>) -> Result<Self, Error> {
        let url = url.into();
        let endpoint = endpoint(&url, None)?;
        Self::connect_endpoint(url, endpoint).await
    }

    /// Connects over TLS to a Herald whose listener has a certificate
    /// issued by `ca_pem` (PEM), e.g. `https://herald.internal:50051`. The
    /// certificate must name the URL's host.
    pub async fn connect_tls(url: impl Into<String>, ca_pem: &[u8]) -> Result<Self, Error> {
        let url = url.into();
        let endpoint = endpoint(&url, Some(ca_pem))?;
        Self::connect_endpoint(url, endpoint).await
    }

    async fn connect_endpoint(url: String, endpoint: Endpoint) -> Result<Self, Error> {
        match endpoint.connect().await {
            Ok(channel) => Ok(Self::from_channel(channel)),
            Err(cause) => Err(Error::Connect {
                url,
                cause: cause.into(),
            }),
        }
    }

    /// Uses a channel the caller built (for TLS, timeouts, lazy connection
    /// or load balancing).
    pub fn from_channel(channel: Channel) -> Self {
        Self {
            channel,
            authorization: None,
            trace_context: None,
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

    /// A client that sends this W3C trace context (`traceparent`, and
    /// `tracestate` if given) with every call, sharing this one's
    /// connection: Herald passes it on to the receiver with every attempt
    /// of what it enqueues, so the receiver's trace joins the caller's.
    /// Make one per traced operation; it is cheap.
    ///
    /// ```no_run
    /// # async fn example(client: herald_client::Client) -> Result<(), herald_client::Error> {
    /// let traced = client.with_trace_context(
    ///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ///     None,
    /// )?;
    /// traced.enqueue("https://example.com/webhooks").send().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Fails with [`Error::InvalidTraceContext`] for a value that cannot
    /// be a header; Herald ignores one that is not valid W3C trace context.
    pub fn with_trace_context(
        &self,
        traceparent: &str,
        tracestate: Option<&str>,
    ) -> Result<Self, Error> {
        let header = |value: &str| value.parse().map_err(|_| Error::InvalidTraceContext);
        let tracestate = tracestate.map(header).transpose()?;
        Ok(Self {
            trace_context: Some((header(traceparent)?, tracestate)),
            ..self.clone()
        })
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
        response
            .delivery
            .map(Delivery::from)
            .ok_or(Error::MissingField("delivery"))
    }

    /// Cancels the pending delivery `id` and returns it, now CANCELLED. A
    /// delivery that already finished is an error with code
    /// `FailedPrecondition`.
    pub async fn cancel_delivery(&self, id: &str) -> Result<Delivery, Error> {
        let request = self.request(CancelDeliveryRequest { id: id.to_owned() });
        let response = self.grpc().cancel_delivery(request).await?.into_inner();
        response
            .delivery
            .map(Delivery::from)
            .ok_or(Error::MissingField("delivery"))
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
            let query = query.clone();
            async move { client.deliveries_page(&query, &page_token).await }
        })
    }

    /// One page of the deliveries matching `query`: the first for an empty
    /// `page_token`, otherwise the one a previous page's
    /// [`Page::next_page_token`] (of the same query) names, so a listing
    /// can resume where another request, or another process, left it.
    pub async fn deliveries_page(
        &self,
        query: &DeliveryQuery,
        page_token: &str,
    ) -> Result<Page<Delivery>, Error> {
        let request = self.request(query.request(page_token.to_owned()));
        let page = self.grpc().list_deliveries(request).await?.into_inner();
        Ok(Page::new(
            page.deliveries.into_iter().map(Into::into).collect(),
            page.next_page_token,
        ))
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
            async move { client.dead_letters_page(page_size, &page_token).await }
        })
    }

    /// One page of dead letters (in the basic view), of `page_size` (0: the
    /// server's default): the first for an empty `page_token`, otherwise
    /// the one a previous page's [`Page::next_page_token`] names.
    pub async fn dead_letters_page(
        &self,
        page_size: u32,
        page_token: &str,
    ) -> Result<Page<Delivery>, Error> {
        let request = self.request(ListDeadLettersRequest {
            page_size,
            page_token: page_token.to_owned(),
            view: DeliveryView::Basic.into(),
        });
        let page = self.grpc().list_dead_letters(request).await?.into_inner();
        Ok(Page::new(
            page.deliveries.into_iter().map(Into::into).collect(),
            page.next_page_token,
        ))
    }

    /// Streams outcomes as Herald records them, from where `options` says
    /// (now, the oldest kept, or after a sequence) and filtered as it says.
    /// The stream reconnects by itself when the connection drops, the
    /// server restarts or its database fails over (UNAVAILABLE or INTERNAL
    /// answers), resuming after the last outcome it yielded, so every
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

    /// `message` as a request carrying the caller's credentials and trace
    /// context.
    pub(crate) fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        if let Some(authorization) = &self.authorization {
            metadata.insert("authorization", authorization.clone());
        }
        if let Some((traceparent, tracestate)) = &self.trace_context {
            metadata.insert("traceparent", traceparent.clone());
            if let Some(tracestate) = tracestate {
                metadata.insert("tracestate", tracestate.clone());
            }
        }
        request
    }
}
