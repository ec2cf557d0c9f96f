//! The one error type of the client.

/// Anything that can go wrong talking to Herald.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server URL could not be used.
    #[error("invalid Herald URL {url:?}: {source}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why it is invalid.
        source: tonic::transport::Error,
    },
    /// The connection to Herald could not be made.
    #[error("cannot connect to Herald: {0}")]
    Connect(#[source] tonic::transport::Error),
    /// Herald answered with an error status.
    #[error("Herald answered {}: {}", .0.code(), .0.message())]
    Rpc(Box<tonic::Status>),
    /// The JSON body could not be serialized.
    #[error("cannot serialize the JSON body: {0}")]
    Json(#[from] serde_json::Error),
    /// Herald's answer lacked a field it always sets (a version mismatch?).
    #[error("Herald's answer has no {0}")]
    MissingField(&'static str),
}

impl Error {
    /// The gRPC status code, when Herald answered with an error: e.g.
    /// `NotFound`, `InvalidArgument` (the message names the field) or
    /// `AlreadyExists` (an idempotency key reused for another request).
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Self::Rpc(status) => Some(status.code()),
            _ => None,
        }
    }
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Self::Rpc(Box::new(status))
    }
}
