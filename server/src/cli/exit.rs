//! How a command's failure is reported: one line on stderr (never a log
//! line, so `--json > out.json` stays clean and `HERALD_LOG=off` cannot
//! hide it) and an exit code that tells scripts what kind of failure it
//! was.

use std::{error::Error, process::ExitCode};

use super::{input::InputError, server_args::ConnectError};
use crate::{config::ConfigError, tenants::InvalidTenantName};

/// The kinds of failure a script can tell apart by the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Anything else (the database failed, the answer made no sense): 1.
    Other,
    /// The command was used wrongly or given a value it cannot take
    /// (the same code clap gives a usage error): 2.
    BadInput,
    /// The server could not be reached: 3.
    Unreachable,
    /// The server answered with a gRPC error status: 4.
    Refused,
}

impl Failure {
    /// What kind of failure `error` is.
    pub fn of(error: &(dyn Error + 'static)) -> Self {
        if let Some(error) = error.downcast_ref::<herald_client::Error>() {
            return Self::of_client(error);
        }
        if let Some(error) = error.downcast_ref::<ConnectError>() {
            return match error {
                ConnectError::CaFile { .. }
                | ConnectError::Address { .. }
                | ConnectError::ApiKey => Self::BadInput,
                ConnectError::Unreachable { .. } => Self::Unreachable,
                ConnectError::Client(error) => Self::of_client(error),
            };
        }
        if error.is::<tonic::Status>() {
            return Self::Refused;
        }
        if error.is::<ConfigError>()
            || error.is::<InvalidTenantName>()
            || error.is::<clap::Error>()
            || error.is::<InputError>()
        {
            return Self::BadInput;
        }
        Self::Other
    }

    fn of_client(error: &herald_client::Error) -> Self {
        match error {
            herald_client::Error::Connect { .. } => Self::Unreachable,
            herald_client::Error::Rpc(_) => Self::Refused,
            herald_client::Error::InvalidUrl { .. }
            | herald_client::Error::InvalidApiKey
            | herald_client::Error::InvalidRequest(_) => Self::BadInput,
            _ => Self::Other,
        }
    }

    /// The process exit code for this kind of failure.
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            Self::Other => 1,
            Self::BadInput => 2,
            Self::Unreachable => 3,
            Self::Refused => 4,
        })
    }
}

/// Says why the command failed, on stderr, and returns its exit code. A
/// refusal from a service the client crate does not wrap reads as the
/// crate's do (`Herald answered InvalidArgument: ...`).
pub fn report(error: &(dyn Error + 'static)) -> ExitCode {
    match error.downcast_ref::<tonic::Status>() {
        Some(status) => eprintln!("error: {}", herald_client::Error::from(status.clone())),
        None => eprintln!("error: {error}"),
    }
    Failure::of(error).exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_failure_has_its_code() {
        let refused: Box<dyn Error> =
            Box::new(herald_client::Error::from(tonic::Status::not_found("gone")));
        assert_eq!(Failure::of(refused.as_ref()), Failure::Refused);
        let bad: Box<dyn Error> = Box::new(herald_client::Error::InvalidApiKey);
        assert_eq!(Failure::of(bad.as_ref()), Failure::BadInput);
        let other: Box<dyn Error> = "the database failed".into();
        assert_eq!(Failure::of(other.as_ref()), Failure::Other);
    }
}
