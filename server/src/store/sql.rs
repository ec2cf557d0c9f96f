//! Small builders for the hand-written SQL: numbered placeholders for
//! multi-row statements, in the `$n` form both backends bind by number.

/// `($first, ..., $first+width-1)` for each of `count` rows, each shaped by
/// `row`, comma-separated.
pub fn placeholders(
    count: usize,
    width: usize,
    first: usize,
    row: impl Fn(&[String]) -> String,
) -> String {
    (0..count)
        .map(|i| {
            let names: Vec<String> = (0..width)
                .map(|j| format!("${}", first + i * width + j))
                .collect();
            row(&names)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($a, $b, ...)`.
pub fn tuple(names: &[String]) -> String {
    format!("({})", names.join(", "))
}

/// `($first, ..., $first+count-1)`, a list for `IN`.
pub fn list(count: usize, first: usize) -> String {
    let names: Vec<String> = (first..first + count).map(|n| format!("${n}")).collect();
    tuple(&names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_rows_and_lists() {
        assert_eq!(placeholders(2, 2, 3, tuple), "($3, $4), ($5, $6)");
        assert_eq!(list(3, 1), "($1, $2, $3)");
    }
}
