//! Why an image build failed: the engine's error explained for the pusher
//! (a missing base image says what to do), a timeout, or a build that left
//! no image. Pure: only the messages.

/// Why [`super::build_dockerfile`] made no image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("build of {app} failed: build timed out after {secs}s")]
    TimedOut { app: String, secs: u64 },
    #[error(
        "build of {app} failed: a base image in the Dockerfile is not on this engine and no registry could provide it ({message}); build or load it locally (docker build / docker load) and push again"
    )]
    BaseImageMissing { app: String, message: String },
    #[error("build of {app} failed: {message}")]
    Failed { app: String, message: String },
    #[error("the build of {tag} finished but produced no image")]
    NoImage { tag: String },
}

impl BuildError {
    /// The engine's terse error for `app`, saying what to do where it can.
    pub fn explain(app: &str, message: &str) -> BuildError {
        let m = message.trim();
        let (app, message) = (app.to_string(), m.to_string());
        if m.contains("pull access denied")
            || m.contains("failed to resolve")
            || m.contains("no such host")
            || m.contains("connection refused") && m.contains("registry")
            || m.contains("manifest unknown")
            || m.contains("i/o timeout") && m.contains("registry")
        {
            BuildError::BaseImageMissing { app, message }
        } else {
            BuildError::Failed { app, message }
        }
    }
}
