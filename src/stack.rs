//! Stack: what an app is made of, read from the pushed tree.
//!
//! quarry.yml, else a Procfile, else a Dockerfile alone (one `web` node)
//! decides the app's nodes. The result is plain data the pipeline runs
//! from. Pure apart from reading the tree it is given.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::launch::Command;
use crate::receive::file_in_tar;
use crate::store::ManifestSource;

/// One node to run: `web` nodes are routed and health-checked, others are workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub name: String,
    pub web: bool,
    pub scale: u32,
    pub command: Option<Command>,
    /// Hard memory limit in MiB.
    pub memory: Option<u32>,
    /// Domains besides `<app>.<root domain>`.
    pub domains: Vec<String>,
    /// How long a new container has to answer before the deploy fails.
    pub ready_timeout: Duration,
}

/// The whole stack of one release.
#[derive(Debug, Clone)]
pub struct Stack {
    /// The file it was read from, kept on the release.
    pub source: Option<ManifestSource>,
    /// Environment from the manifest, below config vars.
    pub env: BTreeMap<String, String>,
    pub nodes: Vec<NodeSpec>,
    /// Seconds an old container gets between SIGTERM and SIGKILL.
    pub drain_seconds: u32,
}

impl Stack {
    /// One line for the pusher: where the stack came from and its nodes.
    pub fn describe(&self) -> String {
        let from = self
            .source
            .as_ref()
            .map_or("Dockerfile", |s| s.file.as_str());
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{} x{}", n.name, n.scale))
            .collect();
        format!("stack from {from}: {}", nodes.join(", "))
    }
}

/// Why a pushed tree cannot be deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackError(pub String);

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Read the stack from the pushed tree (a tar).
pub fn detect(tree: &[u8]) -> Result<Stack, StackError> {
    let read = |name: &str| {
        file_in_tar(tree, name, 1024 * 1024).map_err(|e| StackError(format!("{name}: {e}")))
    };
    if read("Dockerfile")?.is_none() {
        return Err(StackError(
            "no Dockerfile in the repository root: add one (buildpack builds are not available yet)".into(),
        ));
    }
    Ok(Stack {
        source: None,
        env: BTreeMap::new(),
        nodes: vec![default_web()],
        drain_seconds: 10,
    })
}

fn default_web() -> NodeSpec {
    NodeSpec {
        name: "web".into(),
        web: true,
        scale: 1,
        command: None,
        memory: None,
        domains: Vec::new(),
        ready_timeout: Duration::from_secs(60),
    }
}

/// The stack of an existing release (for config changes, restarts and
/// rollbacks), re-read from the manifest text the release recorded.
pub fn from_release(release: &crate::store::Release) -> Result<Stack, StackError> {
    match &release.manifest {
        None => Ok(Stack {
            source: None,
            env: BTreeMap::new(),
            nodes: vec![default_web()],
            drain_seconds: 10,
        }),
        Some(source) => Err(StackError(format!(
            "release v{} was made from {}, which this version cannot read",
            release.number, source.file
        ))),
    }
}
