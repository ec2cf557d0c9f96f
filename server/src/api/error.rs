//! The one place where errors become gRPC statuses. The set of codes is
//! deliberately small; internal failures are logged once with their cause
//! and answered with an opaque message.

use std::collections::HashMap;

use prost::Message as _;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{outcomes::WatchError, store::StoreError};

/// Why a request failed, before it becomes a [`Status`].
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: `field` broke a rule.
    #[error("{field}: {message}")]
    InvalidArgument {
        /// The request field, as named in the proto.
        field: &'static str,
        /// The rule it broke, for people.
        message: String,
    },
    /// No valid API key came with the request. Deliberately says nothing
    /// about which tenants or keys exist; it warns that creating a tenant
    /// closes a server that runs open.
    #[error(
        "missing or invalid API key: send `authorization: Bearer <key>` with a key from \
         `herald key create <tenant>`; a server with no tenant yet runs open and takes calls \
         with no key at all, and the first `herald tenant create` closes it for good (every \
         call needs a key from then on)"
    )]
    Unauthenticated,
    /// The thing asked for does not exist (for this caller).
    #[error("{0}")]
    NotFound(String),
    /// What the request would create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is valid but the resource is in the wrong state for it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A watch cursor older than retention kept.
    #[error(transparent)]
    Watch(#[from] crate::outcomes::WatchError),
    /// The caller's tenant has as many outcome streams open as allowed.
    #[error(
        "this tenant has {limit} WatchOutcomes streams open on this server, the most allowed \
         (HERALD_MAX_WATCHES_PER_TENANT); close one, or share one stream between readers"
    )]
    TooManyWatches {
        /// The configured limit.
        limit: usize,
    },
    /// The server is shutting down; retry against another replica.
    #[error("{0}")]
    ShuttingDown(#[from] crate::scheduler::ShuttingDown),
    /// The storage layer failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiError {
    /// Shorthand for an invalid field.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            message: message.into(),
        }
    }
}

/// The `domain` of the `google.rpc.ErrorInfo` every error status carries:
/// with its `reason`, what a program matches on instead of the message.
pub const ERROR_DOMAIN: &str = "herald";

/// An error as the caller receives it: a code and a message for people,
/// a reason (and facts) for programs, and the field at fault, if any.
struct Answer {
    code: Code,
    message: String,
    /// `ErrorInfo.reason`: UPPER_SNAKE_CASE, stable across releases.
    reason: &'static str,
    /// `ErrorInfo.metadata`.
    metadata: HashMap<String, String>,
    /// A `BadRequest` field violation: the field and what is wrong with it.
    violation: Option<(&'static str, String)>,
}

impl Answer {
    fn new(code: Code, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            reason,
            metadata: HashMap::new(),
            violation: None,
        }
    }

    /// An INVALID_ARGUMENT for `field`, with `problem` as its violation.
    fn invalid(field: &'static str, problem: String) -> Self {
        Self {
            violation: Some((field, problem.clone())),
            ..Self::new(
                Code::InvalidArgument,
                "INVALID_FIELD",
                format!("{field}: {problem}"),
            )
        }
    }

    fn with(mut self, key: &str, value: impl ToString) -> Self {
        self.metadata.insert(key.to_owned(), value.to_string());
        self
    }
}

impl From<ApiError> for Answer {
    fn from(error: ApiError) -> Self {
        let message = error.to_string();
        match error {
            ApiError::InvalidArgument { field, message } => Self::invalid(field, message),
            ApiError::Unauthenticated => {
                Self::new(Code::Unauthenticated, "API_KEY_INVALID", message)
            }
            ApiError::NotFound(_) => Self::new(Code::NotFound, "NOT_FOUND", message),
            ApiError::AlreadyExists(_) => Self::new(Code::AlreadyExists, "ALREADY_EXISTS", message),
            ApiError::FailedPrecondition(_) => {
                Self::new(Code::FailedPrecondition, "WRONG_STATE", message)
            }
            ApiError::ShuttingDown(_) => Self::new(Code::Unavailable, "SHUTTING_DOWN", message),
            ApiError::Store(StoreError::ShuttingDown) => Self::new(
                Code::Unavailable,
                "SHUTTING_DOWN",
                "the server is shutting down; retry against another replica",
            ),
            ApiError::TooManyWatches { limit } => {
                Self::new(Code::ResourceExhausted, "TOO_MANY_WATCHES", message).with("limit", limit)
            }
            ApiError::Watch(WatchError::OutOfRange {
                after,
                pruned_through,
            }) => Self::new(Code::OutOfRange, "CURSOR_PRUNED", message)
                .with("after_sequence", after)
                .with("resume_after_sequence", pruned_through),
            ApiError::Watch(WatchError::Store(store)) => ApiError::Store(store).into(),
            ApiError::Store(StoreError::IdempotencyConflict { .. }) => {
                Self::new(Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED", message)
            }
            ApiError::Store(StoreError::DestinationDisabled { .. }) => {
                Self::new(Code::FailedPrecondition, "DESTINATION_DISABLED", message)
            }
            ApiError::Store(StoreError::DestinationState(_)) => {
                Self::new(Code::FailedPrecondition, "WRONG_STATE", message)
            }
            ApiError::Store(StoreError::DestinationNotFound(_)) => {
                Self::new(Code::NotFound, "NOT_FOUND", message)
            }
            ApiError::Store(StoreError::InvalidPolicy(policy)) => {
                Self::invalid(policy.field, policy.problem)
            }
            ApiError::Store(StoreError::ListingTimedOut(_)) => {
                Self::new(Code::DeadlineExceeded, "LISTING_TIMED_OUT", message)
            }
            ApiError::Store(ref cause) if cause.is_unavailable() => {
                tracing::error!(error = %cause, "database unavailable");
                Self::new(
                    Code::Unavailable,
                    "DATABASE_UNAVAILABLE",
                    "the database is unavailable; retry shortly",
                )
            }
            ApiError::Store(other) => {
                tracing::error!(error = %other, "request failed");
                Self::new(
                    Code::Internal,
                    "INTERNAL",
                    "internal error; the server log has the cause",
                )
            }
        }
    }
}

impl From<ApiError> for Status {
    /// The status with its details: an `ErrorInfo` (reason, [`ERROR_DOMAIN`]
    /// and facts such as the cursor to resume a pruned watch from) always,
    /// and a `BadRequest` naming the field for INVALID_ARGUMENT.
    fn from(error: ApiError) -> Self {
        let answer = Answer::from(error);
        let mut details =
            ErrorDetails::with_error_info(answer.reason, ERROR_DOMAIN, answer.metadata);
        if let Some((field, problem)) = answer.violation {
            details.add_bad_request_violation(field, problem);
        }
        Status::with_error_details(answer.code, answer.message, details)
    }
}

impl From<ApiError> for tonic_types::Status {
    /// The error as a `google.rpc.Status` message, for an answer that
    /// carries it inside a response (a batch item's refusal): the code,
    /// message and details the call itself would have answered with.
    fn from(error: ApiError) -> Self {
        let status = Status::from(error);
        let details = tonic_types::Status::decode(status.details())
            .map(|encoded| encoded.details)
            .unwrap_or_default();
        Self {
            code: status.code().into(),
            message: status.message().to_owned(),
            details,
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt;

    use super::*;

    #[test]
    fn an_invalid_field_is_named_in_a_bad_request() {
        let status = Status::from(ApiError::invalid("page_token", "was altered"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "page_token: was altered");
        let details = status.get_error_details();
        let violations = &details
            .bad_request()
            .expect("a BadRequest")
            .field_violations;
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].field, "page_token");
        assert_eq!(violations[0].description, "was altered");
        let info = details.error_info().expect("an ErrorInfo");
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("INVALID_FIELD", ERROR_DOMAIN)
        );
    }

    #[test]
    fn a_pruned_cursor_names_where_to_resume() {
        let status = Status::from(ApiError::Watch(WatchError::OutOfRange {
            after: 3,
            pruned_through: 41,
        }));
        assert_eq!(status.code(), Code::OutOfRange);
        let details = status.get_error_details();
        let info = details.error_info().expect("an ErrorInfo");
        assert_eq!(info.reason, "CURSOR_PRUNED");
        assert_eq!(info.metadata["resume_after_sequence"], "41");
        assert_eq!(info.metadata["after_sequence"], "3");
        assert!(details.bad_request().is_none());
    }

    #[test]
    fn an_error_inside_a_response_keeps_its_details() {
        let inside = tonic_types::Status::from(ApiError::invalid("url", "is required"));
        assert_eq!(inside.code, i32::from(Code::InvalidArgument));
        assert_eq!(inside.message, "url: is required");
        let status = Status::with_details(
            Code::InvalidArgument,
            inside.message.clone(),
            inside.encode_to_vec().into(),
        );
        let details = status.get_error_details();
        assert_eq!(
            details
                .bad_request()
                .expect("a BadRequest")
                .field_violations[0]
                .field,
            "url"
        );
        assert_eq!(
            details.error_info().expect("an ErrorInfo").reason,
            "INVALID_FIELD"
        );
    }

    #[test]
    fn every_error_carries_a_reason() {
        let status = Status::from(ApiError::Unauthenticated);
        let details = status.get_error_details();
        assert_eq!(
            details.error_info().expect("an ErrorInfo").reason,
            "API_KEY_INVALID"
        );
        let status = Status::from(ApiError::TooManyWatches { limit: 64 });
        let info = status
            .get_error_details()
            .error_info()
            .cloned()
            .expect("an ErrorInfo");
        assert_eq!(info.reason, "TOO_MANY_WATCHES");
        assert_eq!(info.metadata["limit"], "64");
    }
}
