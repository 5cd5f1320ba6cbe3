//! [`Fleet`]: the servers and their engine connections in memory, each
//! change written to `servers/<name>/settings.json` first; the SSH
//! sessions and Docker bridges of servers reached over SSH. May touch: the
//! `servers/` dir, the servers' sessions.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use bollard::Docker;

use super::error::io;
use super::join::{settings_path, start_link};
use super::{FleetError, LOCAL, Server, ServerState, connect};
use crate::remote::Link;
use crate::remote::bridge::Bridge;
use crate::store::{Store, read_json, write_json};

/// The servers and their engine connections.
pub struct Fleet {
    servers: RwLock<BTreeMap<String, (Server, Docker)>>,
    /// The SSH sessions and Docker bridges of servers reached over SSH.
    pub(super) links: std::sync::Mutex<BTreeMap<String, (Arc<Link>, Bridge)>>,
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
    pub fn insert(&self, store: &Store, server: Server, docker: Docker) -> Result<(), FleetError> {
        if server.name != LOCAL {
            let path = settings_path(store, &server.name);
            write_json(&path, &server, 0o644).map_err(io(&path))?;
        }
        self.servers
            .write()
            .expect("fleet")
            .insert(server.name.clone(), (server, docker));
        Ok(())
    }

    pub fn set_state(
        &self,
        store: &Store,
        name: &str,
        state: ServerState,
    ) -> Result<(), FleetError> {
        let mut servers = self.servers.write().expect("fleet");
        let Some((server, _)) = servers.get_mut(name) else {
            return Err(FleetError::NoServer(name.to_string()));
        };
        if !server.state.can_become(state) {
            return Err(FleetError::Transition {
                name: name.to_string(),
                from: server.state.as_str(),
                to: state.as_str(),
            });
        }
        server.state = state;
        if name != LOCAL {
            let path = settings_path(store, name);
            write_json(&path, server, 0o644).map_err(io(&path))?;
        }
        Ok(())
    }

    /// An empty grid with one block per server, sized and labelled like it
    /// and in the matching state; callers record or place slices on it.
    pub fn grid(&self) -> Result<crate::grid::Grid, FleetError> {
        use crate::grid::{Block, BlockState, Grid, Options};
        let mut grid = Grid::new(Options::default());
        for s in self.list() {
            let mut block = Block::new(s.name.clone(), s.memory.max(1));
            block.labels = s.labels.clone();
            // Only servers a provider made are the provider's to remove.
            block.pinned = s.origin.is_none();
            let grid_error = |e: crate::grid::GridError| FleetError::Grid(e.to_string());
            grid.add_block(block).map_err(grid_error)?;
            let state = match s.state {
                ServerState::Running => BlockState::Running,
                ServerState::Draining => BlockState::Draining,
                ServerState::Unknown => BlockState::Unknown,
                ServerState::Terminating => BlockState::Stopped,
            };
            grid.set_state(&s.name, state).map_err(grid_error)?;
        }
        Ok(grid)
    }

    pub fn remove(&self, store: &Store, name: &str) -> Result<(), FleetError> {
        if name == LOCAL {
            return Err(FleetError::Local);
        }
        let dir = store.root().join("servers").join(name);
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        self.forget(name);
        Ok(())
    }

    /// Remove a server whose provider took it back before it ever took
    /// containers, keeping its provisioners' logs (`servers/<name>/provision/`)
    /// for the operator to read.
    pub fn give_back(&self, store: &Store, name: &str) -> Result<(), FleetError> {
        if name == LOCAL {
            return Err(FleetError::Local);
        }
        let dir = store.root().join("servers").join(name);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let path = e.path();
                if e.file_name() == "provision" {
                    continue;
                }
                let gone = if path.is_dir() && !path.is_symlink() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                gone.map_err(io(&path))?;
            }
        }
        self.forget(name);
        Ok(())
    }

    /// Drop a server from memory and end its session.
    fn forget(&self, name: &str) {
        self.servers.write().expect("fleet").remove(name);
        let link = self.links.lock().expect("links").remove(name);
        if let Some((link, bridge)) = link {
            drop(bridge);
            tokio::spawn(async move { link.close().await });
        }
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
    ) -> Result<Server, FleetError> {
        let mut servers = self.servers.write().expect("fleet");
        let Some((server, _)) = servers.get_mut(name) else {
            return Err(FleetError::NoServer(name.to_string()));
        };
        change(server);
        if name != LOCAL {
            let path = settings_path(store, name);
            write_json(&path, server, 0o644).map_err(io(&path))?;
        }
        Ok(server.clone())
    }
}
