//! quarry.yml and Procfile: what an app asks to run.
//!
//! Two layers, as in ripgrep's argument parsing: [`crate::yaml`] turns the text into
//! a tree that remembers lines, then `schema` reads that tree into a
//! validated [`Manifest`], refusing unknown keys, wrong types and bad values
//! with `file:line: key.path: reason`. A Procfile or a lone Dockerfile give
//! the same [`Manifest`]. Pure: no I/O, no clock, nothing outside itself
//! except the shared name rules in [`crate::validate`].

mod cron;
mod schema;

pub use cron::{CronJob, default_node};

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::validate;

/// Larger quarry.yml or Procfile files are refused before parsing.
pub const MAX_MANIFEST_LEN: usize = 1024 * 1024;

/// What an app runs: its services, its nodes and how to roll them out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Injected into every node container (not into services).
    pub env: BTreeMap<String, String>,
    /// Started once (ENSURE) and kept across pushes.
    pub services: BTreeMap<String, Service>,
    /// Rebuilt and restarted on every push; never empty.
    pub nodes: BTreeMap<String, Node>,
    /// Run once per release, before the switch; a failure rejects the push.
    pub release: Option<Command>,
    pub build: Build,
    pub deploy: Deploy,
    pub releases: Releases,
    /// Scheduled one-off jobs of the live release, by name.
    #[serde(default)]
    pub cron: BTreeMap<String, CronJob>,
}

/// A command: a string runs with `/bin/sh -c`, a list runs as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Command {
    Shell(String),
    Exec(Vec<String>),
}

/// A long-lived backing container (database, cache).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub source: ServiceSource,
    /// The port it listens on, published as `<NAME>_PORT` to the nodes.
    pub port: Option<u16>,
    /// Absolute container paths kept across restarts and deploys.
    pub volumes: Vec<String>,
    /// `None`: the image's own CMD.
    pub command: Option<Command>,
    pub env: BTreeMap<String, String>,
    /// MiB.
    pub memory: Option<u32>,
    /// Which servers it may run on.
    pub placement: Placement,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceSource {
    /// An image present on the host.
    Image(String),
    /// A directory of the repository with a Dockerfile: relative, without `..`.
    Build(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// Routed by domain, load-balanced, health-checked.
    Web,
    /// Runs in the background, never routed.
    Worker,
}

impl NodeKind {
    /// The default for a node that does not say: `web` is routed, anything else works.
    pub fn for_name(name: &str) -> NodeKind {
        if name == "web" {
            NodeKind::Web
        } else {
            NodeKind::Worker
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Web => "web",
            NodeKind::Worker => "worker",
        }
    }
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A process type of the app, run from the app's image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub kind: NodeKind,
    /// `None`: the image's own CMD.
    pub command: Option<Command>,
    pub scale: u32,
    /// MiB: the slice size on the grid; `None` lets the launcher choose.
    pub memory: Option<u32>,
    /// Besides `<app>.<root domain>`; web nodes only, each domain on one node.
    pub domains: Vec<crate::validate::Domain>,
    /// Web nodes only; `None` lets the launcher use its default check.
    pub healthcheck: Option<HealthCheck>,
    /// Added to (and overriding) the manifest's top-level env.
    pub env: BTreeMap<String, String>,
    pub placement: Placement,
}

impl Node {
    /// A node with every default: scale 1, the image's CMD, no limits.
    pub fn new(kind: NodeKind) -> Node {
        Node {
            kind,
            command: None,
            scale: 1,
            memory: None,
            domains: Vec::new(),
            healthcheck: None,
            env: BTreeMap::new(),
            placement: Placement::default(),
        }
    }
}

/// How the launcher decides that a new web container is ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// An HTTP GET that must answer 2xx or 3xx; starts with `/`.
    pub path: Option<String>,
    /// A TCP connect to `$PORT` is enough; exclusive with `path`.
    pub tcp: bool,
    /// Seconds before the deploy is given up.
    pub timeout: u32,
    /// Seconds between tries.
    pub interval: u32,
    /// Tries before the deploy is given up, if fewer than the timeout allows.
    pub attempts: Option<u32>,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            path: None,
            tcp: false,
            timeout: 60,
            interval: 1,
            attempts: None,
        }
    }
}

/// Constraints on the servers a node's or service's containers may run on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Every label must match the server's.
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    /// The buildpack to build with, even if there is a Dockerfile: a built-in
    /// name, a path (in the repository or on the server) or a git URL.
    pub buildpack: Option<String>,
    /// Seconds the build may take (`build.timeout`); the operator's maximum
    /// applies above it.
    #[serde(default)]
    pub timeout: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deploy {
    /// Containers replaced at a time; `None`: all at once.
    pub batch: Option<u32>,
    /// Seconds an old container keeps serving after the switch before it is stopped.
    pub drain: u32,
}

impl Default for Deploy {
    fn default() -> Self {
        Deploy {
            batch: None,
            drain: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Releases {
    /// Releases (and their images) kept for rollback.
    pub keep: u32,
}

impl Default for Releases {
    fn default() -> Self {
        Releases { keep: 5 }
    }
}

/// Why a quarry.yml or Procfile was refused: `file:line: key.path: reason`.
pub use crate::yaml::Error as ManifestError;

/// The manifest of an app with only a Dockerfile: one web node running the image's CMD.
pub fn default_manifest() -> Manifest {
    Manifest {
        env: BTreeMap::new(),
        services: BTreeMap::new(),
        nodes: BTreeMap::from([("web".to_owned(), Node::new(NodeKind::Web))]),
        release: None,
        build: Build::default(),
        deploy: Deploy::default(),
        releases: Releases::default(),
        cron: BTreeMap::new(),
    }
}

/// Reads a quarry.yml; `file` is the name errors show.
pub fn parse_manifest(file: &str, text: &str) -> Result<Manifest, ManifestError> {
    too_large(text)
        .and_then(|()| schema::read(text))
        .map_err(|e| e.in_file(file))
}

/// Reads a Procfile: one `name: command` per line, `release` being the release command.
pub fn parse_procfile(file: &str, text: &str) -> Result<Manifest, ManifestError> {
    read_procfile(text).map_err(|e| e.in_file(file))
}

fn too_large(text: &str) -> Result<(), ManifestError> {
    if text.len() > MAX_MANIFEST_LEN {
        return Err(ManifestError::new(None, "", "larger than 1 MiB"));
    }
    Ok(())
}

fn read_procfile(text: &str) -> Result<Manifest, ManifestError> {
    too_large(text)?;
    let mut manifest = default_manifest();
    manifest.nodes.clear();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = raw.trim();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let fail = |path: &str, reason: String| ManifestError::new(Some(line), path, reason);
        let Some((name, cmd)) = content.split_once(':') else {
            return Err(fail(
                "",
                format!("expected `name: command`, found {content:?}"),
            ));
        };
        let (name, cmd) = (name.trim(), cmd.trim());
        validate::process_name("process name", name).map_err(|e| fail("", e.to_string()))?;
        if let Some(first) = seen.insert(name, line) {
            return Err(fail(
                name,
                format!("duplicate process (first on line {first})"),
            ));
        }
        if cmd.is_empty() {
            return Err(fail(name, "the command is empty".to_owned()));
        }
        if cmd.contains('\0') {
            return Err(fail(name, "contains a NUL byte".to_owned()));
        }
        let command = Some(Command::Shell(cmd.to_owned()));
        if name == "release" {
            manifest.release = command;
        } else {
            let mut node = Node::new(NodeKind::for_name(name));
            node.command = command;
            manifest.nodes.insert(name.to_owned(), node);
        }
    }
    if manifest.nodes.is_empty() {
        return Err(ManifestError::new(
            None,
            "",
            "at least one process is needed",
        ));
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests;
