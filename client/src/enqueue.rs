//! [`EnqueueBuilder`]: describes one delivery and hands it to Herald.
//!
//! The builder only fills an `EnqueueRequest`; nothing is sent until
//! [`EnqueueBuilder::send`]. A JSON body that fails to serialize is kept as an
//! error and returned by `send`, so building never panics.

use std::time::SystemTime;

use herald_proto::v1::{
    EnqueueBatchRequest, EnqueueRequest, Header, enqueue_batch_result::Result as BatchResult,
};
use serde::Serialize;

use crate::{Client, Code, Error, HttpMethod};

/// A delivery being described; send it with [`EnqueueBuilder::send`].
#[derive(Debug)]
#[must_use = "an enqueue does nothing until `send` is awaited"]
pub struct EnqueueBuilder {
    client: Client,
    request: EnqueueRequest,
    json_error: Option<serde_json::Error>,
}

/// An accepted delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Enqueued {
    /// Herald's id for the delivery, also sent to the receiver as `webhook-id`.
    pub id: String,
    /// False when an earlier enqueue with the same idempotency key created it.
    pub created: bool,
}

impl EnqueueBuilder {
    pub(crate) fn new(client: Client, url: String) -> Self {
        Self {
            client,
            request: EnqueueRequest {
                url,
                // Explicit rather than UNSPECIFIED, so the request on the wire
                // says what the receiver will see.
                method: HttpMethod::Post.number(),
                ..Default::default()
            },
            json_error: None,
        }
    }

    /// The HTTP method; POST unless set.
    pub fn method(mut self, method: HttpMethod) -> Self {
        self.request.method = method.number();
        self
    }

    /// Adds a header sent with every attempt; repeat for several values.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.request.headers.push(Header {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// The body, sent byte for byte (a `Vec<u8>`, `&[u8]`, `String`,
    /// `bytes::Bytes`, ...).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.request.body = body.into();
        self
    }

    /// The body's `content-type`, e.g. `text/plain; charset=utf-8`.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.request.content_type = content_type.into();
        self
    }

    /// `value` as a JSON body with `content-type: application/json`. A
    /// value that does not serialize makes [`EnqueueBuilder::send`] fail
    /// with [`Error::Json`] without sending anything.
    pub fn json(mut self, value: &impl Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => {
                self.request.body = body;
                self.request.content_type = "application/json".to_owned();
            }
            Err(error) => self.json_error = Some(error),
        }
        self
    }

    /// Makes the enqueue idempotent: the same key with the same request
    /// returns the existing delivery (with `created: false`), so `send` can
    /// be repeated safely after a timeout; the same key with a different
    /// request is an error with code `AlreadyExists`.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.request.idempotency_key = key.into();
        self
    }

    /// Most attempts for this delivery (the server default when not set).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.request.max_attempts = Some(attempts);
        self
    }

    /// Do not attempt before `time` (now when not set).
    pub fn not_before(mut self, time: SystemTime) -> Self {
        self.request.not_before_time = Some(time.into());
        self
    }

    /// Dead-letter rather than start an attempt after `time`.
    pub fn deadline(mut self, time: SystemTime) -> Self {
        self.request.deadline_time = Some(time.into());
        self
    }

    /// Sends the enqueue; once this returns `Ok`, Herald holds the delivery
    /// durably.
    pub async fn send(self) -> Result<Enqueued, Error> {
        if let Some(error) = self.json_error {
            return Err(Error::Json(error));
        }
        let request = self.client.request(self.request);
        let response = self.client.grpc().enqueue(request).await?.into_inner();
        Ok(Enqueued {
            id: response.id,
            created: response.created,
        })
    }

    /// The request, or the JSON error that stops it being sent.
    pub(crate) fn into_request(self) -> Result<EnqueueRequest, Error> {
        match self.json_error {
            Some(error) => Err(Error::Json(error)),
            None => Ok(self.request),
        }
    }
}

/// Why Herald refused one delivery of a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
#[non_exhaustive]
pub struct Refused {
    /// The code Enqueue would have answered with (`InvalidArgument`,
    /// `AlreadyExists`).
    pub code: Code,
    /// Why, e.g. "url: is required".
    pub message: String,
}

/// Sends `deliveries` as one EnqueueBatch (see [`Client::enqueue_batch`]).
pub(crate) async fn batch(
    client: &Client,
    deliveries: Vec<EnqueueBuilder>,
) -> Result<Vec<Result<Enqueued, Refused>>, Error> {
    let deliveries = deliveries
        .into_iter()
        .map(EnqueueBuilder::into_request)
        .collect::<Result<Vec<_>, _>>()?;
    let request = client.request(EnqueueBatchRequest { deliveries });
    let response = client.grpc().enqueue_batch(request).await?.into_inner();
    response
        .results
        .into_iter()
        .map(|result| match result.result {
            Some(BatchResult::Accepted(accepted)) => Ok(Ok(Enqueued {
                id: accepted.id,
                created: accepted.created,
            })),
            Some(BatchResult::Error(status)) => Ok(Err(Refused {
                code: Code::from_number(status.code),
                message: status.message,
            })),
            None => Err(Error::MissingField("result")),
        })
        .collect()
}
