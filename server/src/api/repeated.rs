//! Bounds and repeats of a request's repeated fields.
//!
//! A request up to the message limit can carry millions of small values
//! (a packed enum is one byte each), and a filter turns each into SQL on
//! every page it reads. Every repeated field of a request is therefore
//! bounded, refused above its bound before any value is looked at, and,
//! where neither order nor repeats mean anything (filters, selections),
//! its repeats are dropped. Headers and batch items keep theirs: a header
//! may be sent twice, and a batch answers item by item.

use std::{collections::HashSet, hash::Hash};

use super::error::ApiError;

/// Refuses `field` when it holds more than `most` values, naming both.
pub fn at_most(field: &'static str, count: usize, most: usize) -> Result<(), ApiError> {
    if count > most {
        return Err(ApiError::invalid(
            field,
            format!("has {count} values; the most is {most}"),
        ));
    }
    Ok(())
}

/// `values` in the order they first appear, each once.
pub fn distinct<T: Eq + Hash + Clone>(values: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut seen = HashSet::new();
    values
        .into_iter()
        .filter(|value| seen.insert(value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_names_the_field_and_the_most() {
        at_most("kinds", 10, 10).unwrap();
        let refused = at_most("kinds", 11, 10).unwrap_err();
        assert_eq!(refused.to_string(), "kinds: has 11 values; the most is 10");
    }

    #[test]
    fn repeats_are_dropped_in_order() {
        assert_eq!(distinct([3, 1, 3, 2, 1]), [3, 1, 2]);
    }
}
