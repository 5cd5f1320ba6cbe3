//! Parsing of the history commands: `logs`, `releases:info`, `rollback`,
//! `events`. Pure.

use super::args::{Args, app, app_and_optional, node, optional_one, release};
use super::{Cmd, ParseError};
use crate::validate;

pub(super) fn logs(command: &'static str, words: &[String]) -> Result<Cmd, ParseError> {
    let a = Args::split(
        command,
        words,
        &["-f", "--follow"],
        &["-n", "--num", "--node", "--cron"],
    )?;
    let lines = match a.options.get("-n").or(a.options.get("--num")) {
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100_000).contains(n))
            .ok_or_else(|| {
                a.usage_error(&format!("-n takes a number from 1 to 100000, found {n:?}"))
            })?,
        None => 100,
    };
    Ok(Cmd::Logs {
        app: app(a.exactly(1)?[0])?,
        lines,
        follow: a.flag("-f") || a.flag("--follow"),
        node: a.options.get("--node").map(|n| node(n)).transpose()?,
        cron: a
            .options
            .get("--cron")
            .map(|j| {
                validate::process_name("job name", j)
                    .map_err(|e| ParseError::usage(e.to_string()))?;
                Ok::<_, ParseError>(j.to_string())
            })
            .transpose()?,
    })
}

pub(super) fn info(command: &'static str, words: &[String]) -> Result<Cmd, ParseError> {
    let a = Args::split(command, words, &["--json"], &[])?;
    let p = a.exactly(2)?;
    Ok(Cmd::ReleasesInfo {
        app: app(p[0])?,
        release: release(p[1])?,
        json: a.flag("--json"),
    })
}

pub(super) fn rollback(command: &'static str, words: &[String]) -> Result<Cmd, ParseError> {
    let a = Args::split(command, words, &[], &[])?;
    let (app, to) = app_and_optional(&a)?;
    Ok(Cmd::Rollback {
        app,
        release: to.map(release).transpose()?,
    })
}

pub(super) fn events(command: &'static str, words: &[String]) -> Result<Cmd, ParseError> {
    let a = Args::split(command, words, &["--json"], &[])?;
    Ok(Cmd::Events {
        app: optional_one(&a)?.map(app).transpose()?,
        json: a.flag("--json"),
    })
}
