//! [`EventTypeName`]: the name of an event type, such as `order.created`.

use std::fmt;

/// Longest event type name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// An event type's name: 1 to 128 ASCII letters, digits and `.`, `_`, `-`,
/// `:`, starting with a letter or digit, with no empty segment between
/// dots (`order..created`, `order.` are refused). Dots make the segments
/// that subscriptions' wildcards (`order.*`) match by prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventTypeName(String);

/// Why a name is not a valid event type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidName(String);

impl EventTypeName {
    /// `name`, checked.
    pub fn parse(name: &str) -> Result<Self, InvalidName> {
        if name.is_empty() {
            return Err(InvalidName("is required, e.g. \"order.created\"".into()));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(InvalidName(format!(
                "is {} bytes; at most {MAX_NAME_LEN}",
                name.len()
            )));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':')))
        {
            return Err(InvalidName(format!(
                "{name:?} contains {bad:?}; use ASCII letters, digits and . _ - :"
            )));
        }
        if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(InvalidName(format!(
                "{name:?} must start with a letter or digit"
            )));
        }
        if name.split('.').any(str::is_empty) {
            return Err(InvalidName(format!(
                "{name:?} has an empty segment between dots"
            )));
        }
        Ok(Self(name.to_owned()))
    }

    /// A name as stored, checked when it was stored.
    pub(super) fn stored(text: String) -> Self {
        Self(text)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventTypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dotted_names() {
        for name in ["order.created", "invoice", "a-b_c:d.e2", "1.x"] {
            assert_eq!(EventTypeName::parse(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn refuses_what_cannot_be_a_name() {
        for name in [
            "",
            ".order",
            "order.",
            "order..created",
            "order created",
            "order.*",
            "ördér",
            "-x",
        ] {
            assert!(EventTypeName::parse(name).is_err(), "{name:?}");
        }
        assert!(EventTypeName::parse(&"a".repeat(MAX_NAME_LEN)).is_ok());
        assert!(EventTypeName::parse(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
    }
}
