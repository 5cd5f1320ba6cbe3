//! Networks: one bridge network per app and server, with a subnet Quarry
//! allocates itself.
//!
//! An app's nodes and services see only their own app: each app gets its own
//! bridge network on every server it runs on. Docker's default address pools
//! hold about thirty networks, so Quarry gives each network an explicit
//! subnet from its own pool (`network.pool`, `network.prefix` in config.yml;
//! default `10.201.0.0/16` cut into /26 subnets: 1024 networks of 62
//! addresses). A subnet is never one that overlaps a route of this host or a
//! network the engine already has. Allocations are kept in
//! `<data>/networks.json` (`<server>/<app>` → subnet).
//!
//! A network is created once, under one lock, and found again by its labels
//! (`quarry.instance`, `quarry.app`), never by its name, so concurrent
//! deploys never make two. It is removed with its app.
//! The subnets, the pool and `network.allow` themselves are in [`cidr`]
//! (pure). May touch: `<data>/networks.json`, the engines' networks,
//! `/proc/net/route`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use tokio::sync::Mutex;

use crate::launch::{LABEL_APP, LABEL_INSTANCE, docker_message};
use crate::store;

pub mod cidr;
pub use cidr::{
    AddrError, Cidr, Net, NetConfigError, NetworkConfig, host_routes, parse_allow, pick, pick_from,
};

/// Why an app's network could not be made, found or removed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(transparent)]
    Config(#[from] NetConfigError),
    #[error(
        "no free /{prefix} subnet left in the network pool {pool} for app {app}; widen network.pool in config.yml"
    )]
    PoolFull { prefix: u8, pool: Cidr, app: String },
    /// `<data>/networks.json` could not be read or written.
    #[error("{}: {source}", path.display())]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A store write, whose error already names `networks.json`.
    #[error(transparent)]
    Save(std::io::Error),
    #[error("cannot create network {name} ({subnet}) on server {server}: {reason}")]
    Create {
        name: String,
        subnet: Cidr,
        server: String,
        reason: String,
    },
    #[error("cannot remove network {name}: {reason}")]
    Remove { name: String, reason: String },
    #[error("cannot list networks: {reason}", reason = .0)]
    List(String),
}

fn routes() -> Vec<Cidr> {
    host_routes(&std::fs::read_to_string("/proc/net/route").unwrap_or_default())
}

/// An app's network on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppNetwork {
    pub id: String,
    pub name: String,
}

/// The allocations and the lock every network creation takes.
pub struct Networks {
    path: PathBuf,
    lock: Mutex<()>,
}

impl Networks {
    pub fn new(data: &Path) -> Networks {
        Networks {
            path: data.join("networks.json"),
            lock: Mutex::new(()),
        }
    }

    /// `app`'s network on `server` (engine `docker`): the one labelled so,
    /// or a new one with a subnet of its own.
    pub async fn ensure(
        &self,
        docker: &Docker,
        instance: &str,
        server: &str,
        app: &str,
        config: &NetworkConfig,
    ) -> Result<AppNetwork, NetworkError> {
        let _guard = self.lock.lock().await;
        if let Some(found) = find(docker, instance, app).await?.into_iter().next() {
            return Ok(found);
        }
        let (pool, prefix) = config.parsed()?;
        let mut table = self.load()?;
        let key = format!("{server}/{app}");
        let name = format!("quarry.{instance}.{app}");
        // Another Quarry on the same engine may take a subnet between the
        // look and the create: the engine refuses the overlap, try the next.
        let mut refused: Vec<Cidr> = Vec::new();
        loop {
            let subnet = match table.get(&key).map(|s| Cidr::parse(s)) {
                Some(Ok(subnet)) if !refused.contains(&subnet) => subnet,
                _ => {
                    let mut taken: Vec<Cidr> = table
                        .iter()
                        .filter(|(k, _)| **k != key)
                        .filter_map(|(_, v)| Cidr::parse(v).ok())
                        .collect();
                    taken.extend(routes());
                    taken.extend(engine_subnets(docker).await?);
                    taken.extend(refused.iter().copied());
                    let start = rand::random_range(0..1u64 << (prefix - pool.prefix));
                    let subnet = pick_from(pool, prefix, &taken, start).ok_or_else(|| {
                        NetworkError::PoolFull {
                            prefix,
                            pool,
                            app: app.to_string(),
                        }
                    })?;
                    table.insert(key.clone(), subnet.to_string());
                    self.save(&table)?;
                    subnet
                }
            };
            match docker
                .create_network(request(&name, subnet, instance, app))
                .await
            {
                // Another engine on this host may have made the same subnet
                // meanwhile: two routes to it would break both. Try again.
                Ok(created)
                    if routes().iter().filter(|r| r.overlaps(subnet)).count() > 1
                        && refused.len() < 16 =>
                {
                    let _ = docker.remove_network(&created.id).await;
                    refused.push(subnet);
                }
                Ok(created) => {
                    return Ok(AppNetwork {
                        id: created.id,
                        name,
                    });
                }
                Err(e) if docker_message(&e).contains("overlap") && refused.len() < 16 => {
                    refused.push(subnet);
                }
                Err(e) => {
                    return Err(NetworkError::Create {
                        name,
                        subnet,
                        server: server.to_string(),
                        reason: docker_message(&e),
                    });
                }
            }
        }
    }

    /// Remove `app`'s networks on one engine and forget their subnets.
    pub async fn remove(
        &self,
        docker: &Docker,
        instance: &str,
        server: &str,
        app: &str,
    ) -> Result<(), NetworkError> {
        let _guard = self.lock.lock().await;
        for net in find(docker, instance, app).await? {
            docker
                .remove_network(&net.id)
                .await
                .map_err(|e| NetworkError::Remove {
                    name: net.name.clone(),
                    reason: docker_message(&e),
                })?;
        }
        let mut table = self.load()?;
        if table.remove(&format!("{server}/{app}")).is_some() {
            self.save(&table)?;
        }
        Ok(())
    }

    fn load(&self) -> Result<BTreeMap<String, String>, NetworkError> {
        store::read_json(&self.path)
            .map(Option::unwrap_or_default)
            .map_err(|source| NetworkError::State {
                path: self.path.clone(),
                source,
            })
    }

    fn save(&self, table: &BTreeMap<String, String>) -> Result<(), NetworkError> {
        store::write_json(&self.path, table, 0o644).map_err(NetworkError::Save)
    }
}

fn request(name: &str, subnet: Cidr, instance: &str, app: &str) -> NetworkCreateRequest {
    NetworkCreateRequest {
        name: name.to_string(),
        driver: Some("bridge".into()),
        ipam: Some(Ipam {
            config: Some(vec![IpamConfig {
                subnet: Some(subnet.to_string()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        labels: Some(HashMap::from([
            (LABEL_INSTANCE.to_string(), instance.to_string()),
            (LABEL_APP.to_string(), app.to_string()),
        ])),
        ..Default::default()
    }
}

/// `app`'s networks on an engine, oldest first, found by label.
async fn find(docker: &Docker, instance: &str, app: &str) -> Result<Vec<AppNetwork>, NetworkError> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("{LABEL_INSTANCE}={instance}"),
            format!("{LABEL_APP}={app}"),
        ],
    )]);
    let options = bollard::query_parameters::ListNetworksOptionsBuilder::default()
        .filters(&filters)
        .build();
    let mut list = docker
        .list_networks(Some(options))
        .await
        .map_err(|e| NetworkError::List(docker_message(&e)))?;
    list.sort_by(|a, b| a.created.cmp(&b.created));
    Ok(list
        .into_iter()
        .filter_map(|n| {
            Some(AppNetwork {
                id: n.id?,
                name: n.name.unwrap_or_default(),
            })
        })
        .collect())
}

/// Every IPv4 subnet the engine's networks use.
async fn engine_subnets(docker: &Docker) -> Result<Vec<Cidr>, NetworkError> {
    let list = docker
        .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
        .await
        .map_err(|e| NetworkError::List(docker_message(&e)))?;
    Ok(list
        .into_iter()
        .flat_map(|n| n.ipam.and_then(|i| i.config).unwrap_or_default())
        .filter_map(|c| c.subnet.and_then(|s| Cidr::parse(&s).ok()))
        .collect())
}
