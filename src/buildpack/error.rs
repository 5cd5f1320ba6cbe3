//! Why a buildpack build failed: the buildpack asked for, fetching it, its
//! scripts' outcome, and the build's own steps, each naming the buildpack,
//! app, path or image concerned. Pure: only the messages.

use std::io;

use super::builtin_names;

/// Why a buildpack could not be chosen, fetched or run, or its app image made.
#[derive(Debug, thiserror::Error)]
pub enum BuildpackError {
    /// `build.buildpack` / `BUILDPACK_URL` names nothing usable.
    #[error(
        "buildpack {value:?}: {why}; use a built-in name ({}), a path in the repository, an absolute path on the server, or a git URL (https://, http://, git://, file://, with an optional #ref)",
        builtin_names().join(", ")
    )]
    BadSource { value: String, why: String },
    #[error(
        "no buildpack detected this app (tried {}): add a Dockerfile, a requirements.txt, package.json, index.html or Procfile, or set build.buildpack",
        builtin_names().join(", ")
    )]
    NotDetected,
    /// The buildpack asked for exists but may not or cannot be used.
    #[error("buildpack {buildpack}: {why}")]
    Unusable { buildpack: String, why: String },
    #[error("cannot copy the buildpack {buildpack}: {source}")]
    Copy {
        buildpack: String,
        source: io::Error,
    },
    #[error("cannot fetch the buildpack {url}: {why}")]
    Fetch { url: String, why: String },
    #[error("the buildpack {url} has no bin/compile: not a buildpack")]
    NotABuildpack { url: String },
    #[error("the {buildpack} buildpack's bin/release printed invalid YAML: {detail}")]
    ReleaseYaml { buildpack: String, detail: String },
    #[error("the {buildpack} buildpack's bin/release: {why}")]
    Release { buildpack: String, why: String },
    #[error(
        "the {buildpack} buildpack gives no default process type and the app has no Procfile: add a Procfile with a line such as `web: COMMAND`"
    )]
    NoProcessType { buildpack: String },
    #[error("the {buildpack} buildpack does not apply to this app (its bin/detect said no)")]
    NotApplicable { buildpack: String },
    #[error("the {buildpack} buildpack's bin/{script} failed with exit code {code}")]
    ScriptFailed {
        buildpack: String,
        script: &'static str,
        code: i64,
    },
    #[error("build of {app} failed: build timed out after {secs}s")]
    TimedOut { app: String, secs: u64 },
    #[error("cannot {what} the build container {container}: {reason}")]
    Container {
        what: &'static str,
        container: String,
        reason: String,
    },
    #[error("the stack image {stack} is not on the engine")]
    NoStack { stack: String },
    /// A file or directory of the build (`what` names it and the step).
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    /// A file the build container wrote, read or handed over confined.
    #[error("{what}: {source}")]
    Confined {
        what: String,
        source: crate::confined::ConfinedError,
    },
    #[error(transparent)]
    Build(#[from] crate::build::BuildError),
    #[error(transparent)]
    Dockerfile(#[from] crate::build::images::ImageError),
    #[error(transparent)]
    StackImage(#[from] crate::stackimage::StackImageError),
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error("{0}")]
    Stack(crate::stack::StackError),
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
    #[error(transparent)]
    Launch(#[from] crate::launch::LaunchError),
    /// Another app's or instance's container holds the build container's name.
    #[error("{0}")]
    Foreign(String),
    #[error("a build step stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl BuildpackError {
    /// An io error of the step `what` (such as "cannot write the env dir").
    pub(super) fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> BuildpackError {
        let what = what.into();
        move |source| BuildpackError::Io { what, source }
    }
}

impl From<crate::stack::StackError> for BuildpackError {
    fn from(e: crate::stack::StackError) -> BuildpackError {
        BuildpackError::Stack(e)
    }
}
