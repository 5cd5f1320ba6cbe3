//! One exec request, on its own task: the key as it is now (a key removed
//! since login is refused and its sessions closed), the command line checked
//! and parsed (never through a shell), then a git service or a control
//! command, and the exit status.
//!
//! It may touch: the daemon's store (keys) and sessions, and what the git
//! bridge (`git`) and the command layer touch.

use std::sync::Arc;

use tracing::{info, warn};

use super::git::git_service;
use super::{Closed, Input, Output, Terminal, redact};
use crate::command::{self, Request};
use crate::daemon::Daemon;
use crate::store::KeyRecord;
use crate::validate;

/// Why an exec's bytes are no command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum LineError {
    #[error("command line is longer than {} bytes", validate::MAX_COMMAND_LEN)]
    TooLong,
    #[error("command line is not UTF-8")]
    NotUtf8,
}

/// The command line of an exec request, bounded and UTF-8.
pub(super) fn line(data: &[u8]) -> Result<String, LineError> {
    if data.len() > validate::MAX_COMMAND_LEN {
        return Err(LineError::TooLong);
    }
    String::from_utf8(data.to_vec()).map_err(|_| LineError::NotUtf8)
}

/// What an exec request runs with, taken from its connection and channel.
pub(super) struct Exec {
    pub daemon: Arc<Daemon>,
    /// The key the connection logged in with.
    pub authenticated: KeyRecord,
    /// The same key as the db has it now.
    pub current: std::io::Result<Option<KeyRecord>>,
    pub git_protocol: Option<String>,
    pub stdin: Input,
    pub out: Output,
    pub closed: Closed,
    pub terminal: Option<Terminal>,
}

impl Exec {
    pub async fn run(self, line: Result<String, LineError>) {
        let Exec {
            daemon,
            authenticated,
            current,
            git_protocol,
            stdin,
            out,
            closed,
            terminal,
        } = self;
        let key = match current {
            Ok(Some(k)) => k,
            Ok(None) => {
                warn!(key = %authenticated.name, "exec refused: the key was removed");
                out.err(format!("quarry: key {} was removed\n", authenticated.name))
                    .await;
                out.finish(command::EXIT_DENIED).await;
                daemon.sessions.close_removed(&daemon.store).await;
                return;
            }
            Err(e) => {
                out.err(format!(
                    "quarry: cannot read key {}: {e}\n",
                    authenticated.name
                ))
                .await;
                out.finish(command::EXIT_FAILURE).await;
                return;
            }
        };
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                out.err(format!("quarry: {e}\n")).await;
                out.finish(command::EXIT_USAGE).await;
                return;
            }
        };
        info!(key = %key.name, command = %redact::loggable(&line), "exec");
        match command::parse_line(&line) {
            Ok(Request::Git { service, app }) => {
                let code =
                    git_service(&daemon, &key, service, &app, git_protocol, stdin, &out).await;
                out.finish(code).await;
            }
            Ok(Request::Command(cmd)) => {
                let code =
                    crate::commands::run(&daemon, &key, cmd, stdin, out.clone(), closed, terminal)
                        .await;
                out.finish(code).await;
            }
            Err(e) => {
                out.err(format!("quarry: {e}\n")).await;
                out.finish(e.code()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_bounded_and_utf8() {
        assert_eq!(line(b"apps").unwrap(), "apps");
        assert_eq!(line(b"apps \xff"), Err(LineError::NotUtf8));
        let long = vec![b'a'; validate::MAX_COMMAND_LEN + 1];
        assert_eq!(line(&long), Err(LineError::TooLong));
        assert_eq!(
            LineError::TooLong.to_string(),
            format!(
                "command line is longer than {} bytes",
                validate::MAX_COMMAND_LEN
            )
        );
        assert_eq!(LineError::NotUtf8.to_string(), "command line is not UTF-8");
    }
}
