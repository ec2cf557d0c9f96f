//! A resuming outcome stream: it reconnects by itself when the connection
//! drops, the server answers UNAVAILABLE or INTERNAL (its database failing
//! over) or ends the stream (a restart),
//! and resumes after the last sequence it yielded, so the caller sees every
//! outcome once, in order. Before the first outcome, a stream opened "now"
//! resumes from where the server said "now" was
//! ([`herald_proto::WATCH_AFTER_SEQUENCE`]), not from a later "now".

use std::time::Duration;

use futures::{
    StreamExt,
    stream::{self, BoxStream},
};
use herald_proto::{
    WATCH_AFTER_SEQUENCE,
    v1::{WatchOutcomesRequest, WatchOutcomesResponse, watch_outcomes_request::Start},
};
use tonic::{Response, Streaming};

use crate::{Client, Code, Error, Outcome, OutcomeKind};

/// First wait before reconnecting; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where an outcome stream starts and what it carries; the default starts
/// now and carries everything.
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    /// Where the stream starts: now when unset.
    start: Option<Start>,
    delivery_ids: Vec<String>,
    kinds: Vec<OutcomeKind>,
    destination_host: String,
    endpoint_id: String,
    event_type: String,
}

impl WatchOptions {
    /// Starts after this sequence: pass the last one you processed.
    pub fn after(mut self, sequence: u64) -> Self {
        self.start = Some(Start::AfterSequence(sequence));
        self
    }

    /// Starts from the oldest outcome the server still keeps.
    pub fn from_oldest(mut self) -> Self {
        self.start = Some(Start::FromOldest(true));
        self
    }

    /// Only outcomes of these deliveries.
    pub fn delivery_ids(mut self, ids: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.delivery_ids = ids.into_iter().map(Into::into).collect();
        self
    }

    /// Only outcomes of these kinds.
    pub fn kinds(mut self, kinds: impl IntoIterator<Item = OutcomeKind>) -> Self {
        self.kinds = kinds.into_iter().collect();
        self
    }

    /// Only outcomes of deliveries to this URL host.
    pub fn destination_host(mut self, host: impl Into<String>) -> Self {
        self.destination_host = host.into();
        self
    }

    /// Only outcomes of deliveries to this endpoint (made by publishing).
    pub fn endpoint_id(mut self, id: impl Into<String>) -> Self {
        self.endpoint_id = id.into();
        self
    }

    /// Only outcomes of deliveries of events of this type.
    pub fn event_type(mut self, name: impl Into<String>) -> Self {
        self.event_type = name.into();
        self
    }

    /// Whether the stream starts now (neither after a sequence nor from
    /// the oldest outcome).
    fn starts_now(&self) -> bool {
        self.start.is_none()
    }

    /// The request that (re)opens the stream after `last` yielded sequence.
    fn request(&self, last: Option<u64>) -> WatchOutcomesRequest {
        WatchOutcomesRequest {
            start: last.map(Start::AfterSequence).or(self.start),
            delivery_ids: self.delivery_ids.clone(),
            kinds: self.kinds.iter().map(|&kind| kind.number()).collect(),
            destination_host: self.destination_host.clone(),
            endpoint_id: self.endpoint_id.clone(),
            event_type: self.event_type.clone(),
        }
    }
}

/// Whether a failure is worth reconnecting over (the server or the network
/// went away, or its database did: during a failover the server answers
/// UNAVAILABLE or INTERNAL until the new primary takes over) rather than
/// reporting (the request itself is wrong).
fn resumable(error: &Error) -> bool {
    match error.code() {
        Some(
            Code::Unavailable | Code::Internal | Code::Unknown | Code::Cancelled | Code::Aborted,
        ) => true,
        Some(_) => false,
        None => matches!(error, Error::Connect { .. }),
    }
}

struct State {
    client: Client,
    options: WatchOptions,
    /// Where a reconnect resumes: the last sequence yielded, or before the
    /// first, where the server said a stream opened "now" started.
    last: Option<u64>,
    open: Option<Streaming<WatchOutcomesResponse>>,
    backoff: Duration,
    done: bool,
}

impl State {
    /// Takes the stream of an answered (re)open, and before the first
    /// outcome of a stream started "now", the point the server resolved
    /// "now" to: a reconnect resumes there, not at a later "now".
    fn opened(&mut self, response: Response<Streaming<WatchOutcomesResponse>>) {
        if self.last.is_none() && self.options.starts_now() {
            self.last = start_sequence(&response);
        }
        self.open = Some(response.into_inner());
    }

    async fn pause(&mut self) {
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// The next outcome, reconnecting as needed; `None` once finished.
    async fn next(&mut self) -> Option<Result<Outcome, Error>> {
        if self.done {
            return None;
        }
        loop {
            let Some(open) = self.open.as_mut() else {
                let request = self.client.request(self.options.request(self.last));
                match self.client.grpc().watch_outcomes(request).await {
                    Ok(response) => self.opened(response),
                    Err(status) => {
                        let error = Error::from(status);
                        if !resumable(&error) {
                            self.done = true;
                            return Some(Err(error));
                        }
                        self.pause().await;
                    }
                }
                continue;
            };
            match open.next().await {
                Some(Ok(response)) => {
                    let Some(outcome) = response.outcome else {
                        self.done = true;
                        return Some(Err(Error::MissingField("outcome")));
                    };
                    self.last = Some(outcome.sequence);
                    self.backoff = MIN_BACKOFF;
                    return Some(Ok(outcome.into()));
                }
                Some(Err(status)) => {
                    let error = Error::from(status);
                    if !resumable(&error) {
                        self.done = true;
                        return Some(Err(error));
                    }
                    self.open = None;
                }
                // The server ended the stream: it is shutting down.
                None => {
                    self.open = None;
                    self.pause().await;
                }
            }
        }
    }
}

/// The sequence the server says a stream starts after; `None` from a
/// server that does not say (one older than this metadata).
fn start_sequence<T>(response: &Response<T>) -> Option<u64> {
    response
        .metadata()
        .get(WATCH_AFTER_SEQUENCE)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Opens the stream (errors here are the caller's to see), then keeps it
/// resuming: the stream behind [`Client::watch_outcomes`].
pub(crate) async fn resuming(
    client: Client,
    options: WatchOptions,
) -> Result<BoxStream<'static, Result<Outcome, Error>>, Error> {
    let request = client.request(options.request(None));
    let response = client.grpc().watch_outcomes(request).await?;
    let mut state = State {
        client,
        options,
        last: None,
        open: None,
        backoff: MIN_BACKOFF,
        done: false,
    };
    state.opened(response);
    Ok(stream::unfold(state, |mut state| async move {
        state.next().await.map(|item| (item, state))
    })
    .boxed())
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_resume_after_the_last_yielded_sequence() {
        let options = WatchOptions::default()
            .from_oldest()
            .kinds([OutcomeKind::DeadLettered])
            .destination_host("example.com");
        let first = options.request(None);
        assert_eq!(first.start, Some(Start::FromOldest(true)));
        let again = options.request(Some(41));
        assert_eq!(again.start, Some(Start::AfterSequence(41)));
        assert_eq!(WatchOptions::default().request(None).start, None);
        assert_eq!(
            again.kinds,
            [i32::from(herald_proto::v1::OutcomeKind::DeadLettered)]
        );
        assert_eq!(again.destination_host, "example.com");
    }

    #[test]
    fn a_stream_started_now_resumes_where_the_server_said_now_was() {
        let mut response = Response::new(());
        response
            .metadata_mut()
            .insert(WATCH_AFTER_SEQUENCE, 17_u64.into());
        assert_eq!(start_sequence(&response), Some(17));
        assert_eq!(start_sequence(&Response::new(())), None);
        assert!(WatchOptions::default().starts_now());
        assert!(!WatchOptions::default().after(3).starts_now());
        assert!(!WatchOptions::default().from_oldest().starts_now());
    }

    #[test]
    fn only_lost_connections_are_retried() {
        assert!(resumable(&Error::from(tonic::Status::unavailable("down"))));
        assert!(resumable(&Error::from(tonic::Status::internal(
            "the database failed over"
        ))));
        assert!(!resumable(&Error::from(tonic::Status::out_of_range(
            "pruned"
        ))));
        assert!(!resumable(&Error::from(tonic::Status::invalid_argument(
            "bad"
        ))));
    }
}
