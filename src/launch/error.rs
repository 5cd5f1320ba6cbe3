//! How talking to an engine about containers and volumes fails: one variant
//! per operation, naming the container, volume or name it was about, with
//! the engine's own words. The messages are the ones users and tests see.
//! Touches nothing.

/// A failed engine operation of [`super`].
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot create container {container}: {message}")]
    Create { container: String, message: String },
    #[error("cannot start container {container}: {message}")]
    Start { container: String, message: String },
    #[error("cannot remove container {container}: {message}")]
    Remove { container: String, message: String },
    #[error("cannot rename container to {name}: {message}")]
    Rename { name: String, message: String },
    /// The engine's answer about one container, in its own words.
    #[error("{message}")]
    Inspect { container: String, message: String },
    #[error("cannot list containers: {message}")]
    List { message: String },
    #[error("cannot join container {container} to its app's network: {message}")]
    Attach { container: String, message: String },
    #[error("{}", super::foreign_name(.name))]
    ForeignName { name: String },
    #[error("did not finish within {secs}s; last output: {}", .logs.join(" | "))]
    NotFinished { secs: u64, logs: Vec<String> },
    #[error(
        "volume {name} exists but is not app {app}'s service {service} (its labels say app {have_app:?}, service {have_service:?}); refusing to mount it"
    )]
    ForeignVolume {
        name: String,
        app: String,
        service: String,
        have_app: String,
        have_service: String,
    },
    #[error("cannot create volume {name}: {message}")]
    CreateVolume { name: String, message: String },
    /// Listing volumes, in the engine's own words.
    #[error("{message}")]
    Volumes { message: String },
    #[error("cannot remove volume {name}: {message}")]
    RemoveVolume { name: String, message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_they_were_about() {
        let e = LaunchError::Remove {
            container: "a.web.1".into(),
            message: "engine gone".into(),
        };
        assert_eq!(
            e.to_string(),
            "cannot remove container a.web.1: engine gone"
        );
        let e = LaunchError::NotFinished {
            secs: 600,
            logs: vec!["one".into(), "two".into()],
        };
        assert_eq!(
            e.to_string(),
            "did not finish within 600s; last output: one | two"
        );
        let e = LaunchError::ForeignName {
            name: "a.web.1".into(),
        };
        assert_eq!(e.to_string(), super::super::foreign_name("a.web.1"));
        let e = LaunchError::ForeignVolume {
            name: "quarry.a.db.1".into(),
            app: "a".into(),
            service: "db".into(),
            have_app: "b".into(),
            have_service: "db".into(),
        };
        assert_eq!(
            e.to_string(),
            "volume quarry.a.db.1 exists but is not app a's service db (its labels say app \"b\", service \"db\"); refusing to mount it"
        );
    }
}
