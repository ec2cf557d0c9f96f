//! Why an attempt got no HTTP response, typed so that classification
//! matches on variants, never on message text.

use std::{error::Error as StdError, time::Duration};

use crate::domain::AttemptErrorKind;

/// A failed attempt that produced no response.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The connection could not be made: refused, DNS, TLS handshake.
    #[error("could not connect to {authority}: {cause}")]
    Connect {
        /// `host:port` of the destination.
        authority: String,
        /// The cause chain, for people.
        cause: String,
    },
    /// No complete response headers before the request timeout.
    #[error("no response within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The connection broke while sending or receiving.
    #[error("connection to {authority} failed: {cause}")]
    Io {
        /// `host:port` of the destination.
        authority: String,
        /// The cause chain, for people.
        cause: String,
    },
    /// The stored delivery does not make a valid HTTP request.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl TransportError {
    /// The error class stored with the attempt.
    pub fn kind(&self) -> AttemptErrorKind {
        match self {
            Self::Connect { .. } => AttemptErrorKind::Connect,
            Self::Timeout(_) => AttemptErrorKind::Timeout,
            Self::Io { .. } => AttemptErrorKind::Io,
            Self::InvalidRequest(_) => AttemptErrorKind::InvalidRequest,
        }
    }

    /// Classifies an error of the pooled client. hyper's top-level message
    /// ("client error (Connect)") hides the cause, so the chain is kept.
    pub(super) fn from_client(
        error: &hyper_util::client::legacy::Error,
        authority: String,
    ) -> Self {
        let cause = error
            .source()
            .map_or_else(|| error.to_string(), cause_chain);
        if error.is_connect() {
            Self::Connect { authority, cause }
        } else {
            Self::Io { authority, cause }
        }
    }
}

/// "outer: inner: innermost", skipping repeated messages.
fn cause_chain(error: &dyn StdError) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(current) = next {
        let message = current.to_string();
        if parts.last() != Some(&message) {
            parts.push(message);
        }
        next = current.source();
    }
    parts.join(": ")
}
