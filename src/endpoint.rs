//! How a server's Docker engine is reached: the `servers:add` request, the
//! TLS files of a `tcp://` engine, and the rule that a plain `tcp://` engine
//! needs `--insecure`. Pure; shared by the parser, the fleet and providers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The name of the server Quarry itself runs on (its own engine).
pub const LOCAL: &str = "local";

/// `servers:add` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewServer {
    pub name: String,
    /// `unix:///path.sock` or `tcp://host:port`.
    pub docker: String,
    pub address: std::net::IpAddr,
    /// MiB for the grid.
    pub memory: u64,
    pub labels: BTreeMap<String, String>,
    /// PEM files for a `tcp://` engine with TLS.
    pub tls: Option<TlsFiles>,
    /// A plain `tcp://` engine without TLS, on purpose (`--insecure`).
    pub insecure: bool,
    /// Reached over SSH (`--ssh`); `docker` is then set when it is added.
    pub ssh: Option<Box<SshTarget>>,
    /// Provisioners to run once it joined (`--provision`, in order).
    pub provision: Vec<String>,
}

/// Where a server's sshd is, and the host key it must show
/// (`servers/<name>/settings.json` → `ssh`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SshTarget {
    pub user: String,
    pub host: String,
    pub port: u16,
    /// OpenSSH text (`ssh-ed25519 AAAA…`): given with `--host-key`, or
    /// pinned on first contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
}

impl SshTarget {
    /// `user@host:port`.
    pub fn display(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

/// PEM files for a Docker engine behind TLS (`--tlsverify`): the CA that
/// signed the engine's certificate, and the client's certificate and key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Why an engine's endpoint was refused, naming the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error(
        "{endpoint} has no TLS: anyone who reaches it controls that Docker engine; give --tls-ca, --tls-cert and --tls-key (dockerd --tlsverify), or --insecure for an engine on a trusted private network"
    )]
    NoTls { endpoint: String },
    #[error("--insecure is for a tcp:// engine without TLS, and {endpoint} has TLS files")]
    InsecureWithTls { endpoint: String },
    #[error("--insecure is for a tcp:// engine without TLS, not {endpoint}")]
    InsecureNotTcp { endpoint: String },
}

impl From<TransportError> for String {
    fn from(e: TransportError) -> String {
        e.to_string()
    }
}

/// Why a new server's endpoint may not be used as given: a plain `tcp://`
/// engine hands root on that machine to anyone who can reach the port, so
/// it takes TLS files, or an explicit `insecure` for a trusted network.
pub fn check_transport(endpoint: &str, tls: bool, insecure: bool) -> Result<(), TransportError> {
    let tcp = endpoint.starts_with("tcp://");
    let endpoint = endpoint.to_owned();
    match (tcp, tls, insecure) {
        (true, false, false) => Err(TransportError::NoTls { endpoint }),
        (true, true, true) => Err(TransportError::InsecureWithTls { endpoint }),
        (false, _, true) => Err(TransportError::InsecureNotTcp { endpoint }),
        (true, false, true) | (true, true, false) | (false, _, false) => Ok(()),
    }
}
