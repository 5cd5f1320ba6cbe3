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
//! May touch: `<data>/networks.json`, the engines' networks, `/proc/net/route`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::launch::{LABEL_APP, LABEL_INSTANCE, docker_message};
use crate::store;

/// An IPv4 network: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: u32,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let bad = || format!("{text:?} is not an IPv4 network such as 10.201.0.0/16");
        let (ip, prefix) = text.trim().split_once('/').ok_or_else(bad)?;
        let ip: std::net::Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        Ok(Cidr {
            addr: u32::from(ip) & mask(prefix),
            prefix,
        })
    }

    fn last(self) -> u32 {
        self.addr | !mask(self.prefix)
    }

    pub fn overlaps(self, other: Cidr) -> bool {
        self.addr <= other.last() && other.addr <= self.last()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", std::net::Ipv4Addr::from(self.addr), self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

/// `network:` in config.yml.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// The range app subnets are cut from.
    pub pool: String,
    /// The prefix length of each app's subnet.
    pub prefix: u8,
    /// Keep every server's nftables table `inet quarry` (docs/network.md).
    pub lockdown: bool,
    /// More sources the lockdown accepts: addresses or networks.
    pub allow: Vec<String>,
}

impl Default for NetworkConfig {
    fn default() -> NetworkConfig {
        NetworkConfig {
            pool: "10.201.0.0/16".into(),
            prefix: 26,
            lockdown: false,
            allow: Vec::new(),
        }
    }
}

impl NetworkConfig {
    /// The pool and prefix, checked.
    pub fn parsed(&self) -> Result<(Cidr, u8), String> {
        crate::lockdown::render::parse_allow(&self.allow)?;
        let pool = Cidr::parse(&self.pool).map_err(|e| format!("config.yml: network.pool: {e}"))?;
        if self.prefix < pool.prefix || !(16..=29).contains(&self.prefix) {
            return Err(format!(
                "config.yml: network.prefix: use a length from {} to 29, found {}",
                pool.prefix.max(16),
                self.prefix
            ));
        }
        Ok((pool, self.prefix))
    }
}

/// The first `/prefix` subnet of `pool` that overlaps nothing in `taken`.
pub fn pick(pool: Cidr, prefix: u8, taken: &[Cidr]) -> Option<Cidr> {
    let step = 1u64 << (32 - prefix);
    let end = u64::from(pool.last());
    let mut taken: Vec<Cidr> = taken.iter().copied().filter(|t| t.overlaps(pool)).collect();
    taken.sort();
    let mut at = u64::from(pool.addr);
    // Taken ranges in address order: the first gap of a whole step wins.
    for t in taken {
        if at + step - 1 < u64::from(t.addr) {
            break;
        }
        if u64::from(t.last()) >= at {
            at = (u64::from(t.last()) + 1).div_ceil(step) * step;
        }
    }
    (at + step - 1 <= end).then_some(Cidr {
        addr: at as u32,
        prefix,
    })
}

/// A free `/prefix` subnet of `pool`, searched from the `start`th one on
/// (wrapping): Quarrys of engines that share one host's routes start at
/// different places, so they rarely reach for the same subnet at once.
pub fn pick_from(pool: Cidr, prefix: u8, taken: &[Cidr], start: u64) -> Option<Cidr> {
    let count = 1u64 << (prefix - pool.prefix);
    let step = 1u64 << (32 - prefix);
    (0..count)
        .map(|i| Cidr {
            addr: (u64::from(pool.addr) + ((start + i) % count) * step) as u32,
            prefix,
        })
        .find(|c| !taken.iter().any(|t| t.overlaps(*c)))
}

fn routes() -> Vec<Cidr> {
    host_routes(&std::fs::read_to_string("/proc/net/route").unwrap_or_default())
}

/// The IPv4 routes of this host (`/proc/net/route`), the default route left out.
/// The kernel prints each address as the hex of its in-memory word, so the
/// bytes come out reversed on the little-endian machines Quarry runs on.
pub fn host_routes(text: &str) -> Vec<Cidr> {
    let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::swap_bytes);
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let addr = hex(cols.get(1)?)?;
            let prefix = hex(cols.get(7)?)?.count_ones() as u8;
            (prefix > 0).then_some(Cidr {
                addr: addr & mask(prefix),
                prefix,
            })
        })
        .collect()
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
    ) -> Result<AppNetwork, String> {
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
                        format!(
                            "no free /{prefix} subnet left in the network pool {pool} for app {app}; widen network.pool in config.yml"
                        )
                    })?;
                    table.insert(key.clone(), subnet.to_string());
                    store::write_json(&self.path, &table, 0o644).map_err(|e| e.to_string())?;
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
                    return Err(format!(
                        "cannot create network {name} ({subnet}) on server {server}: {}",
                        docker_message(&e)
                    ));
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
    ) -> Result<(), String> {
        let _guard = self.lock.lock().await;
        for net in find(docker, instance, app).await? {
            docker.remove_network(&net.id).await.map_err(|e| {
                format!("cannot remove network {}: {}", net.name, docker_message(&e))
            })?;
        }
        let mut table = self.load()?;
        if table.remove(&format!("{server}/{app}")).is_some() {
            store::write_json(&self.path, &table, 0o644).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn load(&self) -> Result<BTreeMap<String, String>, String> {
        store::read_json(&self.path)
            .map(Option::unwrap_or_default)
            .map_err(|e| format!("{}: {e}", self.path.display()))
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
async fn find(docker: &Docker, instance: &str, app: &str) -> Result<Vec<AppNetwork>, String> {
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
        .map_err(|e| format!("cannot list networks: {}", docker_message(&e)))?;
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
async fn engine_subnets(docker: &Docker) -> Result<Vec<Cidr>, String> {
    let list = docker
        .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
        .await
        .map_err(|e| format!("cannot list networks: {}", docker_message(&e)))?;
    Ok(list
        .into_iter()
        .flat_map(|n| n.ipam.and_then(|i| i.config).unwrap_or_default())
        .filter_map(|c| c.subnet.and_then(|s| Cidr::parse(&s).ok()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    #[test]
    fn picks_the_first_free_subnet_past_taken_ranges() {
        let pool = c("10.201.0.0/16");
        assert_eq!(pick(pool, 26, &[]), Some(c("10.201.0.0/26")));
        assert_eq!(
            pick(pool, 26, &[c("10.201.0.0/26"), c("10.201.0.64/26")]),
            Some(c("10.201.0.128/26"))
        );
        // A wide host route inside the pool is skipped whole.
        assert_eq!(
            pick(pool, 26, &[c("10.201.0.0/20")]),
            Some(c("10.201.16.0/26"))
        );
        assert_eq!(pick(pool, 26, &[c("10.0.0.0/8")]), None);
        assert_eq!(
            pick(c("10.201.0.0/25"), 26, &[c("10.201.0.0/26")]),
            Some(c("10.201.0.64/26"))
        );
    }

    #[test]
    fn a_search_from_anywhere_wraps_around_the_pool() {
        let pool = c("10.201.0.0/24");
        assert_eq!(pick_from(pool, 26, &[], 2), Some(c("10.201.0.128/26")));
        let taken = [c("10.201.0.128/25")];
        assert_eq!(pick_from(pool, 26, &taken, 2), Some(c("10.201.0.0/26")));
        assert_eq!(pick_from(pool, 26, &[c("10.201.0.0/24")], 1), None);
    }

    #[test]
    fn a_pool_of_sixteen_bits_holds_a_thousand_apps() {
        let pool = c("10.201.0.0/16");
        let mut taken = Vec::new();
        while let Some(next) = pick(pool, 26, &taken) {
            taken.push(next);
        }
        assert_eq!(taken.len(), 1024);
        assert_eq!(taken.last().unwrap().to_string(), "10.201.255.192/26");
    }

    #[test]
    fn reads_host_routes() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(
            host_routes(text),
            vec![c("172.17.0.0/16"), c("192.0.2.0/24")]
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let bad = NetworkConfig {
            pool: "10.201.0.0".into(),
            prefix: 26,
            lockdown: false,
            allow: Vec::new(),
        };
        assert_eq!(
            bad.parsed().unwrap_err(),
            "config.yml: network.pool: \"10.201.0.0\" is not an IPv4 network such as 10.201.0.0/16"
        );
        let small = NetworkConfig {
            pool: "10.201.0.0/24".into(),
            prefix: 20,
            lockdown: false,
            allow: Vec::new(),
        };
        assert!(small.parsed().unwrap_err().contains("network.prefix"));
    }
}
