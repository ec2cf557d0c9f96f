//! [`Subscription`]: the event types an endpoint wants.

use std::fmt;

use super::EventTypeName;

/// Most patterns one endpoint subscribes with.
pub const MAX_PATTERNS: usize = 100;

/// One pattern of a subscription.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pattern {
    /// Exactly this event type.
    Exact(EventTypeName),
    /// Every event type that starts with this text, which ends in a dot:
    /// `order.*` is the prefix `order.` and matches `order.created` and
    /// `order.line.added`, but not `order` or `orders.created`.
    Prefix(String),
}

/// Why a pattern is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPattern(String);

impl Pattern {
    /// `text` as a pattern: an event type name, or a name followed by
    /// `.*`.
    pub fn parse(text: &str) -> Result<Self, InvalidPattern> {
        if let Some(stem) = text.strip_suffix(".*") {
            let stem = EventTypeName::parse(stem).map_err(|error| {
                InvalidPattern(format!("{text:?}: the part before \".*\" {error}"))
            })?;
            return Ok(Self::Prefix(format!("{stem}.")));
        }
        if text.contains('*') {
            return Err(InvalidPattern(format!(
                "{text:?}: a wildcard may only end a pattern, as in \"order.*\" (or stand alone, \
                 \"*\", for every type)"
            )));
        }
        EventTypeName::parse(text)
            .map(Self::Exact)
            .map_err(|error| InvalidPattern(format!("{text:?} {error}")))
    }

    /// A pattern as stored: its text and whether it is a prefix.
    pub fn from_stored(text: String, prefix: bool) -> Self {
        if prefix {
            Self::Prefix(text)
        } else {
            Self::Exact(EventTypeName::stored(text))
        }
    }

    /// The text stored for it (a prefix without its `*`) and whether it is
    /// a prefix.
    pub fn stored(&self) -> (&str, bool) {
        match self {
            Self::Exact(name) => (name.as_str(), false),
            Self::Prefix(prefix) => (prefix, true),
        }
    }

    /// Whether an event of type `name` matches.
    pub fn matches(&self, name: &EventTypeName) -> bool {
        match self {
            Self::Exact(exact) => exact == name,
            Self::Prefix(prefix) => name.as_str().starts_with(prefix.as_str()),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => write!(f, "{name}"),
            Self::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

/// The event types an endpoint wants: every type when it has no patterns,
/// otherwise those any pattern matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    patterns: Vec<Pattern>,
}

impl Subscription {
    /// Every event type.
    pub fn all() -> Self {
        Self::default()
    }

    /// The subscription `texts` describe: none (or `*` among them) means
    /// every type; repeats count once. At most [`MAX_PATTERNS`].
    pub fn parse<S: AsRef<str>>(texts: &[S]) -> Result<Self, InvalidPattern> {
        if texts.len() > MAX_PATTERNS {
            return Err(InvalidPattern(format!(
                "{} patterns; at most {MAX_PATTERNS} (use a wildcard such as \"order.*\")",
                texts.len()
            )));
        }
        if texts.iter().any(|text| text.as_ref() == "*") {
            return Ok(Self::all());
        }
        let mut patterns = texts
            .iter()
            .map(|text| Pattern::parse(text.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        patterns.sort();
        patterns.dedup();
        Ok(Self { patterns })
    }

    /// A subscription from its stored patterns.
    pub fn from_patterns(mut patterns: Vec<Pattern>) -> Self {
        patterns.sort();
        Self { patterns }
    }

    /// Whether it takes every event type.
    pub fn is_all(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Its patterns, in order; none for every type.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether an event of type `name` is delivered under it.
    pub fn matches(&self, name: &EventTypeName) -> bool {
        self.is_all() || self.patterns.iter().any(|pattern| pattern.matches(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> EventTypeName {
        EventTypeName::parse(text).unwrap()
    }

    #[test]
    fn exact_and_prefix_patterns_match_what_they_say() {
        let subscription = Subscription::parse(&["invoice.paid", "order.*"]).unwrap();
        assert!(subscription.matches(&name("invoice.paid")));
        assert!(!subscription.matches(&name("invoice.paid.late")));
        assert!(subscription.matches(&name("order.created")));
        assert!(subscription.matches(&name("order.line.added")));
        assert!(!subscription.matches(&name("order")));
        assert!(!subscription.matches(&name("orders.created")));
    }

    #[test]
    fn none_or_a_star_means_every_type() {
        assert!(Subscription::parse::<&str>(&[]).unwrap().is_all());
        let star = Subscription::parse(&["order.*", "*"]).unwrap();
        assert!(star.is_all());
        assert!(star.matches(&name("anything")));
    }

    #[test]
    fn repeats_count_once_and_display_round_trips() {
        let subscription = Subscription::parse(&["b.*", "a", "b.*"]).unwrap();
        let shown: Vec<String> = subscription
            .patterns()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["a", "b.*"]);
        for pattern in subscription.patterns() {
            let (text, prefix) = pattern.stored();
            assert_eq!(&Pattern::from_stored(text.to_owned(), prefix), pattern);
        }
    }

    #[test]
    fn refuses_misplaced_wildcards_and_bad_names() {
        for text in ["order*", "*.created", "order.*.x", ".*", "a..b", ""] {
            assert!(Pattern::parse(text).is_err(), "{text:?}");
        }
        let many: Vec<String> = (0..=MAX_PATTERNS).map(|i| format!("t{i}")).collect();
        assert!(Subscription::parse(&many).is_err());
    }
}
