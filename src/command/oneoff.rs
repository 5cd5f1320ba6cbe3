//! Parsing of `run` and `enter`, whose command to run follows `--`, and
//! the help texts of the one-off and cron commands. Pure.

use super::args::{Args, app, env_key, node};
use super::{Cmd, ParseError};
use crate::manifest::Command;
use crate::validate;

/// A run without a terminal stops after this long unless `--timeout` says.
pub const DEFAULT_TIMEOUT_SECS: u64 = 3_600;
const MAX_TIMEOUT_SECS: u64 = 7 * 86_400;

/// `run` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunArgs {
    pub app: crate::validate::AppName,
    /// Whose environment and limits; default `web`, else the first node.
    pub node: Option<String>,
    /// Added to (over) the node's environment for this run only.
    pub env: Vec<(String, String)>,
    pub detach: bool,
    /// `None`: the default (none with a terminal, an hour without).
    pub timeout: Option<u64>,
    pub command: Command,
}

pub const RUN_HELP: &str = "\
Runs CMD in a new container of the app's live release, with its config vars, \
service addresses and the node's memory limit, beside the node's containers; \
the container is removed when CMD ends. Output streams as it is written, stdin \
is forwarded, and the exit status is CMD's. With `ssh -t` CMD gets a terminal \
(window size, Ctrl-C): `ssh -t … run APP -- python manage.py shell`. Without \
one it is pipe-clean: `ssh … run APP -- cat f > f` copies the bytes. Several \
words run as they are; one quoted word with spaces runs in /bin/sh -c \
(`ssh … \"run APP -- 'rake db:migrate && echo ok'\"`). Closing the connection stops \
the container. --detach starts it and returns; its output goes to `logs APP --cron run`. \
--timeout stops it after SECONDS (default: none with a terminal, 3600 without). \
--env K=V sets a variable for this run only.";

pub const ENTER_HELP: &str = "\
Starts CMD (default /bin/sh) in the running container NODE.N (as `ps APP` \
names it, e.g. web.1), with a terminal when ssh -t gives one. Audited.";

pub const CRON_HELP: &str = "\
Scheduled jobs come from quarry.yml `cron:` (schedule, command, node, \
timeout, timezone, catchup) and run as one-offs of the live release, one at a \
time per job. Lists each job with its schedule, last run (time, exit code, \
duration) and next run. Example quarry.yml:\n  cron:\n    nightly: { schedule: \"0 3 * * *\", command: ./report, node: worker }";

/// The words before `--`, and those after (if there is a `--`).
fn split_dashes(words: &[String]) -> (&[String], Option<&[String]>) {
    match words.iter().position(|w| w == "--") {
        Some(i) => (&words[..i], Some(&words[i + 1..])),
        None => (words, None),
    }
}

/// `CMD ARGS…` as typed after `--`: one word with spaces runs in a shell
/// (`run app -- 'rake db:migrate && echo ok'`), several run as they are.
pub fn command_from_words(words: &[String]) -> Option<Command> {
    match words {
        [] => None,
        [one] if one.contains(char::is_whitespace) => Some(Command::Shell(one.clone())),
        _ => Some(Command::Exec(words.to_vec())),
    }
}

pub(super) fn run(command: &'static str, words: &[String]) -> Result<Cmd, ParseError> {
    let (before, after) = split_dashes(words);
    let a = Args::split(
        command,
        before,
        &["--detach", "-d"],
        &["--node", "--env", "-e", "--timeout"],
    )?;
    let p = a.at_least(1)?;
    let app = app(p[0])?;
    // Without `--` the words after APP are the command (none of them an option).
    let argv: Vec<String> = match after {
        Some(after) => {
            if p.len() > 1 {
                return Err(a.usage_error(&format!("unexpected argument {:?} before --", p[1])));
            }
            after.to_vec()
        }
        None => p[1..].iter().map(|w| w.to_string()).collect(),
    };
    let command =
        command_from_words(&argv).ok_or_else(|| a.usage_error("no command given after --"))?;
    if argv.iter().any(|w| w.contains('\0')) {
        return Err(a.usage_error("the command contains a NUL byte"));
    }
    let mut env = Vec::new();
    for (name, value) in &a.all {
        if *name != "--env" && *name != "-e" {
            continue;
        }
        let (k, v) = value
            .split_once('=')
            .ok_or_else(|| a.usage_error(&format!("--env takes KEY=VALUE, found {value:?}")))?;
        let k = env_key(k)?;
        validate::env_value(&k, v).map_err(|e| ParseError::usage(format!("{k}: {e}")))?;
        env.push((k.into_string(), v.to_string()));
    }
    let timeout = match a.options.get("--timeout") {
        None => None,
        Some(t) => Some(
            t.parse::<u64>()
                .ok()
                .filter(|t| (1..=MAX_TIMEOUT_SECS).contains(t))
                .ok_or_else(|| {
                    a.usage_error(&format!(
                        "--timeout takes seconds from 1 to {MAX_TIMEOUT_SECS}, found {t:?}"
                    ))
                })?,
        ),
    };
    Ok(Cmd::Run(RunArgs {
        app,
        node: a.options.get("--node").map(|n| node(n)).transpose()?,
        env,
        detach: a.flag("--detach") || a.flag("-d"),
        timeout,
        command,
    }))
}

pub(super) fn enter(command: &'static str, words: &[String]) -> Result<Cmd, ParseError> {
    let (before, after) = split_dashes(words);
    let a = Args::split(command, before, &[], &[])?;
    let p = a.exactly(2)?;
    let (n, index) = p[1]
        .rsplit_once('.')
        .and_then(|(n, i)| Some((n, i.parse::<u32>().ok().filter(|i| *i >= 1)?)))
        .ok_or_else(|| {
            a.usage_error(&format!(
                "expected a container such as web.1, found {:?}",
                p[1]
            ))
        })?;
    let command = match after {
        None => None,
        Some(words) => Some(
            command_from_words(words).ok_or_else(|| a.usage_error("no command given after --"))?,
        ),
    };
    Ok(Cmd::Enter {
        app: app(p[0])?,
        node: node(n)?,
        index,
        command,
    })
}

pub(super) fn cron_run(command: &'static str, words: &[String]) -> Result<Cmd, ParseError> {
    let a = Args::split(command, words, &[], &[])?;
    let p = a.exactly(2)?;
    validate::process_name("job name", p[1]).map_err(|e| ParseError::usage(e.to_string()))?;
    Ok(Cmd::CronRun {
        app: app(p[0])?,
        job: p[1].to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cmd, err};
    use super::*;

    #[test]
    fn run_takes_options_before_the_dashes_and_the_command_after() {
        let Cmd::Run(r) = cmd(
            "run shop --node worker -e A=1 --env B=x=y --timeout 60 -- python manage.py --help",
        ) else {
            panic!()
        };
        assert_eq!(r.app, "shop");
        assert_eq!(r.node.as_deref(), Some("worker"));
        assert_eq!(
            r.env,
            [("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        assert_eq!(r.timeout, Some(60));
        assert!(!r.detach);
        assert_eq!(
            r.command,
            Command::Exec(vec!["python".into(), "manage.py".into(), "--help".into()])
        );
        let Cmd::Run(r) = cmd("run shop -d 'rake db:migrate && echo ok'") else {
            panic!()
        };
        assert!(r.detach);
        assert_eq!(
            r.command,
            Command::Shell("rake db:migrate && echo ok".into())
        );
    }

    #[test]
    fn run_and_enter_refuse_what_they_cannot_run() {
        assert_eq!(
            err("run shop --"),
            "run: no command given after --; usage: run APP [--node NODE] [--env K=V]… [--detach] [--timeout SECONDS] -- CMD [ARGS…]"
        );
        assert!(err("run shop --timeout 0 -- true").contains("--timeout takes seconds from 1"));
        assert!(err("run shop --env NOPE -- true").contains("--env takes KEY=VALUE"));
        assert!(err("enter shop web -- sh").contains("expected a container such as web.1"));
        assert!(err("enter shop web.0").contains("expected a container such as web.1"));
    }

    #[test]
    fn enter_names_a_container_and_an_optional_command() {
        assert_eq!(
            cmd("enter shop web.2"),
            Cmd::Enter {
                app: "shop".into(),
                node: "web".into(),
                index: 2,
                command: None
            }
        );
        assert_eq!(
            cmd("enter shop web.1 -- ls -l /"),
            Cmd::Enter {
                app: "shop".into(),
                node: "web".into(),
                index: 1,
                command: Some(Command::Exec(vec!["ls".into(), "-l".into(), "/".into()]))
            }
        );
    }
}
