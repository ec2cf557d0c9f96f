//! The one error type of the client.
//!
//! Every message is complete on its own (it already names the cause), so
//! [`std::error::Error::source`] is empty and printing an [`Error`] with `{}`
//! tells a person what to fix.

use std::{collections::HashMap, fmt::Write as _};

use tonic_types::StatusExt;

/// A transport failure's cause, kept as a plain error so the client's API
/// does not name its transport's types.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Anything that can go wrong talking to Herald.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server URL could not be used.
    #[error(
        "invalid Herald URL {url:?}: {reason}; expected a URL like \"http://127.0.0.1:50051\"",
        reason = chain(cause.as_ref())
    )]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why it is invalid.
        cause: Cause,
    },
    /// The connection to Herald could not be made.
    #[error(
        "cannot connect to Herald at {url}: {reason}; is the server running there?",
        reason = chain(cause.as_ref())
    )]
    Connect {
        /// The URL connected to.
        url: String,
        /// The transport failure.
        cause: Cause,
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
    #[error("Herald answered {:?}: {}", .0.code, .0.message)]
    Rpc(Box<RpcStatus>),
    /// The JSON body given to [`crate::EnqueueBuilder::json`] could not be
    /// serialized; nothing was sent.
    #[error("cannot serialize the JSON body: {0}")]
    Json(serde_json::Error),
    /// The request described cannot be sent as it is (e.g. a redrive
    /// given both ids and filters); nothing was sent.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
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
    pub fn code(&self) -> Option<Code> {
        self.status().map(|status| status.code)
    }

    /// What Herald answered, when it answered with an error: code, message
    /// and the details programs act on.
    pub fn status(&self) -> Option<&RpcStatus> {
        match self {
            Self::Rpc(status) => Some(status),
            _ => None,
        }
    }
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Self::Rpc(Box::new(RpcStatus::from(status)))
    }
}

/// An error status as Herald answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RpcStatus {
    /// The status code.
    pub code: Code,
    /// What went wrong, for people.
    pub message: String,
    /// What went wrong, for programs: the `google.rpc.ErrorInfo` reason,
    /// stable across releases (e.g. `INVALID_FIELD`, `CURSOR_PRUNED`);
    /// empty from a server that gives none.
    pub reason: String,
    /// Facts that go with the reason, e.g. `resume_after_sequence` for
    /// `CURSOR_PRUNED`.
    pub metadata: HashMap<String, String>,
    /// The fields of the request at fault (`google.rpc.BadRequest`), each
    /// with what is wrong with it.
    pub field_violations: Vec<FieldViolation>,
}

/// One field of a request at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FieldViolation {
    /// The field, as the contract names it (e.g. `destination_host`).
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

impl From<tonic::Status> for RpcStatus {
    fn from(status: tonic::Status) -> Self {
        let details = status.get_error_details();
        let (reason, metadata) = details
            .error_info()
            .map(|info| (info.reason.clone(), info.metadata.clone()))
            .unwrap_or_default();
        let field_violations = details
            .bad_request()
            .map(|bad| {
                bad.field_violations
                    .iter()
                    .map(|violation| FieldViolation {
                        field: violation.field.clone(),
                        description: violation.description.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            code: Code::from(status.code()),
            message: status.message().to_owned(),
            reason,
            metadata,
            field_violations,
        }
    }
}

/// Declares [`Code`] over tonic's codes, one for one.
macro_rules! codes {
    ($($(#[$meta:meta])* $code:ident,)+) => {
        /// A gRPC status code, as Herald answers them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Code {
            $($(#[$meta])* $code,)+
        }

        impl From<tonic::Code> for Code {
            fn from(code: tonic::Code) -> Self {
                match code {
                    $(tonic::Code::$code => Self::$code,)+
                }
            }
        }

        impl From<Code> for tonic::Code {
            fn from(code: Code) -> Self {
                match code {
                    $(Code::$code => Self::$code,)+
                }
            }
        }
    };
}

codes! {
    /// Not an error.
    Ok,
    /// The call was cancelled.
    Cancelled,
    /// An error the server could not classify.
    Unknown,
    /// The request is malformed; the message and the field violations say
    /// which field breaks which rule.
    InvalidArgument,
    /// The call ran out of time.
    DeadlineExceeded,
    /// What the call names does not exist (for the caller).
    NotFound,
    /// An idempotency key was reused for a different request.
    AlreadyExists,
    /// The caller may not do this.
    PermissionDenied,
    /// A limit was reached (e.g. open watches per tenant).
    ResourceExhausted,
    /// What the call names is in the wrong state for it.
    FailedPrecondition,
    /// The call was aborted.
    Aborted,
    /// A value (e.g. a watch cursor) is outside what the server keeps.
    OutOfRange,
    /// The server does not offer this call.
    Unimplemented,
    /// The server failed; its log has the cause.
    Internal,
    /// The server or its database is unavailable for now: worth retrying.
    Unavailable,
    /// Data was lost.
    DataLoss,
    /// No valid API key came with the call.
    Unauthenticated,
}

impl Code {
    /// The code for a number as `EnqueueBatch` reports it for one item.
    pub(crate) fn from_number(number: i32) -> Self {
        tonic::Code::from_i32(number).into()
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
