//! The one error type of the client.
//!
//! Every message is complete on its own (it already names the cause), so
//! [`std::error::Error::source`] is empty and printing an [`Error`] with `{}`
//! tells a person what to fix.

use std::fmt::Write as _;

/// Anything that can go wrong talking to Herald.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server URL could not be used.
    #[error(
        "invalid Herald URL {url:?}: {reason}; expected a URL like \"http://127.0.0.1:50051\"",
        reason = chain(cause)
    )]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why it is invalid.
        cause: tonic::transport::Error,
    },
    /// The connection to Herald could not be made.
    #[error(
        "cannot connect to Herald at {url}: {reason}; is the server running there?",
        reason = chain(cause)
    )]
    Connect {
        /// The URL connected to.
        url: String,
        /// The transport failure.
        cause: tonic::transport::Error,
    },
    /// The API key cannot be sent as a gRPC header (it is not shown here, as
    /// it is a secret).
    #[error("the API key is not a valid header value: use visible ASCII characters only")]
    InvalidApiKey,
    /// A `traceparent` or `tracestate` cannot be sent as a gRPC header.
    #[error(
        "the trace context is not a valid header value: use visible ASCII characters only, \
         as W3C trace context does"
    )]
    InvalidTraceContext,
    /// Herald answered with an error status; see [`Error::code`] and
    /// [`Error::status`].
    #[error("Herald answered {:?}: {}", .0.code(), .0.message())]
    Rpc(Box<tonic::Status>),
    /// The JSON body given to [`crate::EnqueueBuilder::json`] could not be
    /// serialized; nothing was sent.
    #[error("cannot serialize the JSON body: {0}")]
    Json(serde_json::Error),
    /// Herald's answer lacked a field it always sets: the server and this
    /// client probably speak different versions of the contract.
    #[error(
        "Herald's answer has no `{0}` field; is the server's version compatible with this client?"
    )]
    MissingField(&'static str),
}

impl Error {
    /// The gRPC status code when Herald answered with an error, e.g.
    /// `NotFound`, `InvalidArgument` (the message names the field and the
    /// limit), `AlreadyExists` (an idempotency key reused for a different
    /// request) or `Unavailable` (worth retrying). `None` for errors that
    /// happened before a call was made.
    pub fn code(&self) -> Option<tonic::Code> {
        self.status().map(tonic::Status::code)
    }

    /// The full status when Herald answered with an error: code, message
    /// and metadata.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            Self::Rpc(status) => Some(status),
            _ => None,
        }
    }
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Self::Rpc(Box::new(status))
    }
}

/// `error` and each of its sources, joined by ": ". Transport errors say only
/// "transport error" at the top; the useful part ("connection refused") is
/// further down. A source whose text is already said (a wrapper that
/// repeats its cause's message) is left out.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            let _ = write!(text, ": {said}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that says its cause's message again, as connect errors do.
    #[derive(Debug, thiserror::Error)]
    #[error("tcp connect error: {0}")]
    struct Repeating(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("transport error")]
    struct Transport(#[source] Repeating);

    #[test]
    fn each_cause_is_said_once() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            chain(&Transport(Repeating(refused))),
            "transport error: tcp connect error: refused"
        );
    }
}
