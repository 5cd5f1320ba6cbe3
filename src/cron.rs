//! Scheduled jobs: quarry.yml `cron:` of each live app, run as detached
//! one-offs of the live release when they are due.
//!
//! Rules: one run per job at a time (a run still going when the next is due
//! is skipped, and `events` says so); a job of an app being deployed waits
//! for the deploy's lock, then runs the release that deploy left live; runs
//! missed while the daemon was down are not replayed, except one catch-up
//! run for a job with `catchup: true`. Each run's end is an `events` entry,
//! its output goes to `log/cron/<job>.log`, its summary to `cron/<job>.json`.
//!
//! May touch: the db (`stacks/<app>/cron/`, `log/cron/`, audit), one-off
//! containers through [`crate::oneoff`], the app's deploy lock (briefly).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::daemon::Daemon;
use crate::manifest::CronJob;
use crate::oneoff::{self, Kind, OneOff, OneOffError};
use crate::progress::Progress;
use crate::store::AppStatus;

/// How often due times are checked; schedules have a one-second grain.
const TICK: Duration = Duration::from_millis(500);
/// How often the apps' job tables are read again from their live releases.
const RELOAD: Duration = Duration::from_secs(3);
/// A job waits at most this long for a deploy of its app to finish.
const LOCK_WAIT: Duration = Duration::from_secs(1800);

/// The last run of a job: `stacks/<app>/cron/<job>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRun {
    /// RFC 3339, UTC.
    pub started: String,
    pub release: u32,
    /// `None` while it runs or when it could not start.
    pub exit: Option<i64>,
    pub timed_out: bool,
    pub duration_ms: u64,
    /// Why it could not start, if it could not.
    pub error: Option<String>,
    /// `schedule`, `catchup` or `cron:run`.
    pub trigger: String,
}

fn state_path(d: &Daemon, app: &str, job: &str) -> PathBuf {
    d.store
        .app_dir(app)
        .join("cron")
        .join(format!("{job}.json"))
}

/// `log/cron/<job>.log`: the output of the job's last runs.
pub fn log_path(d: &Daemon, app: &str, job: &str) -> PathBuf {
    d.store
        .app_dir(app)
        .join("log")
        .join("cron")
        .join(format!("{job}.log"))
}

pub fn last_run(d: &Daemon, app: &str, job: &str) -> Option<LastRun> {
    crate::store::read_json(&state_path(d, app, job))
        .ok()
        .flatten()
}

/// The jobs of `app`'s live release, if it is live.
pub fn jobs(d: &Daemon, app: &str) -> Vec<(String, CronJob)> {
    if d.store.status(app) != AppStatus::Live {
        return Vec::new();
    }
    let Ok(Some(release)) = d.store.live_release(app) else {
        return Vec::new();
    };
    match crate::stack::from_release(&release) {
        Ok(stack) => stack.manifest.cron.into_iter().collect(),
        Err(_) => Vec::new(),
    }
}

/// Why a job did not run.
#[derive(Debug, thiserror::Error)]
pub enum CronError {
    #[error("job {job} of {app} is still running; this run is skipped")]
    Busy { app: String, job: String },
    #[error("app {app} has no job {job} in its live release")]
    NoJob { app: String, job: String },
    #[error("job {job} of {app}: {source}")]
    Lock {
        app: String,
        job: String,
        source: crate::daemon::LockError,
    },
    #[error(transparent)]
    OneOff(#[from] OneOffError),
}

/// Run `job` of `app` now and wait for its end (`trigger` says why).
pub async fn run_job(
    d: &Arc<Daemon>,
    app: &str,
    job: &str,
    trigger: &str,
) -> Result<LastRun, CronError> {
    let Some(_slot) = d.cron.begin(app, job) else {
        d.store.audit_system(
            app,
            "cron",
            &format!("{job}: skipped, the last run is still going"),
        );
        return Err(CronError::Busy {
            app: app.to_owned(),
            job: job.to_owned(),
        });
    };
    // A deploy in progress holds the lock: wait for it, then run what it
    // left live. The lock is not kept while the job runs.
    let lock = d
        .locks
        .acquire(&d.store, app, &Progress::silent(), LOCK_WAIT)
        .await
        .map_err(|source| CronError::Lock {
            app: app.to_owned(),
            job: job.to_owned(),
            source,
        })?;
    let Some((_, def)) = jobs(d, app).into_iter().find(|(name, _)| name == job) else {
        return Err(CronError::NoJob {
            app: app.to_owned(),
            job: job.to_owned(),
        });
    };
    let started = Timestamp::now();
    let template = oneoff::template(d, app, Some(&def.node)).await;
    drop(lock);
    let mut last = LastRun {
        started: started.to_string(),
        release: 0,
        exit: None,
        timed_out: false,
        duration_ms: 0,
        error: None,
        trigger: trigger.to_owned(),
    };
    let template = match template {
        Ok(t) => t,
        Err(e) => {
            last.error = Some(e.to_string());
            record(d, app, job, &last);
            return Err(e.into());
        }
    };
    last.release = template.release;
    let body = oneoff::spec::body(
        &template,
        &OneOff {
            instance: &d.instance,
            app,
            kind: Kind::Cron,
            command: &def.command,
            env: &[],
            tty: false,
            stdin: false,
            by: "cron",
        },
    );
    let docker = d.docker_on(&template.server);
    let name = oneoff::container_name(app, Kind::Cron);
    let header = format!("{job} v{} at {}", template.release, last.started);
    let result = oneoff::detached::run(
        &docker,
        app,
        &name,
        body,
        Duration::from_secs(u64::from(def.timeout)),
        &log_path(d, app, job),
        &header,
    )
    .await;
    match result {
        Ok(f) => {
            last.exit = Some(f.code);
            last.timed_out = f.timed_out;
            last.duration_ms = u64::try_from(f.duration.as_millis()).unwrap_or(u64::MAX);
        }
        Err(e) => last.error = Some(e.to_string()),
    }
    record(d, app, job, &last);
    Ok(last)
}

/// Keeps the last run's summary and says how it went in `events`.
fn record(d: &Daemon, app: &str, job: &str, last: &LastRun) {
    let path = state_path(d, app, job);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = crate::store::write_json(&path, last, 0o600);
    let detail = match (&last.error, last.exit, last.timed_out) {
        (Some(e), _, _) => format!("{job}: could not run: {e}"),
        (None, _, true) => format!("{job}: stopped at its timeout (v{})", last.release),
        (None, code, false) => format!(
            "{job}: exit {} after {:.1}s (v{}, {})",
            code.unwrap_or(-1),
            last.duration_ms as f64 / 1000.0,
            last.release,
            last.trigger
        ),
    };
    d.store.audit_system(app, "cron", &detail);
}

/// When each job is next due, as known to this daemon.
#[derive(Default)]
struct Table {
    /// (app, job) → (the schedule text it was computed from, next due time).
    next: HashMap<(String, String), (String, Timestamp)>,
}

/// Runs due jobs until `shutdown`.
pub async fn run_forever(d: Arc<Daemon>, mut shutdown: watch::Receiver<bool>) {
    let mut table = Table::default();
    let mut jobs_by_app: Vec<(String, Vec<(String, CronJob)>)> = Vec::new();
    let mut reloaded: Option<std::time::Instant> = None;
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if reloaded.is_none_or(|at| at.elapsed() >= RELOAD) {
            jobs_by_app = d
                .store
                .apps()
                .unwrap_or_default()
                .into_iter()
                .map(|app| {
                    let jobs = jobs(&d, &app);
                    (app, jobs)
                })
                .filter(|(_, jobs)| !jobs.is_empty())
                .collect();
            reloaded = Some(std::time::Instant::now());
        }
        let now = Timestamp::now();
        let mut seen = HashSet::new();
        for (app, jobs) in &jobs_by_app {
            for (name, job) in jobs {
                let key = (app.clone(), name.clone());
                seen.insert(key.clone());
                if let Some(trigger) = due(&d, &mut table, &key, job, now) {
                    let d = d.clone();
                    let (app, name) = key;
                    tokio::spawn(async move {
                        if let Err(e) = run_job(&d, &app, &name, trigger).await {
                            tracing::warn!(app, job = name, "cron: {e}");
                        }
                    });
                }
            }
        }
        table.next.retain(|k, _| seen.contains(k));
    }
}

/// Whether `job` should start now, and why; moves its next due time on.
fn due(
    d: &Daemon,
    table: &mut Table,
    key: &(String, String),
    job: &CronJob,
    now: Timestamp,
) -> Option<&'static str> {
    let schedule = job.parsed().ok()?;
    match table.next.get(key) {
        Some((text, next)) if *text == job.schedule => {
            if *next > now {
                return None;
            }
            let after = schedule.next_after(now)?;
            table
                .next
                .insert(key.clone(), (job.schedule.clone(), after));
            Some("schedule")
        }
        // First sight of the job (or a new schedule): nothing is replayed,
        // but a catch-up job whose last due time passed unrun runs once.
        _ => {
            let next = schedule.next_after(now)?;
            table.next.insert(key.clone(), (job.schedule.clone(), next));
            let missed = job.catchup && {
                let due = schedule.last_at_or_before(now);
                let last =
                    last_run(d, &key.0, &key.1).and_then(|l| l.started.parse::<Timestamp>().ok());
                matches!((due, last), (Some(due), Some(last)) if last < due)
            };
            missed.then_some("catchup")
        }
    }
}
