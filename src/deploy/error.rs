//! What can go wrong in the deploy pipeline, one variant per cause with the
//! app, node, group or server it concerns; the lower modules' typed errors
//! are carried as they are. The text is what the pusher reads (tests grep
//! it), so each message keeps the wording the pipeline has always printed.
//! Touches nothing.

use crate::build::images::ImageError;
use crate::cloud::ProviderError;
use crate::config::ConfigError;
use crate::confined::ConfinedError;
use crate::daemon::LockError;
use crate::domains::{ClaimsError, DomainError};
use crate::fleet::FleetError;
use crate::grid::GridError;
use crate::launch::LaunchError;
use crate::network::NetworkError;
use crate::provision::ProvisionError;
use crate::receive::ArchiveError;
use crate::route::RouteError;
use crate::stack::StackError;

use super::StateError;

/// A failed deploy step (push, apply, reroute, grow, shrink).
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(
        "{refname} of {app} moved while this push waited (another push went live first); fetch, merge and push again"
    )]
    Moved { refname: String, app: String },
    #[error("quarry.yml: {0}")]
    Domains(#[source] DomainError),
    #[error("cannot unpack the pushed tree: {0}")]
    Unpack(#[source] std::io::Error),
    #[error("the release command of {app} exited with code {code}")]
    ReleaseCommand { app: String, code: i64 },
    #[error("{app}.{label} did not start: {reason}")]
    NotReady {
        app: String,
        label: String,
        reason: String,
    },
    #[error("cannot place {group}: {source}")]
    Place { group: String, source: GridError },
    #[error("cannot place {group}: {nofit}; {source}")]
    Grow {
        group: String,
        nofit: String,
        source: Box<DeployError>,
    },
    #[error("the grid placed nothing")]
    PlacedNothing,
    #[error("server {0} vanished")]
    Vanished(String),
    #[error("on server {server}: {message}")]
    NameTaken { server: String, message: String },
    #[error("routing {app} refused: {source}")]
    RoutingRefused { app: String, source: DomainError },
    #[error("routing {app} failed: {source}")]
    RoutingFailed { app: String, source: RouteError },
    #[error("service build directory {dir}: {source}")]
    ServiceContext {
        dir: String,
        source: Box<DeployError>,
    },
    #[error("the grid asked for no new server")]
    NoCreateEvent,
    #[error("config.yml: provider.provision: {0}")]
    ProvisionScript(#[source] ProvisionError),
    #[error("provider {kind}: {source}")]
    Size { kind: String, source: ProviderError },
    #[error("{source}; machine {machine} was given back")]
    NewServer {
        machine: String,
        source: ProviderError,
    },
    /// Provisioning failed; the text names the machine given back.
    #[error("{0}")]
    Provision(String),
    #[error("{app} has no live release yet: push it first")]
    NoLive { app: String },
    #[error("draining {server}: {source}; the server stays draining, run servers:drain again")]
    Drain {
        server: String,
        source: Box<DeployError>,
    },
    #[error(transparent)]
    Rollback(#[from] super::releases::RollbackError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A name read back from the db that is not one (never, for a name
    /// checked at the edge).
    #[error(transparent)]
    Name(#[from] crate::validate::Invalid),
    #[error("server {0} left the fleet while provisioned")]
    LeftFleet(String),
    #[error("provider {kind} added machine {machine} but Quarry cannot use it: {source}")]
    Unusable {
        kind: String,
        machine: String,
        source: Box<DeployError>,
    },
    /// A service's Dockerfile build.
    #[error(transparent)]
    Build(#[from] crate::build::BuildError),
    /// The build stage: Dockerfile or buildpack, here or on another server.
    #[error(transparent)]
    Buildpack(#[from] crate::buildpack::BuildpackError),
    /// app.json's first-deploy steps.
    #[error(transparent)]
    FirstDeploy(#[from] crate::appjson::first::FirstDeployError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// quarry.yml or the stack (StackError is text, not a std error).
    #[error("{0}")]
    Stack(StackError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Claims(#[from] ClaimsError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error(transparent)]
    Grid(#[from] GridError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Confined(#[from] ConfinedError),
    #[error(transparent)]
    Store(#[from] std::io::Error),
    #[error(transparent)]
    Join(#[from] tokio::task::JoinError),
}

impl From<StackError> for DeployError {
    fn from(e: StackError) -> DeployError {
        DeployError::Stack(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_the_pushers_wording() {
        let moved = DeployError::Moved {
            refname: "refs/heads/main".into(),
            app: "shop".into(),
        };
        assert_eq!(
            moved.to_string(),
            "refs/heads/main of shop moved while this push waited (another push went live first); fetch, merge and push again"
        );
        let code = DeployError::ReleaseCommand {
            app: "shop".into(),
            code: 3,
        };
        assert_eq!(
            code.to_string(),
            "the release command of shop exited with code 3"
        );
        let grow = DeployError::Grow {
            group: "shop.web".into(),
            nofit: "no server fits 512 MiB".into(),
            source: Box::new(DeployError::NoCreateEvent),
        };
        assert_eq!(
            grow.to_string(),
            "cannot place shop.web: no server fits 512 MiB; the grid asked for no new server"
        );
        let unusable = DeployError::Unusable {
            kind: "exec".into(),
            machine: "m-1".into(),
            source: Box::new(DeployError::LeftFleet("q2".into())),
        };
        assert_eq!(
            unusable.to_string(),
            "provider exec added machine m-1 but Quarry cannot use it: server q2 left the fleet while provisioned"
        );
        assert_eq!(
            DeployError::PlacedNothing.to_string(),
            "the grid placed nothing"
        );
    }
}
