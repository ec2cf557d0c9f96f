//! An operator's changes of a destination's state, and what each one
//! takes: the state it starts from, the state it leads to, the event it
//! records in the outcome feed, and what to tell someone who asks for it
//! from another state.
//!
//! ```text
//!   active --pause--> paused --resume--> active
//!   active --failing too long (Upkeep)--> disabled --enable--> active
//! ```
//!
//! The store makes the change ([`crate::store::Store::change_destination_state`]).

use std::fmt;

use crate::domain::{DestinationStatus, OutcomeKind};

/// A change an operator asks of a destination's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateChange {
    /// Active to paused: its deliveries are held.
    Pause,
    /// Paused to active.
    Resume,
    /// Disabled to active, its circuit closed and failures forgotten.
    Enable,
}

impl StateChange {
    /// The only state the change starts from.
    pub fn from(self) -> DestinationStatus {
        match self {
            Self::Pause => DestinationStatus::Active,
            Self::Resume => DestinationStatus::Paused,
            Self::Enable => DestinationStatus::Disabled,
        }
    }

    /// The state it leads to.
    pub fn to(self) -> DestinationStatus {
        match self {
            Self::Pause => DestinationStatus::Paused,
            Self::Resume | Self::Enable => DestinationStatus::Active,
        }
    }

    /// The event it records in the outcome feed.
    pub fn event(self) -> OutcomeKind {
        match self {
            Self::Pause => OutcomeKind::DestinationPaused,
            Self::Resume => OutcomeKind::DestinationResumed,
            Self::Enable => OutcomeKind::DestinationEnabled,
        }
    }

    /// The RPC that asks for it.
    fn rpc(self) -> &'static str {
        match self {
            Self::Pause => "PauseDestination",
            Self::Resume => "ResumeDestination",
            Self::Enable => "EnableDestination",
        }
    }

    /// The `herald destinations` subcommand that asks for it.
    fn command(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Enable => "enable",
        }
    }
}

/// A change asked of a destination in a state it does not start from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct WrongState {
    /// `scheme://host:port`.
    pub destination: String,
    /// The state it is in.
    pub state: DestinationStatus,
    /// The change asked for.
    pub change: StateChange,
}

impl fmt::Display for WrongState {
    /// Says what the destination is, and how to make it active again.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            destination,
            state,
            change,
        } = self;
        let way_out = match state {
            DestinationStatus::Paused => Some(StateChange::Resume),
            DestinationStatus::Disabled => Some(StateChange::Enable),
            DestinationStatus::Active => None,
        };
        match way_out {
            Some(way) if *state != change.to() => write!(
                f,
                "destination {destination} is {state}; {} (`herald destinations {} {destination}`) \
                 makes it active again",
                way.rpc(),
                way.command()
            ),
            _ => {
                let from = change.from();
                let article = if from == DestinationStatus::Active {
                    "an"
                } else {
                    "a"
                };
                write!(
                    f,
                    "destination {destination} is already {state}; {} changes only {article} \
                     {from} destination",
                    change.rpc()
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(state: DestinationStatus, change: StateChange) -> String {
        WrongState {
            destination: "https://x:443".into(),
            state,
            change,
        }
        .to_string()
    }

    #[test]
    fn changes_lead_from_one_state_to_another() {
        for change in [StateChange::Pause, StateChange::Resume, StateChange::Enable] {
            assert_ne!(change.from(), change.to());
            assert!(change.event().is_destination_event());
        }
    }

    #[test]
    fn refusals_say_what_to_do() {
        assert_eq!(
            refusal(DestinationStatus::Disabled, StateChange::Pause),
            "destination https://x:443 is disabled; EnableDestination \
             (`herald destinations enable https://x:443`) makes it active again"
        );
        assert_eq!(
            refusal(DestinationStatus::Paused, StateChange::Enable),
            "destination https://x:443 is paused; ResumeDestination \
             (`herald destinations resume https://x:443`) makes it active again"
        );
        assert_eq!(
            refusal(DestinationStatus::Active, StateChange::Enable),
            "destination https://x:443 is already active; EnableDestination changes only a \
             disabled destination"
        );
        assert_eq!(
            refusal(DestinationStatus::Paused, StateChange::Pause),
            "destination https://x:443 is already paused; PauseDestination changes only an \
             active destination"
        );
    }
}
