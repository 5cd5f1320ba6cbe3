//! The fleet: the servers Quarry places containers on, each a Docker engine
//! reached over its API (a local socket or TCP), with an address its
//! published ports live on and a size in MiB for the grid.
//!
//! The server `quarry serve` runs beside is `local` and always present. Other
//! servers are added with `servers:add` and kept in `servers/<name>/
//! settings.json`. This module holds the engine connections and moves images
//! between engines (save on the HQ, load on the server: no registry needed).
//! Layout: this file the records (pure); `engine` connects to one engine;
//! `registry` the [`Fleet`] in memory and on disk; `join` a server joining;
//! `images` image shipping; `provision` running provisioners; `error` [`FleetError`].
//! May touch: the `servers/` dir, Docker engines, the SSH servers' sessions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::endpoint::{LOCAL, NewServer, TlsFiles, check_transport};

mod engine;
mod error;
mod images;
mod join;
mod provision;
mod registry;
pub use engine::{connect, facts};
pub use error::FleetError;
pub use images::ensure_image;
pub use join::{check_new, register};
pub use provision::{Applied, ApplyError, provision, provision_reporting};
pub use registry::Fleet;

/// A server's state, from the seed design's machine states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerState {
    /// Answers; takes new containers.
    Running,
    /// Answers; its containers are being moved away, it takes no new ones.
    Draining,
    /// Did not answer the last pings: its containers count as gone.
    Unknown,
    /// Being given back to its provider: takes no new containers.
    Terminating,
}

impl ServerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Running => "running",
            ServerState::Draining => "draining",
            ServerState::Unknown => "unknown",
            ServerState::Terminating => "terminating",
        }
    }

    /// The legal transitions. A server is registered `Running` (after its
    /// engine answered) and forgotten when removed; in between:
    /// - `Running → Draining` (servers:drain), `→ Unknown` (missed pings),
    ///   `→ Terminating` (its provider takes it back);
    /// - `Draining → Unknown`, `→ Terminating`;
    /// - `Unknown → Running` (it answers again; stale containers removed),
    ///   `→ Terminating`;
    /// - `Terminating → Running` (the provider refused), `→ Unknown`.
    pub fn can_become(self, to: ServerState) -> bool {
        use ServerState::*;
        matches!(
            (self, to),
            (Running, Draining | Unknown | Terminating)
                | (Draining, Unknown | Terminating)
                | (Unknown, Running | Terminating)
                | (Terminating, Running | Unknown)
        ) || self == to
    }
}

/// What Quarry learned from the engine when the server was added.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Facts {
    pub engine: Option<String>,
    pub os: Option<String>,
    pub cpus: Option<i64>,
    pub memory_mib: Option<u64>,
}

/// `servers/<name>/settings.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    /// `unix:///path.sock` or `tcp://host:port`.
    pub docker: String,
    /// The address containers publish their ports on; nginx proxies to it.
    pub address: String,
    /// Size on the grid (MiB).
    pub memory: u64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub state: ServerState,
    #[serde(default)]
    pub facts: Facts,
    pub added: String,
    /// The provider that made it (only such servers are removed by one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Client certificates for a `tcp://` engine with TLS (copies under
    /// `servers/<name>/tls/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// A plain `tcp://` engine accepted with `--insecure` (or a provider's
    /// `insecure: true`). Servers recorded before the flag existed read as
    /// false and keep working: only new ones are checked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// Reached over SSH (`--ssh`): `docker` is then the bridge's socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<crate::remote::SshTarget>,
    /// The provisioners run on it: the sha1 and outcome of each one's last run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub provisioned: BTreeMap<String, crate::provision::Ran>,
}

/// Which provider made a server, and its id there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Origin {
    pub provider: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::ServerState::{self, *};
    use super::check_transport;

    #[test]
    fn a_plain_tcp_engine_needs_tls_or_insecure() {
        assert_eq!(
            check_transport("tcp://10.0.0.5:2375", false, false)
                .unwrap_err()
                .to_string(),
            "tcp://10.0.0.5:2375 has no TLS: anyone who reaches it controls that Docker engine; give --tls-ca, --tls-cert and --tls-key (dockerd --tlsverify), or --insecure for an engine on a trusted private network"
        );
        assert_eq!(check_transport("tcp://10.0.0.5:2375", false, true), Ok(()));
        assert_eq!(check_transport("tcp://10.0.0.5:2376", true, false), Ok(()));
        assert_eq!(
            check_transport("unix:///run/docker.sock", false, false),
            Ok(())
        );
        assert_eq!(
            check_transport("unix:///run/docker.sock", false, true)
                .unwrap_err()
                .to_string(),
            "--insecure is for a tcp:// engine without TLS, not unix:///run/docker.sock"
        );
        assert_eq!(
            check_transport("tcp://10.0.0.5:2376", true, true)
                .unwrap_err()
                .to_string(),
            "--insecure is for a tcp:// engine without TLS, and tcp://10.0.0.5:2376 has TLS files"
        );
    }

    #[test]
    fn only_the_named_transitions_are_legal() {
        let all = [Running, Draining, Unknown, Terminating];
        let legal: Vec<(ServerState, ServerState)> = all
            .iter()
            .flat_map(|a| all.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a != b && a.can_become(*b))
            .collect();
        assert_eq!(
            legal,
            vec![
                (Running, Draining),
                (Running, Unknown),
                (Running, Terminating),
                (Draining, Unknown),
                (Draining, Terminating),
                (Unknown, Running),
                (Unknown, Terminating),
                (Terminating, Running),
                (Terminating, Unknown),
            ]
        );
    }
}
