//! The fleet: the servers Quarry places containers on, each a Docker engine
//! reached over its API (a local socket or TCP), with an address its
//! published ports live on and a size in MiB for the grid.
//!
//! The server `quarry serve` runs beside is `local` and always present. Other
//! servers are added with `servers:add` and kept in `servers/<name>/
//! settings.json`. This module holds the engine connections and moves images
//! between engines (save on the HQ, load on the server: no registry needed).
//! May touch: the `servers/` dir, Docker engines.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use bollard::Docker;
use serde::{Deserialize, Serialize};

pub use crate::endpoint::{LOCAL, NewServer, TlsFiles, check_transport};
use crate::launch::docker_message;

mod images;
use crate::remote::Link;
use crate::store::{Store, read_json, write_json};
pub use images::ensure_image;

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

/// Connect to an engine and negotiate the API version.
pub async fn connect(endpoint: &str, tls: Option<&TlsFiles>) -> Result<Docker, String> {
    let docker = if let Some(path) = endpoint.strip_prefix("unix://") {
        if tls.is_some() {
            return Err(format!(
                "TLS files are for tcp:// endpoints, not {endpoint}"
            ));
        }
        Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)
    } else if let (Some(t), true) = (tls, endpoint.starts_with("tcp://")) {
        for (what, path) in [
            ("--tls-ca", &t.ca),
            ("--tls-cert", &t.cert),
            ("--tls-key", &t.key),
        ] {
            if !path.is_file() {
                return Err(format!("{what} {}: no such file", path.display()));
            }
        }
        Docker::connect_with_ssl(
            endpoint,
            &t.key,
            &t.cert,
            &t.ca,
            120,
            bollard::API_DEFAULT_VERSION,
        )
    } else if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
        Docker::connect_with_http(endpoint, 120, bollard::API_DEFAULT_VERSION)
    } else {
        return Err(format!(
            "unsupported Docker endpoint {endpoint:?}: use unix:///path/docker.sock or tcp://host:port"
        ));
    };
    let docker =
        docker.map_err(|e| format!("the Docker engine at {endpoint} does not answer: {e}"))?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| format!("the Docker engine at {endpoint} does not answer: {e}"))
}

/// Engine version, CPUs, memory, OS.
pub async fn facts(docker: &Docker) -> Result<Facts, String> {
    let info = docker.info().await.map_err(|e| docker_message(&e))?;
    Ok(Facts {
        engine: info.server_version,
        os: info.operating_system,
        cpus: info.ncpu,
        memory_mib: info.mem_total.map(|b| b as u64 / (1024 * 1024)),
    })
}

/// The servers and their engine connections.
pub struct Fleet {
    servers: RwLock<BTreeMap<String, (Server, Docker)>>,
    /// The SSH sessions and Docker bridges of servers reached over SSH.
    links: std::sync::Mutex<BTreeMap<String, (Arc<Link>, crate::remote::bridge::Bridge)>>,
}

impl Fleet {
    /// The local server plus every server in `servers/`. A server whose engine
    /// does not answer is kept, marked unknown.
    pub async fn load(store: &Store, local: Server, local_docker: Docker) -> Fleet {
        let mut servers = BTreeMap::new();
        let mut links = BTreeMap::new();
        servers.insert(local.name.clone(), (local, local_docker));
        if let Ok(entries) = std::fs::read_dir(store.root().join("servers")) {
            for e in entries.flatten() {
                let path = e.path().join("settings.json");
                let Ok(Some(mut server)) = read_json::<Server>(&path) else {
                    continue;
                };
                if server.name == LOCAL {
                    continue;
                }
                if let Some(target) = &server.ssh {
                    match start_link(store, &server, target) {
                        Ok(l) => {
                            links.insert(server.name.clone(), l);
                        }
                        Err(e) => tracing::warn!(server = %server.name, "{e}"),
                    }
                }
                let docker = match connect(&server.docker, server.tls.as_ref()).await {
                    Ok(d) => d,
                    // An SSH server down at start: its bridge answers once the
                    // session is back, so keep a client on it (unnegotiated).
                    Err(e) if server.ssh.is_some() => {
                        tracing::warn!(server = %server.name, "{e}");
                        server.state = ServerState::Unknown;
                        let path = server.docker.trim_start_matches("unix://");
                        match Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION) {
                            Ok(d) => d,
                            Err(_) => continue,
                        }
                    }
                    Err(e) => {
                        tracing::warn!(server = %server.name, "{e}");
                        server.state = ServerState::Unknown;
                        // A client that fails on use; the state says why.
                        match Docker::connect_with_http(
                            "tcp://127.0.0.1:9",
                            5,
                            bollard::API_DEFAULT_VERSION,
                        ) {
                            Ok(d) => d,
                            Err(_) => continue,
                        }
                    }
                };
                servers.insert(server.name.clone(), (server, docker));
            }
        }
        Fleet {
            servers: RwLock::new(servers),
            links: std::sync::Mutex::new(links),
        }
    }

    pub fn list(&self) -> Vec<Server> {
        self.servers
            .read()
            .expect("fleet")
            .values()
            .map(|(s, _)| s.clone())
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<(Server, Docker)> {
        self.servers.read().expect("fleet").get(name).cloned()
    }

    /// Every server with its engine.
    pub fn all(&self) -> Vec<(Server, Docker)> {
        self.servers
            .read()
            .expect("fleet")
            .values()
            .cloned()
            .collect()
    }

    /// Every server not in state unknown, with its engine: those worth
    /// asking (listing containers, pruning images, removing volumes).
    pub fn answering(&self) -> Vec<(Server, Docker)> {
        self.all()
            .into_iter()
            .filter(|(s, _)| s.state != ServerState::Unknown)
            .collect()
    }

    /// Register a server (its settings are written first).
    pub fn insert(&self, store: &Store, server: Server, docker: Docker) -> Result<(), String> {
        if server.name != LOCAL {
            write_json(&settings_path(store, &server.name), &server, 0o644)
                .map_err(|e| e.to_string())?;
        }
        self.servers
            .write()
            .expect("fleet")
            .insert(server.name.clone(), (server, docker));
        Ok(())
    }

    pub fn set_state(&self, store: &Store, name: &str, state: ServerState) -> Result<(), String> {
        let mut servers = self.servers.write().expect("fleet");
        let Some((server, _)) = servers.get_mut(name) else {
            return Err(format!("no server named {name}"));
        };
        if !server.state.can_become(state) {
            return Err(format!(
                "server {name} is {}: it cannot become {}",
                server.state.as_str(),
                state.as_str()
            ));
        }
        server.state = state;
        if name != LOCAL {
            write_json(&settings_path(store, name), server, 0o644).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// An empty grid with one block per server, sized and labelled like it
    /// and in the matching state; callers record or place slices on it.
    pub fn grid(&self) -> Result<crate::grid::Grid, String> {
        use crate::grid::{Block, BlockState, Grid, Options};
        let mut grid = Grid::new(Options::default());
        for s in self.list() {
            let mut block = Block::new(s.name.clone(), s.memory.max(1));
            block.labels = s.labels.clone();
            // Only servers a provider made are the provider's to remove.
            block.pinned = s.origin.is_none();
            grid.add_block(block).map_err(|e| e.to_string())?;
            let state = match s.state {
                ServerState::Running => BlockState::Running,
                ServerState::Draining => BlockState::Draining,
                ServerState::Unknown => BlockState::Unknown,
                ServerState::Terminating => BlockState::Stopped,
            };
            grid.set_state(&s.name, state).map_err(|e| e.to_string())?;
        }
        Ok(grid)
    }

    pub fn remove(&self, store: &Store, name: &str) -> Result<(), String> {
        if name == LOCAL {
            return Err("the local server cannot be removed".into());
        }
        let dir = store.root().join("servers").join(name);
        std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        self.servers.write().expect("fleet").remove(name);
        let link = self.links.lock().expect("links").remove(name);
        if let Some((link, bridge)) = link {
            drop(bridge);
            tokio::spawn(async move { link.close().await });
        }
        Ok(())
    }

    /// The SSH session of a server reached over SSH.
    pub fn link(&self, name: &str) -> Option<Arc<Link>> {
        self.links
            .lock()
            .expect("links")
            .get(name)
            .map(|(l, _)| l.clone())
    }

    /// Change a server's record and write it.
    pub fn update(
        &self,
        store: &Store,
        name: &str,
        change: impl FnOnce(&mut Server),
    ) -> Result<Server, String> {
        let mut servers = self.servers.write().expect("fleet");
        let Some((server, _)) = servers.get_mut(name) else {
            return Err(format!("no server named {name}"));
        };
        change(server);
        if name != LOCAL {
            write_json(&settings_path(store, name), server, 0o644).map_err(|e| e.to_string())?;
        }
        Ok(server.clone())
    }
}

/// First contact with a new SSH server: log in (checking `--host-key` when
/// given), pin the host key it shows, start its Docker bridge.
async fn join_ssh(
    store: &Store,
    name: &str,
    target: &crate::remote::SshTarget,
) -> Result<
    (
        crate::remote::SshTarget,
        (Arc<Link>, crate::remote::bridge::Bridge),
    ),
    String,
> {
    let hq = Arc::new(crate::remote::hq_key(store.root()).map_err(|e| e.to_string())?);
    let (link, _) = Link::first_contact(name, target, hq)
        .await
        .map_err(|e| e.to_string())?;
    let pinned = link.target().clone();
    let link = Arc::new(link);
    let socket = crate::remote::bridge::socket_path(store.root(), name);
    let bridge = crate::remote::bridge::start(link.clone(), &socket)
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    Ok((pinned, (link, bridge)))
}

/// The session and Docker bridge of a recorded SSH server (its host key
/// pinned); the session connects on first use. Held while a provisioner's
/// last run failed.
fn start_link(
    store: &Store,
    server: &Server,
    target: &crate::remote::SshTarget,
) -> Result<(Arc<Link>, crate::remote::bridge::Bridge), String> {
    let hq = Arc::new(crate::remote::hq_key(store.root()).map_err(|e| e.to_string())?);
    let link = Arc::new(Link::new(&server.name, target, hq).map_err(|e| e.to_string())?);
    link.hold(crate::provision::failed(&server.provisioned));
    let socket = crate::remote::bridge::socket_path(store.root(), &server.name);
    let bridge = crate::remote::bridge::start(link.clone(), &socket)
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    Ok((link, bridge))
}

/// Why `name` at `endpoint` cannot join the fleet: a name or an engine that is
/// there already.
pub fn check_new(fleet: &Fleet, name: &str, endpoint: &str) -> Result<(), String> {
    for s in fleet.list() {
        if s.name == name {
            return Err(format!("a server named {name} exists already"));
        }
        if s.docker == endpoint {
            return Err(format!("{endpoint} is server {} already", s.name));
        }
    }
    Ok(())
}

/// Add a server to the fleet: connect (TLS files are copied under
/// `servers/<name>/tls/` first), negotiate the API version, read its facts,
/// write its settings. An engine that does not answer is refused. Callers
/// check first that it is new ([`check_new`]).
pub async fn register(
    store: &Store,
    fleet: &Fleet,
    new: NewServer,
    origin: Option<Origin>,
) -> Result<Server, String> {
    let mut ssh = None;
    if let Some(target) = &new.ssh {
        let (pinned, contact) = join_ssh(store, &new.name, target).await?;
        fleet
            .links
            .lock()
            .expect("links")
            .insert(new.name.clone(), contact);
        ssh = Some(pinned);
    }
    check_transport(&new.docker, new.tls.is_some(), new.insecure)?;
    let tls = match &new.tls {
        Some(files) => Some(keep_tls_files(store, &new.name, files)?),
        None => None,
    };
    let connected = async {
        let docker = connect(&new.docker, tls.as_ref()).await?;
        let facts = facts(&docker).await?;
        Ok::<_, String>((docker, facts))
    }
    .await;
    let (docker, facts) = match connected {
        Ok(c) => c,
        Err(e) => {
            fleet.links.lock().expect("links").remove(&new.name);
            let _ = std::fs::remove_dir_all(store_dir(store, &new.name));
            return Err(e);
        }
    };
    let server = Server {
        name: new.name,
        docker: new.docker,
        address: new.address.to_string(),
        memory: new.memory,
        labels: new.labels,
        state: ServerState::Running,
        facts,
        added: crate::store::now_rfc3339(),
        origin,
        tls,
        insecure: new.insecure,
        ssh,
        provisioned: BTreeMap::new(),
    };
    fleet.insert(store, server.clone(), docker)?;
    Ok(server)
}

/// Copy the TLS files into `servers/<name>/tls/` (the key 0600), so the
/// server keeps working when the originals move.
fn keep_tls_files(store: &Store, name: &str, files: &TlsFiles) -> Result<TlsFiles, String> {
    use std::os::unix::fs::PermissionsExt;
    let dir = store_dir(store, name).join("tls");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let copy = |what: &str, from: &std::path::Path, to: &str, mode: u32| {
        let bytes = std::fs::read(from).map_err(|e| format!("{what} {}: {e}", from.display()))?;
        if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
            return Err(format!("{what} {}: not a PEM file", from.display()));
        }
        let path = dir.join(to);
        crate::store::write_atomic(&path, &bytes, mode).map_err(|e| e.to_string())?;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
        Ok(path)
    };
    Ok(TlsFiles {
        ca: copy("--tls-ca", &files.ca, "ca.pem", 0o644)?,
        cert: copy("--tls-cert", &files.cert, "cert.pem", 0o644)?,
        key: copy("--tls-key", &files.key, "key.pem", 0o600)?,
    })
}

fn store_dir(store: &Store, name: &str) -> std::path::PathBuf {
    store.root().join("servers").join(name)
}

fn settings_path(store: &Store, name: &str) -> std::path::PathBuf {
    store
        .root()
        .join("servers")
        .join(name)
        .join("settings.json")
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
