//! The planner: desired state + current state → launch instructions.
//!
//! [`plan`] is a pure function over plain data: the executor (`launch`,
//! `route`) carries the instructions out, `build/plan.json` stores them, and
//! [`render`] prints them as the dry run of `quarry plan`. Nothing here does
//! I/O or reads a clock; it touches nothing outside itself except the types of
//! [`crate::manifest`] and the service names of [`crate::launch`].
//! `links` decides which running containers must be relinked.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::manifest::{Command, NodeKind, Service, ServiceSource};
use crate::validate::Domain;

mod links;
pub use links::{Linked, ServiceAt, digest as links_digest, env_prefix, service_vars};

/// One step of a deploy. Matched exhaustively by the executor: a new step
/// must be handled wherever instructions are carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Instruction {
    /// Boot a service container unless one runs with this spec.
    Ensure {
        service: String,
        image: String,
        spec_hash: String,
    },
    /// Boot `scale` containers of the release, health-check them, switch the
    /// route, then stop the node's old containers (zero downtime).
    Deploy {
        node: String,
        release: u32,
        scale: u32,
    },
    /// Run the release's `release:` command in a one-off container, once,
    /// after the services are up and before any node rolls out.
    Release { release: u32, command: String },
    /// Replace running containers of a node (keeping its release) whose
    /// service addresses are out of date, each beside the old one: a
    /// service moved or republished its port. `reason` says which.
    Relink {
        node: String,
        containers: Vec<String>,
        reason: String,
    },
    /// Add or remove containers of a node, keeping its release.
    Scale { node: String, from: u32, to: u32 },
    /// Add or remove domains of a node in the router (both sorted).
    Route {
        node: String,
        add: Vec<Domain>,
        remove: Vec<Domain>,
    },
    /// Stop and remove a container.
    Kill { container: String },
}

impl Instruction {
    /// The node a DEPLOY rolls out.
    fn deployed(&self) -> Option<&str> {
        if let Instruction::Deploy { node, .. } = self {
            Some(node)
        } else {
            None
        }
    }

    /// The service an ENSURE boots.
    fn ensured(&self) -> Option<&str> {
        if let Instruction::Ensure { service, .. } = self {
            Some(service)
        } else {
            None
        }
    }
}

impl fmt::Display for Instruction {
    /// The dry-run line, such as `DEPLOY web v3 x2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Instruction::Ensure { service, image, .. } => write!(f, "ENSURE {service} ({image})"),
            Instruction::Deploy {
                node,
                release,
                scale,
            } => {
                write!(f, "DEPLOY {node} v{release} x{scale}")
            }
            Instruction::Release { release, command } => {
                write!(f, "RELEASE v{release}: {command}")
            }
            Instruction::Scale { node, from, to } => write!(f, "SCALE {node} {from} -> {to}"),
            Instruction::Relink {
                node,
                containers,
                reason,
            } => write!(f, "RELINK {node} x{} ({reason})", containers.len()),
            Instruction::Route { node, add, remove } => {
                write!(f, "ROUTE {node}")?;
                for domain in add {
                    write!(f, " +{domain}")?;
                }
                for domain in remove {
                    write!(f, " -{domain}")?;
                }
                Ok(())
            }
            Instruction::Kill { container } => write!(f, "KILL {container}"),
        }
    }
}

/// What the app should look like once the plan has run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    pub app: String,
    /// The release being deployed; every node with containers runs it afterwards.
    pub release: u32,
    pub services: BTreeMap<String, DesiredService>,
    pub nodes: BTreeMap<String, DesiredNode>,
    /// The release command to run before the nodes roll out (a new release
    /// with a `release:` command), as the user wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_command: Option<String>,
    /// A node whose containers are all replaced even if they run this
    /// release (`ps:restart`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    /// The servers that run containers now: a service publishes its port
    /// when another one could run a node that reaches it.
    #[serde(default)]
    pub servers: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredService {
    /// The image to boot (pulled or built for this app).
    pub image: String,
    /// [`spec_hash`] of the service definition: a change restarts the service.
    pub spec_hash: String,
    /// The port it listens on, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Set when it waits for its server (which holds its volumes and does
    /// not answer): nodes keep reaching it at this address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<ServiceAt>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredNode {
    pub kind: NodeKind,
    pub scale: u32,
    /// Routed only for web nodes.
    pub domains: BTreeSet<Domain>,
}

/// What runs now, as found by the executor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Current {
    /// The live release of the app, if any (informational: the nodes' own
    /// releases decide what is redeployed).
    pub release: Option<u32>,
    pub services: BTreeMap<String, CurrentService>,
    pub nodes: BTreeMap<String, CurrentNode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentService {
    pub spec_hash: String,
    pub container: String,
    /// Its server and published port.
    pub at: ServiceAt,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentNode {
    /// The release its containers run.
    pub release: u32,
    /// Container names `<app>.<node>.<n>`, n from 1.
    pub containers: Vec<String>,
    /// Domains routed to it now.
    pub domains: BTreeSet<Domain>,
    /// Its running containers that carry a links digest, by name.
    #[serde(default)]
    pub linked: BTreeMap<String, Linked>,
}

/// The instructions that turn `current` into `desired`, in the order to run them:
/// services first (nodes may need them), then the release command (when a
/// node rolls out a new release that has one), then deploys and scaling,
/// then relinks of the containers whose service addresses go stale, then
/// routes, then the kills of what is gone; each group sorted by name.
/// A node named by `desired.restart` is deployed even when it runs the
/// release already.
pub fn plan(desired: &Desired, current: &Current) -> Vec<Instruction> {
    let mut services = Vec::new();
    let mut launches = Vec::new();
    // Keyed by node, so removed and kept nodes' routes sort together.
    let mut routes = BTreeMap::new();
    let mut kills = Vec::new();

    for (name, want) in &desired.services {
        let ensure = Instruction::Ensure {
            service: name.clone(),
            image: want.image.clone(),
            spec_hash: want.spec_hash.clone(),
        };
        match current.services.get(name) {
            None => services.push(ensure),
            Some(have) if have.spec_hash != want.spec_hash => {
                // Replaced in place, before the nodes that use it are deployed.
                services.push(Instruction::Kill {
                    container: have.container.clone(),
                });
                services.push(ensure);
            }
            Some(_) => {}
        }
    }
    for (name, have) in &current.services {
        if !desired.services.contains_key(name) {
            kills.push(have.container.clone());
        }
    }

    let no_domains = BTreeSet::new();
    for (name, want) in &desired.nodes {
        let have = current.nodes.get(name);
        let running = have.map_or(0, |h| count(h.containers.len()));
        let same_release = have.is_some_and(|h| h.release == desired.release);
        let restart = desired.restart.as_deref() == Some(name.as_str());
        if want.scale > 0 && (!same_release || restart) {
            launches.push(Instruction::Deploy {
                node: name.clone(),
                release: desired.release,
                scale: want.scale,
            });
        } else if want.scale != running {
            // Same release, or scaled to zero: no new containers to boot.
            launches.push(Instruction::Scale {
                node: name.clone(),
                from: running,
                to: want.scale,
            });
        }
        // A worker routes nothing, even if it was a web node before.
        let wanted = match want.kind {
            NodeKind::Web => &want.domains,
            NodeKind::Worker => &no_domains,
        };
        let routed = have.map_or(&no_domains, |h| &h.domains);
        if let Some(route) = route(name, wanted, routed) {
            routes.insert(name, route);
        }
    }
    for (name, have) in &current.nodes {
        if desired.nodes.contains_key(name) {
            continue;
        }
        if let Some(route) = route(name, &no_domains, &have.domains) {
            routes.insert(name, route);
        }
        kills.extend(have.containers.iter().cloned());
    }

    kills.sort_by(|a, b| natural_key(a).cmp(&natural_key(b)));
    let kills = kills
        .into_iter()
        .map(|container| Instruction::Kill { container });
    let deployed: BTreeSet<&str> = launches.iter().filter_map(Instruction::deployed).collect();
    let ensured: BTreeSet<&str> = services.iter().filter_map(Instruction::ensured).collect();
    let relinks = links::relinks(desired, current, &deployed, &ensured);
    let deploys = !deployed.is_empty();
    let release = desired
        .release_command
        .clone()
        .filter(|_| deploys)
        .map(|command| Instruction::Release {
            release: desired.release,
            command,
        });
    services
        .into_iter()
        .chain(release)
        .chain(launches)
        .chain(relinks)
        .chain(routes.into_values())
        .chain(kills)
        .collect()
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn route(node: &str, wanted: &BTreeSet<Domain>, routed: &BTreeSet<Domain>) -> Option<Instruction> {
    let add: Vec<Domain> = wanted.difference(routed).cloned().collect();
    let remove: Vec<Domain> = routed.difference(wanted).cloned().collect();
    if add.is_empty() && remove.is_empty() {
        return None;
    }
    Some(Instruction::Route {
        node: node.to_owned(),
        add,
        remove,
    })
}

/// Sorts `app.web.2` before `app.web.10`.
fn natural_key(container: &str) -> (&str, u64, &str) {
    let digits = container.len()
        - container
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .len();
    let (stem, number) = container.split_at(container.len() - digits);
    (stem, number.parse().unwrap_or(0), container)
}

/// A stable fingerprint of a service definition (sha256, first 12 hex digits).
/// Everything that needs a restart when it changes is in it; the key names are
/// fixed here, so renaming a Rust field does not restart every service.
pub fn spec_hash(service: &Service) -> String {
    let source = match &service.source {
        ServiceSource::Image(image) => serde_json::json!({ "image": image }),
        ServiceSource::Build(dir) => serde_json::json!({ "build": dir }),
    };
    let command = match &service.command {
        None => serde_json::Value::Null,
        Some(Command::Shell(line)) => serde_json::json!({ "shell": line }),
        Some(Command::Exec(argv)) => serde_json::json!({ "exec": argv }),
    };
    let spec = serde_json::json!([
        ["source", source],
        ["port", service.port],
        ["volumes", service.volumes],
        ["command", command],
        ["env", service.env],
        ["memory", service.memory],
    ]);
    short_digest(&spec.to_string())
}

/// The first 6 bytes of the SHA-256 of `text`, in hex: a label-sized digest.
pub fn short_digest(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// The human dry run: one line per instruction, or `nothing to do`.
pub fn render(plan: &[Instruction]) -> String {
    if plan.is_empty() {
        return "nothing to do\n".to_owned();
    }
    plan.iter().map(|step| format!("{step}\n")).collect()
}

#[cfg(test)]
mod tests;
