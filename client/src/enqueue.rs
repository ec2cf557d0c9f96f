//! The enqueue builder.

use std::time::SystemTime;

use herald_proto::v1::{
    EnqueueRequest, Header, HttpMethod, delivery_service_client::DeliveryServiceClient,
};
use serde::Serialize;
use tonic::transport::Channel;

use crate::Error;

/// A delivery being described; send it with [`EnqueueBuilder::send`].
#[derive(Debug)]
#[must_use = "an enqueue does nothing until `send` is awaited"]
pub struct EnqueueBuilder {
    grpc: DeliveryServiceClient<Channel>,
    request: EnqueueRequest,
    json_error: Option<serde_json::Error>,
}

/// An accepted delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// Herald's id for the delivery, also sent to the receiver as `webhook-id`.
    pub id: String,
    /// False when an earlier enqueue with the same idempotency key created it.
    pub created: bool,
}

impl EnqueueBuilder {
    pub(crate) fn new(grpc: DeliveryServiceClient<Channel>, url: String) -> Self {
        Self {
            grpc,
            request: EnqueueRequest {
                url,
                ..Default::default()
            },
            json_error: None,
        }
    }

    /// The HTTP method (POST when not set).
    pub fn method(mut self, method: HttpMethod) -> Self {
        self.request.method = method.into();
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

    /// The body, sent byte for byte.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.request.body = body.into();
        self
    }

    /// The body's `content-type`.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.request.content_type = content_type.into();
        self
    }

    /// `value` as a JSON body with `content-type: application/json`. A
    /// value that does not serialize makes [`EnqueueBuilder::send`] fail.
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
    /// returns the existing delivery.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.request.idempotency_key = key.into();
        self
    }

    /// Most attempts for this delivery (the server default when not set).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.request.max_attempts = Some(attempts);
        self
    }

    /// Do not attempt before `time`.
    pub fn not_before(mut self, time: SystemTime) -> Self {
        self.request.not_before_time = Some(time.into());
        self
    }

    /// The request as it will be sent.
    pub fn request(&self) -> &EnqueueRequest {
        &self.request
    }

    /// Sends the enqueue; once this returns `Ok`, Herald holds the delivery
    /// durably.
    pub async fn send(mut self) -> Result<Enqueued, Error> {
        if let Some(error) = self.json_error {
            return Err(Error::Json(error));
        }
        let response = self.grpc.enqueue(self.request).await?.into_inner();
        Ok(Enqueued {
            id: response.id,
            created: response.created,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> EnqueueBuilder {
        let channel = Channel::from_static("http://127.0.0.1:1").connect_lazy();
        EnqueueBuilder::new(
            DeliveryServiceClient::new(channel),
            "https://example.com/hook".into(),
        )
    }

    #[tokio::test]
    async fn builds_exactly_the_request_described() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let builder = builder()
            .method(HttpMethod::Put)
            .json(&serde_json::json!({"a": 1}))
            .header("x-one", "1")
            .header("x-one", "2")
            .idempotency_key("k")
            .max_attempts(3)
            .not_before(at);
        let request = builder.request();
        assert_eq!(request.url, "https://example.com/hook");
        assert_eq!(request.method, i32::from(HttpMethod::Put));
        assert_eq!(request.body, br#"{"a":1}"#);
        assert_eq!(request.content_type, "application/json");
        let headers: Vec<_> = request
            .headers
            .iter()
            .map(|h| (&*h.name, &*h.value))
            .collect();
        assert_eq!(headers, [("x-one", "1"), ("x-one", "2")]);
        assert_eq!(request.idempotency_key, "k");
        assert_eq!(request.max_attempts, Some(3));
        assert_eq!(
            request.not_before_time.as_ref().map(|t| t.seconds),
            Some(1_800_000_000)
        );
    }

    #[tokio::test]
    async fn defaults_leave_method_and_attempts_to_the_server() {
        let request = builder().request().clone();
        assert_eq!(request.method, i32::from(HttpMethod::Unspecified));
        assert_eq!(request.max_attempts, None);
    }

    #[tokio::test]
    async fn a_json_failure_surfaces_from_send() {
        struct Unserializable;
        impl Serialize for Unserializable {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("nope"))
            }
        }
        let error = builder().json(&Unserializable).send().await.unwrap_err();
        assert!(matches!(error, Error::Json(_)), "{error}");
    }
}
