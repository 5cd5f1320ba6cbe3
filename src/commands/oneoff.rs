//! `run`, `enter`, `cron`, `cron:run` and `logs --cron`: the commands of
//! one-off containers and scheduled jobs. Rights are checked here; the work
//! is [`crate::oneoff`]'s and [`crate::cron`]'s.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{CommandError, Fail, Res, fail, require_app, show};
use crate::channel::{Closed, Input, Output, Terminal};
use crate::command::{RUN_TIMEOUT_SECS, RunArgs};
use crate::cron;
use crate::daemon::Daemon;
use crate::manifest::Command;
use crate::oneoff::session::{Channel, Ending};
use crate::oneoff::{self, Kind, OneOff, OneOffError};
use crate::store::KeyRecord;

fn oneoff_fail(e: OneOffError) -> Fail {
    match &e {
        OneOffError::NoRelease(_) | OneOffError::NoNode { .. } | OneOffError::NotRunning { .. } => {
            CommandError::NotFound(e.to_string())
        }
        OneOffError::Docker { .. } | OneOffError::State { .. } => fail(e.to_string()),
    }
}

/// The exit status a client sees for a one-off's code (0–255).
fn status_of(code: i64) -> u32 {
    u32::try_from(code.clamp(0, 255)).unwrap_or(255)
}

/// A command's own exit status as the result: non-zero fails without a
/// message of Quarry's (the command said why, if anything).
pub(super) fn exit(code: Result<u32, Fail>) -> Res {
    match code? {
        0 => Ok(()),
        n => Err(CommandError::Exited {
            message: String::new(),
            code: n,
        }),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    d: &Arc<Daemon>,
    key: &KeyRecord,
    args: RunArgs,
    input: Input,
    out: &Output,
    closed: Closed,
    terminal: Option<Terminal>,
) -> Result<u32, Fail> {
    require_app(d, key, &args.app)?;
    let app = args.app.as_str();
    let template = oneoff::template(d, app, args.node.as_deref())
        .await
        .map_err(oneoff_fail)?;
    let tty = terminal.is_some() && !args.detach;
    let mut env = args.env.clone();
    if let Some(t) = terminal.as_ref().filter(|_| tty) {
        env.push(("TERM".into(), t.term.clone()));
    }
    let body = oneoff::spec::body(
        &template,
        &OneOff {
            instance: &d.instance,
            app,
            kind: Kind::Run,
            command: &args.command,
            env: &env,
            tty,
            stdin: !args.detach,
            by: &key.name,
        },
    );
    let docker = d.docker_on(&template.server);
    let name = oneoff::container_name(app, Kind::Run);
    let described = oneoff::spec::describe(&args.command);
    d.store.audit(
        Some(app),
        key,
        "run",
        &format!("{name} on {}: {described}", template.server),
    );
    if args.detach {
        let deadline = Duration::from_secs(args.timeout.unwrap_or(RUN_TIMEOUT_SECS));
        let log = cron::log_path(d, app, "run");
        let header = format!("run {name} v{} by {}", template.release, key.name);
        let (d2, app2, name2) = (d.clone(), app.to_owned(), name.clone());
        tokio::spawn(async move {
            let result =
                oneoff::detached::run(&docker, &app2, &name2, body, deadline, &log, &header).await;
            let detail = match result {
                Ok(f) if f.timed_out => format!("{name2}: stopped at its timeout"),
                Ok(f) => format!(
                    "{name2}: exit {} after {:.1}s",
                    f.code,
                    f.duration.as_secs_f64()
                ),
                Err(e) => format!("{name2}: could not run: {e}"),
            };
            d2.store.audit_system(&app2, "run", &detail);
        });
        out.err(format!(
            "Running {described:?} as {name} (v{}) on {}; its output: logs {app} --cron run\n",
            template.release, template.server
        ))
        .await;
        return Ok(0);
    }
    // A terminal session may stay open as long as its user wants; a pipe
    // gets the default deadline.
    let deadline = match (args.timeout, tty) {
        (Some(t), _) => Some(Duration::from_secs(t)),
        (None, true) => None,
        (None, false) => Some(Duration::from_secs(RUN_TIMEOUT_SECS)),
    };
    let ch = Channel {
        input,
        out: out.clone(),
        closed,
        terminal: terminal.filter(|_| tty),
    };
    let ending = oneoff::session::run(&docker, app, &name, body, ch, deadline)
        .await
        .map_err(oneoff_fail)?;
    match ending {
        Ending::Exited(code) => Ok(status_of(code)),
        Ending::Disconnected => Ok(status_of(ending.code())),
        Ending::TimedOut(t) => Err(CommandError::Exited {
            message: format!("{name} stopped after {}s (--timeout)", t.as_secs()),
            code: status_of(ending.code()),
        }),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn enter(
    d: &Arc<Daemon>,
    key: &KeyRecord,
    app: &str,
    node: &str,
    index: u32,
    command: Option<Command>,
    input: Input,
    out: &Output,
    closed: Closed,
    terminal: Option<Terminal>,
) -> Result<u32, Fail> {
    require_app(d, key, app)?;
    let found = d.containers(Some(app)).await.map_err(fail)?;
    let target = format!("{node}.{index}");
    let Some(c) = found
        .iter()
        .filter(|c| c.node == node && c.index == index && c.service.is_none())
        .filter(|c| c.state == crate::launch::ContainerState::Running)
        .max_by_key(|c| (c.is_steady(), c.release))
    else {
        return Err(oneoff_fail(OneOffError::NotRunning {
            app: app.to_owned(),
            target,
        }));
    };
    let argv = match &command {
        None => vec!["/bin/sh".to_string()],
        Some(cmd) => oneoff::spec::argv(cmd, None),
    };
    d.store.audit(
        Some(app),
        key,
        "enter",
        &format!("{target} ({}): {}", c.name, shell_words::join(&argv)),
    );
    let ch = Channel {
        input,
        out: out.clone(),
        closed,
        terminal,
    };
    let docker = d.docker_on(&c.server);
    let ending = oneoff::session::exec(&docker, app, &c.id, argv, ch)
        .await
        .map_err(oneoff_fail)?;
    Ok(status_of(ending.code()))
}

#[derive(Serialize)]
struct JobView {
    name: String,
    schedule: String,
    timezone: String,
    node: String,
    command: String,
    running: bool,
    last: Option<cron::LastRun>,
    /// RFC 3339, UTC.
    next: Option<String>,
}

pub(super) async fn list(d: &Daemon, key: &KeyRecord, app: &str, json: bool, out: &Output) -> Res {
    require_app(d, key, app)?;
    let now = jiff::Timestamp::now();
    let views: Vec<JobView> = cron::jobs(d, app)
        .into_iter()
        .map(|(name, job)| JobView {
            next: job
                .parsed()
                .ok()
                .and_then(|s| s.next_after(now))
                .map(|t| t.to_string()),
            running: d.cron.is_running(app, &name),
            last: cron::last_run(d, app, &name),
            schedule: job.schedule.clone(),
            timezone: job.timezone.clone().unwrap_or_else(|| "UTC".into()),
            node: job.node.clone(),
            command: oneoff::spec::describe(&job.command),
            name,
        })
        .collect();
    show(
        out,
        json,
        &views,
        Some(format!("{app} has no scheduled jobs (quarry.yml cron:)")),
        &[
            "JOB", "SCHEDULE", "NODE", "LAST RUN", "EXIT", "DURATION", "NEXT RUN", "COMMAND",
        ],
        |v| {
            let last = v.last.as_ref();
            vec![
                v.name.clone(),
                format!("{} ({})", v.schedule, v.timezone),
                v.node.clone(),
                last.map_or("-".into(), |l| l.started.clone()),
                last.map_or("-".into(), |l| match (&l.error, l.exit, l.timed_out) {
                    (Some(_), _, _) => "error".into(),
                    (None, _, true) => "timeout".into(),
                    (None, Some(code), false) => code.to_string(),
                    (None, None, false) => "running".into(),
                }),
                last.map_or("-".into(), |l| {
                    format!("{:.1}s", l.duration_ms as f64 / 1000.0)
                }),
                v.next.clone().unwrap_or_else(|| "-".into()),
                v.command.clone(),
            ]
        },
    )
    .await;
    Ok(())
}

pub(super) async fn run_now(
    d: &Arc<Daemon>,
    key: &KeyRecord,
    app: &str,
    job: &str,
    out: &Output,
) -> Result<u32, Fail> {
    require_app(d, key, app)?;
    if !cron::jobs(d, app).iter().any(|(name, _)| name == job) {
        return Err(CommandError::NotFound(format!(
            "app {app} has no job {job} in its live release; see `cron {app}`"
        )));
    }
    out.err(format!("-----> Running job {job} of {app}\n"))
        .await;
    let last = cron::run_job(d, app, job, "cron:run")
        .await
        .map_err(|e| match e {
            cron::CronError::Busy { .. } => CommandError::Conflict(e.to_string()),
            cron::CronError::NoJob { .. } => CommandError::NotFound(e.to_string()),
            cron::CronError::Lock { .. } | cron::CronError::OneOff(_) => fail(e.to_string()),
        })?;
    logs(d, key, app, job, 20, out).await?;
    if let Some(e) = &last.error {
        return Err(fail(format!("job {job} could not run: {e}")));
    }
    if last.timed_out {
        return Err(fail(format!("job {job} was stopped at its timeout")));
    }
    Ok(status_of(last.exit.unwrap_or(-1)))
}

/// The last `lines` lines of a job's log (its last runs' output).
pub(super) async fn logs(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    job: &str,
    lines: usize,
    out: &Output,
) -> Res {
    require_app(d, key, app)?;
    let text =
        oneoff::detached::read_capped(&cron::log_path(d, app, job), oneoff::detached::LOG_BYTES);
    if text.is_empty() {
        // `run` is where detached runs write.
        let known = job == "run" || cron::jobs(d, app).iter().any(|(name, _)| name == job);
        if !known {
            return Err(CommandError::NotFound(format!(
                "app {app} has no job {job}; see `cron {app}`"
            )));
        }
        out.err(format!("job {job} of {app} has not run yet\n"))
            .await;
        return Ok(());
    }
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    let skip = all.len().saturating_sub(lines);
    let mut shown = all[skip..].join("\n");
    shown.push('\n');
    out.out(shown).await;
    Ok(())
}
