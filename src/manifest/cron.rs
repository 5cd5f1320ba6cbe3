//! quarry.yml `cron:`: scheduled jobs, each a one-off of the live release.
//!
//! ```yaml
//! cron:
//!   nightly-report: { schedule: "0 3 * * *", command: ./report, node: worker, timeout: 600 }
//!   cleanup:        { schedule: "*/15 * * * *", command: [python, manage.py, clearsessions] }
//! ```
//! Pure: schedules are checked by [`crate::schedule`], names by
//! [`crate::validate`].

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use super::schema::command;
use super::{Command, ManifestError, Node};
use crate::schedule::{Schedule, ScheduleError};
use crate::validate;
use crate::yaml::At;

/// A job may run for at most a day.
const TIMEOUT: RangeInclusive<u32> = 1..=86_400;

/// One scheduled job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronJob {
    /// As written: 5 cron fields (or 6 with seconds first), or an `@` alias.
    pub schedule: String,
    pub command: Command,
    /// The node whose environment and memory limit the job runs with.
    pub node: String,
    /// Seconds before a run is stopped.
    pub timeout: u32,
    /// A tz database name; `None` is UTC.
    pub timezone: Option<String>,
    /// After the daemon was down, run a missed job once (never more).
    pub catchup: bool,
}

impl CronJob {
    /// The schedule, parsed; the manifest was checked, so only a tz database
    /// that changed since can make this fail.
    pub fn parsed(&self) -> Result<Schedule, ScheduleError> {
        Schedule::parse(&self.schedule, self.timezone.as_deref())
    }
}

/// Reads `cron:`; `nodes` are the manifest's, for `node:` and its default.
pub(super) fn jobs(
    at: &At,
    nodes: &BTreeMap<String, Node>,
) -> Result<BTreeMap<String, CronJob>, ManifestError> {
    let mut jobs = BTreeMap::new();
    for (name, at) in at.entries()? {
        validate::process_name("job name", name).map_err(|e| at.fail(e.to_string()))?;
        jobs.insert(name.to_owned(), job(&at, nodes)?);
    }
    Ok(jobs)
}

fn job(at: &At, nodes: &BTreeMap<String, Node>) -> Result<CronJob, ManifestError> {
    let f = at.fields(&[
        "schedule", "command", "node", "timeout", "timezone", "catchup",
    ])?;
    let Some(schedule_at) = f.get("schedule") else {
        return Err(at.fail("needs a schedule, such as \"0 3 * * *\""));
    };
    let Some(command) = f.read("command", command)? else {
        return Err(at.fail("needs a command"));
    };
    let timezone = match f.get("timezone") {
        Some(at) => Some(at.string()?.to_owned()),
        None => None,
    };
    let schedule = schedule_at.text()?;
    match Schedule::parse(schedule, timezone.as_deref()) {
        Ok(_) => {}
        Err(e @ ScheduleError::TimeZone(_)) => {
            return Err(f.get("timezone").unwrap_or(schedule_at).fail(e.to_string()));
        }
        Err(e @ ScheduleError::Pattern { .. }) => return Err(schedule_at.fail(e.to_string())),
    }
    let node = match f.get("node") {
        Some(at) => {
            let name = at.string()?;
            if !nodes.contains_key(name) {
                return Err(at.fail(format!(
                    "no node {name:?} in nodes; use one of {}",
                    nodes.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
            name.to_owned()
        }
        None => default_node(nodes),
    };
    Ok(CronJob {
        schedule: schedule.trim().to_owned(),
        command,
        node,
        timeout: f.int("timeout", TIMEOUT)?.unwrap_or(3_600),
        timezone,
        catchup: f.read("catchup", At::bool)?.unwrap_or(false),
    })
}

/// A job without `node:` runs like the `web` node, else the first node.
pub fn default_node(nodes: &BTreeMap<String, Node>) -> String {
    if nodes.contains_key("web") {
        "web".to_owned()
    } else {
        nodes
            .keys()
            .next()
            .cloned()
            .unwrap_or_else(|| "web".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::{Command, parse_manifest};

    fn refuse(text: &str) -> String {
        match parse_manifest("quarry.yml", text) {
            Ok(m) => panic!("accepted: {m:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn jobs_take_a_schedule_a_command_and_defaults() {
        let m = parse_manifest(
            "quarry.yml",
            "nodes:\n  web: {}\n  worker: {command: ./work}\ncron:\n  nightly: { schedule: \"0 3 * * *\", command: ./report, node: worker, timeout: 600 }\n  cleanup:\n    schedule: \"*/15 * * * *\"\n    command: [python, manage.py, clearsessions]\n    timezone: Europe/Berlin\n    catchup: true\n",
        )
        .unwrap();
        let nightly = &m.cron["nightly"];
        assert_eq!(nightly.schedule, "0 3 * * *");
        assert_eq!(nightly.command, Command::Shell("./report".into()));
        assert_eq!((nightly.node.as_str(), nightly.timeout), ("worker", 600));
        assert!(!nightly.catchup);
        let cleanup = &m.cron["cleanup"];
        assert_eq!(cleanup.node, "web");
        assert_eq!(cleanup.timeout, 3600);
        assert_eq!(cleanup.timezone.as_deref(), Some("Europe/Berlin"));
        assert!(cleanup.catchup);
    }

    #[test]
    fn bad_jobs_name_the_line_and_key() {
        assert_eq!(
            refuse("nodes: {web: {}}\ncron:\n  nightly: { schedule: \"0 3 * *\", command: ./x }\n"),
            "quarry.yml:3: cron.nightly.schedule: invalid schedule \"0 3 * *\": expected 5 fields (or 6 with seconds first), found 4; use 5 fields (min hour day month weekday) such as \"0 3 * * *\", or @hourly/@daily"
        );
        assert!(
            refuse(
                "nodes: {web: {}}\ncron:\n  nightly: { schedule: \"99 3 * * *\", command: ./x }\n"
            )
            .starts_with("quarry.yml:3: cron.nightly.schedule: invalid schedule \"99 3 * * *\": ")
        );
        assert_eq!(
            refuse(
                "nodes: {web: {}}\ncron:\n  nightly: { schedule: \"@daily\", command: ./x, node: db }\n"
            ),
            "quarry.yml:3: cron.nightly.node: no node \"db\" in nodes; use one of web"
        );
        assert_eq!(
            refuse(
                "nodes: {web: {}}\ncron:\n  nightly: { schedule: \"@daily\", command: ./x, timezone: Mars/Base }\n"
            ),
            "quarry.yml:3: cron.nightly.timezone: unknown time zone \"Mars/Base\"; use a name such as UTC or Europe/Berlin"
        );
        assert_eq!(
            refuse("nodes: {web: {}}\ncron:\n  nightly: { command: ./x }\n"),
            "quarry.yml:3: cron.nightly: needs a schedule, such as \"0 3 * * *\""
        );
        assert_eq!(
            refuse(
                "nodes: {web: {}}\ncron:\n  nightly: { schedule: \"@daily\", command: ./x, every: 2 }\n"
            ),
            "quarry.yml:3: cron.nightly.every: unknown field, expected one of schedule, command, node, timeout, timezone, catchup"
        );
        assert!(
            refuse("nodes: {web: {}}\ncron:\n  Bad_Name: { schedule: \"@daily\", command: ./x }\n")
                .starts_with("quarry.yml:3: cron.Bad_Name: ")
        );
    }
}
