//! Relinks: which running node containers know a service address that is
//! out of date once the plan's services are up, and what every node
//! container is told about the services (`<NAME>_HOST`, `<NAME>_PORT`).
//!
//! A node container reaches a service by its name on the app's network when
//! both run on the same server (or the service publishes nothing), else at
//! the port the service publishes on its server's address. A container
//! carries a digest of those addresses ([`digest`], the `quarry.links`
//! label); when the addresses it would get now differ, it is replaced.
//!
//! What the plan can foresee: a kept service keeps its address; a service
//! that waits for its server keeps the one it had; a service replaced in
//! place stays on its server, and its published port (chosen by the engine
//! at boot) changes. What it cannot: the server the grid picks for a
//! service placed anew (a new one, or one moved off a draining server) when
//! the fleet has more than one running server. Such a service's address is
//! unknown until it boots, so every container of a node that is not
//! redeployed is relinked, whichever server the service lands on.
//! Pure: no I/O; names through [`crate::launch::service_host`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{Current, Desired, Instruction, natural_key, short_digest};

/// Where a service runs, and its port as published on that server's
/// address (only when nodes on other servers may need it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAt {
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<SocketAddr>,
}

/// A running node container's place and the links digest it was booted with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Linked {
    pub server: String,
    pub digest: String,
}

/// `CACHE` for service `cache`: the prefix of its `_HOST`/`_PORT` variables.
pub fn env_prefix(service: &str) -> String {
    service.to_uppercase().replace('-', "_")
}

/// The variables a node container on `server` gets for service `name` of
/// `app` (listening on `port`, running at `at`): its published address when
/// it runs on another server and publishes one, else its network name.
pub fn service_vars(
    app: &str,
    name: &str,
    port: Option<u16>,
    at: Option<&ServiceAt>,
    server: &str,
) -> Vec<(String, String)> {
    let upper = env_prefix(name);
    let elsewhere = at
        .filter(|at| at.server != server)
        .and_then(|at| at.published);
    match elsewhere {
        Some(addr) => vec![
            (format!("{upper}_HOST"), addr.ip().to_string()),
            (format!("{upper}_PORT"), addr.port().to_string()),
        ],
        None => {
            let mut vars = vec![(
                format!("{upper}_HOST"),
                crate::launch::service_host(app, name),
            )];
            if let Some(port) = port {
                vars.push((format!("{upper}_PORT"), port.to_string()));
            }
            vars
        }
    }
}

/// The links digest of a node container on `server`: every service's
/// `_HOST` and `_PORT` (empty when unset), in service order.
pub fn digest<'a>(
    app: &str,
    services: impl IntoIterator<Item = (&'a str, Option<u16>, Option<&'a ServiceAt>)>,
    server: &str,
) -> String {
    let mut text = String::new();
    for (name, port, at) in services {
        let vars: BTreeMap<String, String> = service_vars(app, name, port, at, server)
            .into_iter()
            .collect();
        let upper = env_prefix(name);
        for key in [format!("{upper}_HOST"), format!("{upper}_PORT")] {
            let value = vars.get(&key).map_or("", String::as_str);
            text.push_str(&format!("{key}={value}\n"));
        }
    }
    short_digest(&text)
}

/// Where a service will be once the plan's services are up, as far as the
/// plan knows.
enum Foreseen {
    /// At this address (kept, waiting, or replaced on a server that
    /// publishes nothing).
    At(ServiceAt),
    /// Replaced on this server with a new published port.
    Republished(String),
    /// Placed by the grid while executing.
    Anywhere,
}

/// The RELINK instructions for the nodes not in `deployed`, given the
/// services the plan ensures: one per node, its stale containers sorted.
pub(super) fn relinks(
    desired: &Desired,
    current: &Current,
    deployed: &BTreeSet<&str>,
    ensured: &BTreeSet<&str>,
) -> Vec<Instruction> {
    if desired.services.is_empty() {
        return Vec::new();
    }
    let publishes = |server: &str| desired.servers.iter().any(|s| s != server);
    let foreseen: BTreeMap<&str, Foreseen> = desired
        .services
        .iter()
        .map(|(name, want)| {
            let have = current.services.get(name);
            let f = if let Some(home) = &want.waiting {
                Foreseen::At(home.clone())
            } else if !ensured.contains(name.as_str()) {
                match have {
                    Some(h) => Foreseen::At(h.at.clone()),
                    None => Foreseen::Anywhere,
                }
            } else {
                let server = match (have, desired.servers.len()) {
                    (Some(h), _) => Some(h.at.server.clone()),
                    (None, 1) => desired.servers.first().cloned(),
                    (None, _) => None,
                };
                match server {
                    Some(server) if want.port.is_some() && publishes(&server) => {
                        Foreseen::Republished(server)
                    }
                    Some(server) => Foreseen::At(ServiceAt {
                        server,
                        published: None,
                    }),
                    None => Foreseen::Anywhere,
                }
            };
            (name.as_str(), f)
        })
        .collect();
    let mut out = Vec::new();
    for (node, want) in &desired.nodes {
        if want.scale == 0 || deployed.contains(node.as_str()) {
            continue;
        }
        let Some(have) = current.nodes.get(node) else {
            continue;
        };
        let mut stale = Vec::new();
        let mut reasons = BTreeSet::new();
        for (container, linked) in &have.linked {
            // Containers beyond the new scale are stopped, not relinked.
            if natural_key(container).1 > u64::from(want.scale) {
                continue;
            }
            let mut known = Vec::new();
            let mut why = Vec::new();
            for (name, f) in &foreseen {
                let port = desired.services[*name].port;
                match f {
                    Foreseen::At(at) => known.push((*name, port, Some(at.clone()))),
                    Foreseen::Republished(server) if *server == linked.server => {
                        let at = ServiceAt {
                            server: server.clone(),
                            published: None,
                        };
                        known.push((*name, port, Some(at)));
                    }
                    Foreseen::Republished(server) => {
                        why.push(format!("{name} restarts on server {server}"))
                    }
                    Foreseen::Anywhere => why.push(format!("{name} is placed anew")),
                }
            }
            if why.is_empty() {
                let want = digest(
                    &desired.app,
                    known.iter().map(|(n, p, at)| (*n, *p, at.as_ref())),
                    &linked.server,
                );
                if want == linked.digest {
                    continue;
                }
                why.push("service addresses changed".to_string());
            }
            stale.push(container.clone());
            reasons.extend(why);
        }
        if stale.is_empty() {
            continue;
        }
        stale.sort_by(|a, b| natural_key(a).cmp(&natural_key(b)));
        out.push(Instruction::Relink {
            node: node.clone(),
            containers: stale,
            reason: reasons.into_iter().collect::<Vec<_>>().join(", "),
        });
    }
    out
}
