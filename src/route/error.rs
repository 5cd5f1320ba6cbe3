//! Why the router could not change what nginx serves: one variant per step
//! (a file under `<data>/nginx/`, `nginx -t`, the reload, the route table),
//! each naming the file, the app or the nginx binary involved.

use std::path::PathBuf;
use std::time::Duration;

use super::dynamic::TableError;

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// A directory under `<data>/nginx/` could not be made or set up.
    #[error("{}: {source}", path.display())]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A store write, whose error already names its file.
    #[error(transparent)]
    Store(std::io::Error),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run nginx -t ({}): {source}", nginx.display())]
    RunTest {
        nginx: PathBuf,
        source: std::io::Error,
    },
    #[error("nginx rejected the config: {0}")]
    Rejected(String),
    #[error("cannot start nginx ({}): {source}", nginx.display())]
    Start {
        nginx: PathBuf,
        source: std::io::Error,
    },
    #[error("nginx is not running")]
    NotRunning,
    #[error("cannot signal nginx: {0}")]
    Signal(std::io::Error),
    #[error("nginx did not take the new config within {}s {last}", limit.as_secs())]
    NotTaken { limit: Duration, last: String },
    #[error("old nginx workers did not stop accepting within {}s", .0.as_secs())]
    OldWorkers(Duration),
    #[error("nginx exited ({status}): {stderr}")]
    Exited { status: String, stderr: String },
    #[error("quarry serve runs without an HTTPS listener (--https)")]
    NoHttps,
    #[error("the ACME server sent a token that is not base64url: {0:?}")]
    BadToken(String),
    #[error(transparent)]
    Table(#[from] TableError),
}

impl RouteError {
    pub(super) fn write(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> RouteError {
        let path = path.into();
        move |source| RouteError::Write { path, source }
    }

    pub(super) fn dir(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> RouteError {
        let path = path.into();
        move |source| RouteError::Dir { path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_file_or_the_step() {
        let e = RouteError::write("/d/nginx/sites/shop.conf")(std::io::Error::from(
            std::io::ErrorKind::StorageFull,
        ));
        assert_eq!(
            e.to_string(),
            "cannot write /d/nginx/sites/shop.conf: no storage space"
        );
        let e = RouteError::NotTaken {
            limit: Duration::from_secs(15),
            last: "[emerg] bad".into(),
        };
        assert_eq!(
            e.to_string(),
            "nginx did not take the new config within 15s [emerg] bad"
        );
        assert_eq!(
            RouteError::OldWorkers(Duration::from_secs(15)).to_string(),
            "old nginx workers did not stop accepting within 15s"
        );
        assert_eq!(
            RouteError::Table(TableError::Mismatch { app: "shop".into() }).to_string(),
            "nginx holds other routes for shop than were written"
        );
    }
}
