//! Cron schedules: the text of quarry.yml `cron.*.schedule` (and `timezone`)
//! read into a [`Schedule`] that says when a job is next due.
//!
//! Standard 5-field cron (`min hour dom month dow`), the `@hourly`,
//! `@daily`, `@weekly`, `@monthly`, `@yearly` aliases, and an optional
//! leading seconds field (6 fields) for jobs that must run more often than
//! once a minute. Times are UTC unless a time zone from the host's tz
//! database is named. Pure apart from reading that database; parsing and
//! arithmetic are `croner`'s and `jiff`'s.

use std::fmt;

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// A parsed schedule in its time zone.
#[derive(Clone)]
pub struct Schedule {
    cron: Cron,
    tz: TimeZone,
    text: String,
}

/// Why a schedule or time zone was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "invalid schedule {text:?}: {reason}; use 5 fields (min hour day month weekday) such as \"0 3 * * *\", or @hourly/@daily"
    )]
    Pattern { text: String, reason: String },
    #[error("unknown time zone {0:?}; use a name such as UTC or Europe/Berlin")]
    TimeZone(String),
}

impl Schedule {
    /// Reads `text` in `timezone` (UTC when `None`).
    pub fn parse(text: &str, timezone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let trimmed = text.trim();
        let fields = trimmed.split_whitespace().count();
        // croner also takes 7 fields (a year); quarry.yml offers 5 or 6.
        if !trimmed.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(ScheduleError::Pattern {
                text: text.to_owned(),
                reason: format!("expected 5 fields (or 6 with seconds first), found {fields}"),
            });
        }
        let parser = CronParser::builder().seconds(Seconds::Optional).build();
        let cron = parser.parse(trimmed).map_err(|e| ScheduleError::Pattern {
            text: text.to_owned(),
            reason: e.to_string(),
        })?;
        let tz = match timezone {
            None => TimeZone::UTC,
            Some(name) => {
                TimeZone::get(name).map_err(|_| ScheduleError::TimeZone(name.to_owned()))?
            }
        };
        Ok(Schedule {
            cron,
            tz,
            text: trimmed.to_owned(),
        })
    }

    /// The first due time strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let zoned = after.to_zoned(self.tz.clone());
        self.cron
            .find_next_occurrence(&zoned, false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The last due time at or before `at`.
    pub fn last_at_or_before(&self, at: Timestamp) -> Option<Timestamp> {
        let zoned = at.to_zoned(self.tz.clone());
        self.cron
            .find_previous_occurrence(&zoned, true)
            .ok()
            .map(|z| z.timestamp())
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn five_fields_in_utc() {
        let s = Schedule::parse("0 3 * * *", None).unwrap();
        assert_eq!(
            s.next_after(ts("2026-12-01T02:59:00Z")),
            Some(ts("2026-12-01T03:00:00Z"))
        );
        assert_eq!(
            s.next_after(ts("2026-12-01T03:00:00Z")),
            Some(ts("2026-12-02T03:00:00Z"))
        );
        assert_eq!(
            s.last_at_or_before(ts("2026-12-01T03:00:00Z")),
            Some(ts("2026-12-01T03:00:00Z"))
        );
    }

    #[test]
    fn steps_aliases_and_seconds() {
        let s = Schedule::parse("*/15 * * * *", None).unwrap();
        assert_eq!(
            s.next_after(ts("2026-12-01T10:01:00Z")),
            Some(ts("2026-12-01T10:15:00Z"))
        );
        let s = Schedule::parse("@daily", None).unwrap();
        assert_eq!(
            s.next_after(ts("2026-12-01T10:01:00Z")),
            Some(ts("2026-12-02T00:00:00Z"))
        );
        let s = Schedule::parse("*/2 * * * * *", None).unwrap();
        assert_eq!(
            s.next_after(ts("2026-12-01T10:01:01Z")),
            Some(ts("2026-12-01T10:01:02Z"))
        );
    }

    #[test]
    fn time_zones_shift_the_hour() {
        // 03:00 in Berlin is 02:00 UTC in winter.
        let s = Schedule::parse("0 3 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            s.next_after(ts("2026-12-01T00:00:00Z")),
            Some(ts("2026-12-01T02:00:00Z"))
        );
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let e = Schedule::parse("0 3 * *", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid schedule \"0 3 * *\": expected 5 fields (or 6 with seconds first), found 4; use 5 fields (min hour day month weekday) such as \"0 3 * * *\", or @hourly/@daily"
        );
        assert!(matches!(
            Schedule::parse("61 * * * *", None),
            Err(ScheduleError::Pattern { .. })
        ));
        assert_eq!(
            Schedule::parse("@daily", Some("Mars/Olympus")).unwrap_err(),
            ScheduleError::TimeZone("Mars/Olympus".into())
        );
    }
}
