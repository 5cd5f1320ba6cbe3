//! Why the fleet could not do what was asked: one enum, each variant naming
//! the server, endpoint, image or file it is about. Pure.

use std::path::PathBuf;

use crate::remote::SshError;

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("TLS files are for tcp:// endpoints, not {endpoint}")]
    TlsNotTcp { endpoint: String },
    #[error("{what} {}: no such file", path.display())]
    NoFile { what: &'static str, path: PathBuf },
    #[error(
        "unsupported Docker endpoint {endpoint:?}: use unix:///path/docker.sock or tcp://host:port"
    )]
    Unsupported { endpoint: String },
    #[error("the Docker engine at {endpoint} does not answer: {reason}")]
    NoAnswer { endpoint: String, reason: String },
    #[error("cannot read the engine's facts: {reason}")]
    Facts { reason: String },
    #[error("no server named {0}")]
    NoServer(String),
    #[error("server {name} is {from}: it cannot become {to}")]
    Transition {
        name: String,
        from: &'static str,
        to: &'static str,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The servers do not make a grid (a duplicate name, say).
    #[error("{0}")]
    Grid(String),
    #[error("the local server cannot be removed")]
    Local,
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("a server named {0} exists already")]
    Exists(String),
    #[error("{endpoint} is server {server} already")]
    Taken { endpoint: String, server: String },
    /// The endpoint's transport is refused ([`crate::endpoint::check_transport`]).
    #[error(transparent)]
    Transport(#[from] crate::endpoint::TransportError),
    #[error("{what} {}: {source}", path.display())]
    ReadTls {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {}: not a PEM file", path.display())]
    NotPem { what: &'static str, path: PathBuf },
    #[error("cannot copy image {image}: {reason}")]
    ImageCopy { image: String, reason: String },
    #[error("image {image} did not arrive on the server")]
    ImageMissing { image: String },
}

/// An I/O error on `path`.
pub(super) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> FleetError + '_ {
    move |source| FleetError::Io {
        path: path.to_path_buf(),
        source,
    }
}
