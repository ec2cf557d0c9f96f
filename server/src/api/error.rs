//! The one place where errors become gRPC statuses. The set of codes is
//! deliberately small; internal failures are logged once with their cause
//! and answered with an opaque message.

use tonic::Status;

use crate::store::StoreError;

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
    /// about which tenants or keys exist.
    #[error(
        "missing or invalid API key: send `authorization: Bearer <key>` with a key from `herald tenant create` or `herald key create`"
    )]
    Unauthenticated,
    /// The thing asked for does not exist (for this caller).
    #[error("{0}")]
    NotFound(String),
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

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::InvalidArgument { .. } => Status::invalid_argument(error.to_string()),
            ApiError::Unauthenticated => Status::unauthenticated(error.to_string()),
            ApiError::NotFound(message) => Status::not_found(message),
            ApiError::FailedPrecondition(message) => Status::failed_precondition(message),
            ApiError::ShuttingDown(_) => Status::unavailable(error.to_string()),
            ApiError::TooManyWatches { .. } => Status::resource_exhausted(error.to_string()),
            ApiError::Watch(crate::outcomes::WatchError::OutOfRange { .. }) => {
                Status::out_of_range(error.to_string())
            }
            ApiError::Watch(crate::outcomes::WatchError::Store(store)) => {
                ApiError::Store(store).into()
            }
            ApiError::Store(StoreError::IdempotencyConflict { .. }) => {
                Status::already_exists(error.to_string())
            }
            ApiError::Store(
                StoreError::DestinationDisabled { .. } | StoreError::DestinationState(_),
            ) => Status::failed_precondition(error.to_string()),
            ApiError::Store(StoreError::DestinationNotFound(_)) => {
                Status::not_found(error.to_string())
            }
            ApiError::Store(StoreError::InvalidPolicy(_)) => {
                Status::invalid_argument(error.to_string())
            }
            ApiError::Store(StoreError::ListingTimedOut(_)) => {
                Status::deadline_exceeded(error.to_string())
            }
            ApiError::Store(StoreError::ShuttingDown) => {
                Status::unavailable("the server is shutting down; retry against another replica")
            }
            ApiError::Store(ref cause) if cause.is_unavailable() => {
                tracing::error!(error = %cause, "database unavailable");
                Status::unavailable("the database is unavailable; retry shortly")
            }
            ApiError::Store(other) => {
                tracing::error!(error = %other, "request failed");
                Status::internal("internal error; the server log has the cause")
            }
        }
    }
}
