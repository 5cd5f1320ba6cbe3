//! Network lockdown (config.yml `network: { lockdown: true }`): Quarry
//! keeps on every server an nftables table of its own, `inet quarry`, that
//! lets the fleet's addresses talk to each other, keeps 22 open to anyone
//! and 80/443 on the HQ (the router), and drops every other new inbound
//! packet — container ports Docker publishes included ([`render`]).
//!
//! [`refresh`] renders each server's rules from the fleet as it is now and
//! loads them ([`apply::Executor`]): after a server joins or leaves and
//! when the daemon starts. `network:unlock` removes the tables and keeps
//! them off (the marker `lockdown/unlocked`) until `network:lock`. What was
//! loaded where is kept in `lockdown/<server>.json` (hash, time, state).
//! The HQ is always in every server's fleet set, and 22 is always open, so
//! the rules never cut the HQ off its servers nor the operator off the HQ.
//! May touch: `<data>/lockdown/`, nftables on the HQ and (through their
//! engines) on the servers; reads `config.yml` and `serve.json`.

use std::collections::BTreeSet;
use std::net::{IpAddr, UdpSocket};
use std::path::PathBuf;

use bollard::Docker;
use serde::{Deserialize, Serialize};

use crate::fleet::{Fleet, LOCAL, Server};
use crate::store::{Store, now_rfc3339, read_json, write_json};

pub mod apply;
pub mod render;

pub use apply::Executor;
pub use render::Rules;

/// Set to `skip` (tests only), the HQ's own rules are rendered and recorded
/// but not loaded: a test's HQ is the machine the tests run on.
pub const SKIP_HQ_ENV: &str = "QUARRY_TEST_LOCKDOWN_HQ";

#[derive(Debug, thiserror::Error)]
pub enum LockdownError {
    #[error("server {server}: {reason}")]
    Server { server: String, reason: String },
    #[error("nft is not installed on this machine (apt-get install nftables)")]
    NoNft,
    /// The engine refused the build of `quarry-base/nft`.
    #[error("cannot build the image quarry-base/nft: {0}")]
    Image(String),
    /// Its build context (`ldd` of nft, the tar) could not be made.
    #[error("cannot build the image quarry-base/nft: {0}")]
    ImageContext(#[source] std::io::Error),
    #[error("{path}: {reason}")]
    State { path: String, reason: String },
}

/// The state of one server's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableState {
    /// The rules of `hash` are loaded.
    Applied,
    /// The last load failed (`error` says why); what was loaded before stays.
    Failed,
    /// Quarry's table is gone from the server.
    Removed,
    /// Rendered but not loaded (the HQ, under tests).
    Skipped,
}

/// `lockdown/<server>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub server: String,
    pub state: TableState,
    /// The hash of the ruleset last rendered for it.
    pub hash: String,
    /// When it was loaded (or failed).
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The addresses it accepts, as rendered.
    #[serde(default)]
    pub fleet: Vec<String>,
}

fn dir(store: &Store) -> PathBuf {
    store.root().join("lockdown")
}

fn record_path(store: &Store, server: &str) -> PathBuf {
    dir(store).join(format!("{server}.json"))
}

/// Whether `network:unlock` holds the lockdown off.
pub fn unlocked(store: &Store) -> bool {
    dir(store).join("unlocked").exists()
}

/// The records of every server that has one.
pub fn records(store: &Store) -> Vec<Record> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir(store)) {
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "json")
                && let Ok(Some(r)) = read_json::<Record>(&path)
            {
                out.push(r);
            }
        }
    }
    out.sort_by(|a, b| a.server.cmp(&b.server));
    out
}

fn save(store: &Store, record: &Record) -> Result<(), LockdownError> {
    let path = record_path(store, &record.server);
    std::fs::create_dir_all(dir(store))
        .and_then(|_| write_json(&path, record, 0o644))
        .map_err(|e| LockdownError::State {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

/// The addresses every server accepts: each server's own address and the
/// address the HQ reaches it from (what the kernel picks as the source
/// toward it), loopback left out.
pub fn fleet_addresses(servers: &[Server]) -> BTreeSet<IpAddr> {
    let mut set = BTreeSet::new();
    for s in servers {
        let Ok(ip) = s.address.parse::<IpAddr>() else {
            continue;
        };
        if !ip.is_loopback() && !ip.is_unspecified() {
            set.insert(ip);
        }
        if s.name != LOCAL
            && let Some(from) = source_toward(ip)
        {
            set.insert(from);
        }
    }
    set
}

/// The HQ's source address toward `ip` (a UDP connect sends nothing).
fn source_toward(ip: IpAddr) -> Option<IpAddr> {
    let bind = if ip.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect((ip, 9)).ok()?;
    let from = socket.local_addr().ok()?.ip();
    (!from.is_loopback() && !from.is_unspecified()).then_some(from)
}

/// The router's public ports: 80 and 443, and the daemon's own SSH, HTTP
/// and HTTPS listeners where they are not on loopback (`serve.json`).
pub fn router_ports(store: &Store) -> BTreeSet<u16> {
    let mut ports: BTreeSet<u16> = [80, 443].into_iter().collect();
    if let Ok(Some(running)) = read_json::<crate::store::Running>(&store.root().join("serve.json"))
    {
        for addr in [Some(running.ssh), Some(running.http), running.https]
            .into_iter()
            .flatten()
        {
            if !addr.ip().is_loopback() {
                ports.insert(addr.port());
            }
        }
    }
    ports
}

/// The rules of `server` in a fleet whose accepted addresses are `fleet`
/// (and the networks of `allow`).
pub fn rules_for(
    server: &Server,
    fleet: &BTreeSet<IpAddr>,
    allow: &[render::Net],
    router: &BTreeSet<u16>,
) -> Rules {
    Rules {
        fleet: fleet.clone(),
        allow: allow.to_vec(),
        public_tcp: if server.name == LOCAL {
            router.clone()
        } else {
            BTreeSet::new()
        },
    }
}

static APPLYING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The executor of server `name`.
fn executor(name: &str, docker: &Docker, hq: &Docker) -> Executor {
    if name == LOCAL {
        Executor::Local
    } else {
        Executor::Engine {
            docker: docker.clone(),
            hq: hq.clone(),
        }
    }
}

/// Whether [`load`] ran nft or left the server alone.
enum Loaded {
    Loaded,
    /// The HQ under `QUARRY_TEST_LOCKDOWN_HQ=skip`: the test bed never
    /// changes the firewall of the machine the tests run on.
    Skipped,
}

/// Load the nft file `text` on `server` (through its executor), unless it is
/// the HQ and [`SKIP_HQ_ENV`] says skip.
async fn load(
    server: &Server,
    docker: &Docker,
    hq: &Docker,
    text: &str,
) -> Result<Loaded, LockdownError> {
    if server.name == LOCAL && std::env::var(SKIP_HQ_ENV).is_ok_and(|v| v == "skip") {
        return Ok(Loaded::Skipped);
    }
    executor(&server.name, docker, hq)
        .load(&server.name, text)
        .await
        .map(|()| Loaded::Loaded)
}

/// Bring every server's table in line with config.yml and the fleet: load
/// the rendered rules everywhere (lockdown on), or remove the tables that
/// are there (lockdown off, or unlocked). One refresh at a time; servers
/// are loaded in parallel. Returns the records written.
pub async fn refresh(store: &Store, fleet: &Fleet, hq: &Docker) -> Vec<Record> {
    let _guard = APPLYING.lock().await;
    let config = match crate::config::Config::load(store) {
        Ok(config) => config,
        Err(e) => {
            tracing::warn!("lockdown: {e}");
            return Vec::new();
        }
    };
    let on = config.network.lockdown;
    let allow = match render::parse_allow(&config.network.allow) {
        Ok(allow) => allow,
        Err(e) => {
            tracing::warn!("lockdown: {e}");
            return Vec::new();
        }
    };
    let servers = fleet.all();
    let list: Vec<Server> = servers.iter().map(|(s, _)| s.clone()).collect();
    // Servers that left (a provider took them back): their records go.
    for r in records(store) {
        if !list.iter().any(|s| s.name == r.server) {
            let _ = std::fs::remove_file(record_path(store, &r.server));
        }
    }
    if !on || unlocked(store) {
        let had: BTreeSet<String> = records(store)
            .into_iter()
            .filter(|r| r.state != TableState::Removed)
            .map(|r| r.server)
            .collect();
        let targets: Vec<(Server, Docker)> = servers
            .into_iter()
            .filter(|(s, _)| had.contains(&s.name))
            .collect();
        return remove_from(store, hq, targets).await;
    }
    let addresses = fleet_addresses(&list);
    let router = router_ports(store);
    let loads = servers.into_iter().map(|(server, docker)| {
        let text = render::ruleset(&rules_for(&server, &addresses, &allow, &router));
        let addresses = addresses.clone();
        async move {
            let hash = render::hash(&text);
            let (state, error) = match load(&server, &docker, hq, &text).await {
                Ok(Loaded::Skipped) => (TableState::Skipped, None),
                Ok(Loaded::Loaded) => (TableState::Applied, None),
                Err(e) => (TableState::Failed, Some(e.to_string())),
            };
            Record {
                server: server.name.clone(),
                state,
                hash,
                at: now_rfc3339(),
                error,
                fleet: addresses.iter().map(|a| a.to_string()).collect(),
            }
        }
    });
    let done = futures_util::future::join_all(loads).await;
    for r in &done {
        if let Some(e) = &r.error {
            tracing::warn!("lockdown: {e}");
        }
        if let Err(e) = save(store, r) {
            tracing::warn!("lockdown: {e}");
        }
    }
    done
}

/// Remove Quarry's table from these servers; their records say `removed`
/// (or `failed`, with why).
pub async fn remove_from(
    store: &Store,
    hq: &Docker,
    targets: Vec<(Server, Docker)>,
) -> Vec<Record> {
    let text = render::removal();
    let removals = targets.into_iter().map(|(server, docker)| {
        let text = text.clone();
        async move {
            let (state, error) = match load(&server, &docker, hq, &text).await {
                Ok(Loaded::Loaded | Loaded::Skipped) => (TableState::Removed, None),
                Err(e) => (TableState::Failed, Some(e.to_string())),
            };
            Record {
                server: server.name.clone(),
                state,
                hash: String::new(),
                at: now_rfc3339(),
                error,
                fleet: Vec::new(),
            }
        }
    });
    let done = futures_util::future::join_all(removals).await;
    for r in &done {
        if let Err(e) = save(store, r) {
            tracing::warn!("lockdown: {e}");
        }
    }
    done
}

/// A server leaves: its table goes (best effort: it may not answer) and
/// its record with it. The others are refreshed by the caller afterwards.
pub async fn forget(store: &Store, hq: &Docker, server: Server, docker: Docker) {
    let _guard = APPLYING.lock().await;
    let path = record_path(store, &server.name);
    let had = read_json::<Record>(&path)
        .ok()
        .flatten()
        .is_some_and(|r| r.state != TableState::Removed);
    if had {
        let name = server.name.clone();
        for r in remove_from(store, hq, vec![(server, docker)]).await {
            if let Some(e) = r.error {
                tracing::warn!(server = %name, "lockdown: {e}");
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// `network:unlock` (`on: false`) writes the marker and removes every
/// table; `network:lock` clears it and loads the rules again.
pub async fn set_unlocked(
    store: &Store,
    fleet: &Fleet,
    hq: &Docker,
    unlock: bool,
) -> Result<Vec<Record>, LockdownError> {
    let marker = dir(store).join("unlocked");
    let state = |e: std::io::Error| LockdownError::State {
        path: marker.display().to_string(),
        reason: e.to_string(),
    };
    if unlock {
        std::fs::create_dir_all(dir(store)).map_err(state)?;
        crate::store::write_atomic(&marker, now_rfc3339().as_bytes(), 0o644).map_err(state)?;
    } else {
        match std::fs::remove_file(&marker) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(state(e)),
        }
    }
    Ok(refresh(store, fleet, hq).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{Facts, ServerState};

    fn server(name: &str, address: &str) -> Server {
        Server {
            name: name.into(),
            docker: format!("unix:///run/{name}.sock"),
            address: address.into(),
            memory: 1024,
            labels: Default::default(),
            state: ServerState::Running,
            facts: Facts::default(),
            added: String::new(),
            origin: None,
            tls: None,
            insecure: false,
            ssh: None,
            provisioned: Default::default(),
        }
    }

    #[test]
    fn config_yml_turns_it_on_beside_the_pool() {
        let c = crate::config::Config::parse("network: { lockdown: true }\n").unwrap();
        assert!(c.network.lockdown);
        assert_eq!(c.network.pool, "10.201.0.0/16");
        let c = crate::config::Config::parse("network: { pool: 10.9.0.0/16 }\n").unwrap();
        assert!(!c.network.lockdown, "off unless asked");
        let e = crate::config::Config::parse("network:\n  lockdown: yes please\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("config.yml:2:"), "{e}");
        let e = crate::config::Config::parse("network:\n  lockdwn: true\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lockdwn"), "{e}");
        let c = crate::config::Config::parse(
            "network: { lockdown: true, allow: [203.0.113.9, 10.0.0.0/8] }\n",
        )
        .unwrap();
        assert_eq!(c.network.allow, ["203.0.113.9", "10.0.0.0/8"]);
        let e = crate::config::Config::parse("network: { allow: [10.0.0.1/8] }\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "config.yml: network.allow: \"10.0.0.1/8\" has host bits set past /8"
        );
    }

    #[test]
    fn the_fleet_set_has_every_server_and_no_loopback() {
        let list = [
            server(LOCAL, "127.0.0.1"),
            server("s12", "10.214.0.12"),
            server("s14", "10.214.0.14"),
        ];
        let set = fleet_addresses(&list);
        for a in ["10.214.0.12", "10.214.0.14"] {
            assert!(set.contains(&a.parse().unwrap()), "{a} in {set:?}");
        }
        assert!(set.iter().all(|a| !a.is_loopback()), "{set:?}");
    }

    #[test]
    fn only_the_router_opens_its_public_ports() {
        let fleet: BTreeSet<IpAddr> = ["10.0.0.2".parse().unwrap()].into_iter().collect();
        let router: BTreeSet<u16> = [80, 443, 2222].into_iter().collect();
        let hq = rules_for(&server(LOCAL, "127.0.0.1"), &fleet, &[], &router);
        assert_eq!(hq.public_tcp, router);
        let other = rules_for(&server("s2", "10.0.0.2"), &fleet, &[], &router);
        assert!(other.public_tcp.is_empty());
        assert_eq!(other.fleet, fleet);
        assert!(render::ruleset(&other).contains("tcp dport { 22 } accept"));
    }

    #[test]
    fn the_commands_parse() {
        use crate::command::{Cmd, Request, parse_line};
        assert_eq!(
            parse_line("network --json").unwrap(),
            Request::Command(Cmd::Network { json: true })
        );
        assert_eq!(
            parse_line("network:unlock").unwrap(),
            Request::Command(Cmd::NetworkLock { lock: false })
        );
        assert_eq!(
            parse_line("network:lock").unwrap(),
            Request::Command(Cmd::NetworkLock { lock: true })
        );
        assert!(parse_line("network:unlock now").is_err());
    }
}
