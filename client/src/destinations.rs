//! The destination calls on [`Client`]: list and look at the receivers a
//! tenant sends to, give one its own policy ([`PolicyUpdate`]), pause,
//! resume and enable it.
//!
//! A destination is named by `scheme://host:port` (e.g.
//! `https://api.example.com:443`) or by any http(s) URL to it.

use std::time::Duration;

use futures::Stream;
use herald_proto::v1::{
    CircuitPolicy, EnableDestinationRequest, GetDestinationRequest, ListDestinationsRequest,
    PauseDestinationRequest, RateLimit, ResumeDestinationRequest, SetDestinationPolicyRequest,
    destination_service_client::DestinationServiceClient,
};
use tonic::transport::Channel;

use crate::{
    Client, Destination, DestinationState, Error, RatePeriod,
    pages::{Page, pages},
};

impl Client {
    /// The caller's destinations matching `query`, in the order of their
    /// names, fetched a page at a time as the stream is read.
    pub fn destinations(
        &self,
        query: DestinationQuery,
    ) -> impl Stream<Item = Result<Destination, Error>> + Send + 'static {
        let client = self.clone();
        pages(move |page_token| {
            let client = client.clone();
            let query = query.clone();
            async move { client.destinations_page(&query, &page_token).await }
        })
    }

    /// One page of the caller's destinations matching `query`: the first
    /// for an empty `page_token`, otherwise the one a previous page's
    /// [`Page::next_page_token`] (of the same query) names.
    pub async fn destinations_page(
        &self,
        query: &DestinationQuery,
        page_token: &str,
    ) -> Result<Page<Destination>, Error> {
        let request = self.request(ListDestinationsRequest {
            page_size: query.page_size,
            page_token: page_token.to_owned(),
            state: query.state.map_or(0, DestinationState::number),
        });
        let page = self
            .destination_grpc()
            .list_destinations(request)
            .await?
            .into_inner();
        Ok(Page::new(
            page.destinations.into_iter().map(Into::into).collect(),
            page.next_page_token,
        ))
    }

    /// The destination `destination` names, with its state, circuit,
    /// policy and recent health. One Herald has not seen (or another
    /// tenant's) is an error with code `NotFound`.
    pub async fn get_destination(&self, destination: &str) -> Result<Destination, Error> {
        let request = self.request(GetDestinationRequest {
            destination: destination.to_owned(),
        });
        let response = self
            .destination_grpc()
            .get_destination(request)
            .await?
            .into_inner();
        answered(response.destination)
    }

    /// Starts a change of `destination`'s own policy; describe it on the
    /// returned [`PolicyUpdate`] and finish with [`PolicyUpdate::send`].
    ///
    /// ```no_run
    /// # async fn example(client: herald_client::Client) -> Result<(), herald_client::Error> {
    /// use herald_client::RatePeriod;
    /// let destination = client
    ///     .set_destination_policy("https://api.example.com")
    ///     .max_in_flight(4)
    ///     .rate_limit(50, RatePeriod::Second)
    ///     .reset("circuit.cooldown")
    ///     .send()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn set_destination_policy(&self, destination: impl Into<String>) -> PolicyUpdate {
        PolicyUpdate {
            client: self.clone(),
            request: SetDestinationPolicyRequest {
                destination: destination.into(),
                ..Default::default()
            },
        }
    }

    /// Pauses an active destination, saying why (`reason` may be empty):
    /// its deliveries are held until it is resumed. One that is not active
    /// is an error with code `FailedPrecondition`.
    pub async fn pause_destination(
        &self,
        destination: &str,
        reason: &str,
    ) -> Result<Destination, Error> {
        let request = self.request(PauseDestinationRequest {
            destination: destination.to_owned(),
            reason: reason.to_owned(),
        });
        let response = self
            .destination_grpc()
            .pause_destination(request)
            .await?
            .into_inner();
        answered(response.destination)
    }

    /// Resumes a paused destination: its held deliveries are sent again.
    /// One that is not paused is an error with code `FailedPrecondition`.
    pub async fn resume_destination(&self, destination: &str) -> Result<Destination, Error> {
        let request = self.request(ResumeDestinationRequest {
            destination: destination.to_owned(),
        });
        let response = self
            .destination_grpc()
            .resume_destination(request)
            .await?
            .into_inner();
        answered(response.destination)
    }

    /// Enables a disabled destination: it takes deliveries again, its
    /// circuit closed. One that is not disabled is an error with code
    /// `FailedPrecondition`.
    pub async fn enable_destination(&self, destination: &str) -> Result<Destination, Error> {
        let request = self.request(EnableDestinationRequest {
            destination: destination.to_owned(),
        });
        let response = self
            .destination_grpc()
            .enable_destination(request)
            .await?
            .into_inner();
        answered(response.destination)
    }

    /// A handle on the generated destination client for one call.
    fn destination_grpc(&self) -> DestinationServiceClient<Channel> {
        DestinationServiceClient::new(self.channel())
            .max_decoding_message_size(crate::client::MAX_RESPONSE_BYTES)
    }
}

/// Filters for [`Client::destinations`]; the default lists every one.
#[derive(Debug, Clone, Default)]
pub struct DestinationQuery {
    state: Option<DestinationState>,
    page_size: u32,
}

impl DestinationQuery {
    /// Only destinations in `state`.
    pub fn state(mut self, state: DestinationState) -> Self {
        self.state = Some(state);
        self
    }

    /// Destinations fetched per request (the server's default when unset).
    pub fn page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size;
        self
    }
}

/// A change of one destination's own policy being described; finish with
/// [`PolicyUpdate::send`]. What it does not mention is kept; a field may
/// not be both set and reset.
#[derive(Debug)]
#[must_use = "a policy update does nothing until `send` is awaited"]
pub struct PolicyUpdate {
    client: Client,
    request: SetDestinationPolicyRequest,
}

impl PolicyUpdate {
    /// Most attempts in flight to it at once (1 to 10000).
    pub fn max_in_flight(mut self, max_in_flight: u32) -> Self {
        self.request.max_in_flight = Some(max_in_flight);
        self
    }

    /// At most `requests` per `period`, evenly spaced unless
    /// [`PolicyUpdate::burst`] allows more at once.
    pub fn rate_limit(mut self, requests: u32, period: RatePeriod) -> Self {
        let limit = self
            .request
            .rate_limit
            .get_or_insert_with(RateLimit::default);
        limit.requests = requests;
        limit.period = period.number();
        self
    }

    /// Requests that may go at once after a quiet spell, with
    /// [`PolicyUpdate::rate_limit`].
    pub fn burst(mut self, burst: u32) -> Self {
        let limit = self
            .request
            .rate_limit
            .get_or_insert_with(RateLimit::default);
        limit.burst = burst;
        self
    }

    /// No rate limit for this destination, whatever the server's default.
    pub fn no_rate_limit(mut self) -> Self {
        self.request.rate_limit = Some(RateLimit::default());
        self
    }

    /// Consecutive failures that open its circuit (1 to 10000).
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.circuit().failure_threshold = Some(failures);
        self
    }

    /// How long its open circuit waits before the first probe.
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.circuit().cooldown = Some(proto_duration(cooldown));
        self
    }

    /// The longest its open circuit waits between probes.
    pub fn cooldown_max(mut self, cooldown_max: Duration) -> Self {
        self.circuit().cooldown_max = Some(proto_duration(cooldown_max));
        self
    }

    /// Returns `field` to the server's default: one of `max_in_flight`,
    /// `rate_limit`, `circuit.failure_threshold`, `circuit.cooldown` and
    /// `circuit.cooldown_max`.
    pub fn reset(mut self, field: impl Into<String>) -> Self {
        self.request.reset.push(field.into());
        self
    }

    /// Sends the change; returns the destination with its new policy. A
    /// value out of range is an error with code `InvalidArgument` that
    /// names the field and its range.
    pub async fn send(self) -> Result<Destination, Error> {
        let request = self.client.request(self.request);
        let response = self
            .client
            .destination_grpc()
            .set_destination_policy(request)
            .await?
            .into_inner();
        answered(response.destination)
    }

    fn circuit(&mut self) -> &mut CircuitPolicy {
        self.request
            .circuit
            .get_or_insert_with(CircuitPolicy::default)
    }
}

/// `duration` as a proto duration (saturating: no cool-off comes close).
fn proto_duration(duration: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(duration).unwrap_or(prost_types::Duration {
        seconds: i64::MAX,
        nanos: 0,
    })
}

/// The destination an answer carries.
fn answered(destination: Option<herald_proto::v1::Destination>) -> Result<Destination, Error> {
    destination
        .map(Destination::from)
        .ok_or(Error::MissingField("destination"))
}
