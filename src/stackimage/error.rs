//! Why a stack image could not be checked, built or listed: each variant
//! names the stack, the base image or the lock file involved.

use std::time::Duration;

use super::PREFIX;

/// Why a stack image could not be checked, built or listed.
#[derive(Debug, thiserror::Error)]
pub enum StackImageError {
    #[error(
        "invalid stack name {0:?}: use {PREFIX}NAME[:TAG] with lower-case letters, digits, '.', '_' and '-'"
    )]
    Name(String),
    #[error("invalid base image {0:?}")]
    Base(String),
    #[error("the base image {0} is not on this Docker engine (docker load or build it first)")]
    NoBase(String),
    /// The machine-wide build lock (a file in the temp dir).
    #[error("{}: {source}", path.display())]
    Lock {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run bash for the stack build: {0}")]
    Bash(std::io::Error),
    #[error("the stack build of {name} did not finish within {} min", limit.as_secs() / 60)]
    Deadline { name: String, limit: Duration },
    #[error("the stack build of {name}: {source}")]
    Wait {
        name: String,
        source: std::io::Error,
    },
    #[error(
        "the stack image {name} could not be built (debootstrap from Debian's mirror, {status}): {last}"
    )]
    Failed {
        name: String,
        status: String,
        last: String,
    },
    /// The build context of a `FROM` stack (an in-memory tar).
    #[error("the build context of {name}: {source}")]
    Context {
        name: String,
        source: std::io::Error,
    },
    /// The Dockerfile build of a `FROM` stack.
    #[error(transparent)]
    Build(Box<crate::build::BuildError>),
    #[error("cannot list images: {0}")]
    List(String),
}
