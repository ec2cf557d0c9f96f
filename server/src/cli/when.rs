//! Times as the endpoint and event commands take and show them: typed as
//! RFC 3339 or as a duration ago (`2h`), shown as RFC 3339 UTC.

use std::time::{SystemTime, UNIX_EPOCH};

use prost_types::Timestamp;

use super::render::{or_dash, time};

/// A moment as typed: RFC 3339 (`2026-11-30T09:00:00Z`) or a duration
/// ago (`2h`, `30min`, `1day`).
pub fn parse_moment(text: &str) -> Result<SystemTime, String> {
    if let Ok(moment) = humantime::parse_rfc3339_weak(text) {
        return Ok(moment);
    }
    let ago = humantime::parse_duration(text).map_err(|_| {
        format!("{text:?} is neither an RFC 3339 time nor a duration ago such as 2h")
    })?;
    SystemTime::now()
        .checked_sub(ago)
        .filter(|moment| *moment >= UNIX_EPOCH)
        .ok_or_else(|| format!("{text} ago is before 1970"))
}

/// A moment as the wire carries it.
pub fn wire(moment: SystemTime) -> Timestamp {
    moment.into()
}

/// A wire time as RFC 3339 UTC to the millisecond, if it is set.
pub fn shown(moment: Option<&Timestamp>) -> Option<String> {
    time(moment.and_then(|moment| SystemTime::try_from(*moment).ok()))
}

/// A wire time as [`shown`], or `-` when unset.
pub fn shown_or_dash(moment: Option<&Timestamp>) -> String {
    or_dash(shown(moment))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn moments_read_as_times_or_durations_ago() {
        let at = parse_moment("2026-11-30T09:00:00Z").unwrap();
        assert_eq!(
            shown(Some(&wire(at))).as_deref(),
            Some("2026-11-30T09:00:00.000Z")
        );
        let ago = parse_moment("2h").unwrap();
        let expected = SystemTime::now() - Duration::from_secs(7200);
        let off = expected
            .duration_since(ago)
            .unwrap_or_else(|e| e.duration());
        assert!(off < Duration::from_secs(5), "{off:?}");
        assert!(parse_moment("yesterday-ish").is_err());
        assert_eq!(shown_or_dash(None), "-");
    }
}
