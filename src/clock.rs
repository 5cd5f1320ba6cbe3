//! Clock: the one place timestamps are made and read (`time::OffsetDateTime`).
//!
//! Records on disk (releases, keys, audit, TLS state) store RFC 3339 UTC
//! text, e.g. `2026-12-02T03:35:07.123456789Z`; schedules and certificate
//! checks count unix seconds. Pure but for reading the system clock;
//! touches nothing else.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

/// Now, in unix seconds.
pub fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// `at` as RFC 3339 (`unknown` for a year RFC 3339 cannot write).
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| "unknown".into())
}

/// Unix seconds as RFC 3339 UTC; `None` out of range.
pub fn unix_to_rfc3339(secs: i64) -> Option<String> {
    let at = OffsetDateTime::from_unix_timestamp(secs).ok()?;
    at.format(&Rfc3339).ok()
}

/// RFC 3339 text as unix seconds; `None` when it is not RFC 3339.
pub fn parse_unix(text: &str) -> Option<i64> {
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

/// RFC 3339 text as a system time (times before 1970 count as 1970).
pub fn parse_system_time(text: &str) -> Option<SystemTime> {
    let secs = parse_unix(text)?;
    Some(UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_through_unix_seconds() {
        assert_eq!(
            unix_to_rfc3339(1_767_225_600).as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(parse_unix("2026-01-01T00:00:00Z"), Some(1_767_225_600));
        assert_eq!(parse_unix("2026-01-01T01:00:00+01:00"), Some(1_767_225_600));
        assert_eq!(
            parse_system_time("2026-01-01T00:00:00.5Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_767_225_600))
        );
        assert_eq!(parse_unix("yesterday"), None);
        assert_eq!(unix_to_rfc3339(i64::MAX), None);
    }

    #[test]
    fn now_is_utc_rfc3339_and_agrees_with_unix_now() {
        let before = now_unix();
        let text = now_rfc3339();
        assert!(text.ends_with('Z'), "{text}");
        let parsed = parse_unix(&text).unwrap();
        assert!(parsed >= before && parsed <= now_unix(), "{text}");
    }

    #[test]
    fn dates_before_1970_clamp_to_the_epoch() {
        assert_eq!(parse_system_time("1960-01-01T00:00:00Z"), Some(UNIX_EPOCH));
    }
}
