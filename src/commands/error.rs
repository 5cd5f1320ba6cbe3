//! How a control command fails: one variant per kind of failure, and the
//! kind decides the exit code the client sees (see `command::EXIT_*`).
//! The message is the line printed after `quarry: `, word for word.
//! Touches nothing: handlers build these, [`super::run`] prints them.

use crate::command::{EXIT_CONFLICT, EXIT_DENIED, EXIT_FAILURE, EXIT_NOT_FOUND, EXIT_USAGE};

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub(super) enum CommandError {
    /// Anything that went wrong while doing the work.
    #[error("{0}")]
    Failed(String),
    /// Arguments or input the command cannot take.
    #[error("{0}")]
    Usage(String),
    /// An app, release, server, key, job … that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The key may not do this.
    #[error("{0}")]
    Denied(String),
    /// The state forbids it now (exists already, in use, busy).
    #[error("{0}")]
    Conflict(String),
    /// A one-off that stopped on its own terms with this status: it has
    /// said what it had to, so Quarry prints nothing when `message` is empty.
    #[error("{message}")]
    Exited { message: String, code: u32 },
}

impl CommandError {
    /// The exit status of the SSH command.
    pub(super) fn exit_code(&self) -> u32 {
        match self {
            CommandError::Failed(_) => EXIT_FAILURE,
            CommandError::Usage(_) => EXIT_USAGE,
            CommandError::NotFound(_) => EXIT_NOT_FOUND,
            CommandError::Denied(_) => EXIT_DENIED,
            CommandError::Conflict(_) => EXIT_CONFLICT,
            CommandError::Exited { code, .. } => *code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_decides_the_exit_code_and_the_message_stays() {
        let cases = [
            (CommandError::Failed("boom".into()), 1),
            (CommandError::Usage("boom".into()), 2),
            (CommandError::NotFound("boom".into()), 3),
            (CommandError::Denied("boom".into()), 4),
            (CommandError::Conflict("boom".into()), 5),
        ];
        for (e, code) in cases {
            assert_eq!(e.exit_code(), code, "{e:?}");
            assert_eq!(e.to_string(), "boom");
        }
        let exited = CommandError::Exited {
            message: String::new(),
            code: 7,
        };
        assert_eq!((exited.exit_code(), exited.to_string()), (7, String::new()));
    }
}
