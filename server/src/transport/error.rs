//! Why an attempt got no HTTP response, typed so that classification
//! matches on variants, never on message text.

use std::{error::Error as StdError, time::Duration};

use super::guard::Blocked;
use crate::domain::AttemptErrorKind;

/// A failed attempt that produced no response. Messages name the
/// destination and the underlying cause, for the attempt history.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The connection could not be made: DNS, refused, TLS handshake.
    #[error("connection to {authority} failed: {cause}")]
    Connect {
        /// `host[:port]` of the destination.
        authority: String,
        /// The cause chain, for people.
        cause: String,
    },
    /// The attempt did not get a response within the request timeout.
    #[error(
        "no response within {} (the request timeout)",
        humantime::format_duration(*.0)
    )]
    Timeout(Duration),
    /// The connection broke, or the exchange failed, after connecting.
    #[error("request to {authority} failed: {cause}")]
    Io {
        /// `host[:port]` of the destination.
        authority: String,
        /// The cause chain, for people.
        cause: String,
    },
    /// The destination is, or resolved only to, an address the SSRF guard
    /// refuses.
    #[error("refused to connect to {authority}: {blocked}")]
    Blocked {
        /// `host[:port]` of the destination.
        authority: String,
        /// The address and the range it is in.
        blocked: Blocked,
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
            Self::Blocked { .. } => AttemptErrorKind::Blocked,
        }
    }

    /// Classifies an error of the pooled client by its kind. The client's
    /// own message ("client error (Connect)") hides the cause, so the
    /// message is built from the source chain instead.
    pub(super) fn from_client(
        error: &hyper_util::client::legacy::Error,
        authority: String,
    ) -> Self {
        if let Some(blocked) = find_blocked(error) {
            return Self::Blocked { authority, blocked };
        }
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

/// The guard's refusal, if it is somewhere in `error`'s source chain.
fn find_blocked(error: &(dyn StdError + 'static)) -> Option<Blocked> {
    let mut next = Some(error);
    while let Some(current) = next {
        if let Some(blocked) = current.downcast_ref::<Blocked>() {
            return Some(blocked.clone());
        }
        // An `io::Error`'s `source` skips the error it wraps; look inside.
        if let Some(blocked) = current
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<Blocked>())
        {
            return Some(blocked.clone());
        }
        next = current.source();
    }
    None
}

/// "outer: inner: innermost", skipping a message its outer one already
/// ends with (some errors repeat their source in their own message).
fn cause_chain(error: &(dyn StdError + 'static)) -> String {
    let mut chain = String::new();
    let mut next = Some(error);
    while let Some(current) = next {
        let message = current.to_string();
        if !chain.ends_with(&message) {
            if !chain.is_empty() {
                chain.push_str(": ");
            }
            chain.push_str(&message);
        }
        next = current.source();
    }
    chain
}

#[cfg(test)]
mod tests {
    use std::{fmt, io};

    use super::*;

    /// An error with an optional source, for building chains.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<dyn StdError + 'static>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl StdError for Layer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.1.as_deref()
        }
    }

    #[test]
    fn cause_chains_join_and_skip_repeats() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let chain = Layer(
            "tcp connect error",
            Some(Box::new(Layer(
                "connection refused",
                Some(Box::new(refused)),
            ))),
        );
        assert_eq!(cause_chain(&chain), "tcp connect error: connection refused");
        assert_eq!(cause_chain(&Layer("alone", None)), "alone");
    }

    #[test]
    fn messages_are_for_people() {
        let timeout = TransportError::Timeout(Duration::from_millis(1500));
        assert_eq!(
            timeout.to_string(),
            "no response within 1s 500ms (the request timeout)"
        );
        assert_eq!(timeout.kind(), AttemptErrorKind::Timeout);
        let connect = TransportError::Connect {
            authority: "127.0.0.1:9".into(),
            cause: "Connection refused (os error 111)".into(),
        };
        assert_eq!(
            connect.to_string(),
            "connection to 127.0.0.1:9 failed: Connection refused (os error 111)"
        );
    }
}
