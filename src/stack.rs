//! Stack: what an app is made of, read from the pushed tree.
//!
//! quarry.yml, else a Procfile, else a Dockerfile alone (one `web` node)
//! gives the app's [`Manifest`]; the manifest text is kept on the release so
//! rollbacks and config changes re-read exactly what was pushed. A tree with
//! no Dockerfile is built by a buildpack (`buildpack`), whose
//! default process types may then stand in for a Procfile. Pure apart from
//! reading the tree it is given.

use std::fmt;

use crate::manifest::{self, Command, Manifest};
use crate::receive::file_in_tar;
use crate::stackimage::ENTRYPOINT;
use crate::store::{ManifestSource, Release};

/// The manifest of one release and the file it came from.
#[derive(Debug, Clone)]
pub struct Stack {
    /// `None` for a Dockerfile alone.
    pub source: Option<ManifestSource>,
    pub manifest: Manifest,
    /// Whether the pushed tree has a Dockerfile in its root (false for a
    /// stack read back from a release).
    pub dockerfile: bool,
}

impl Stack {
    /// One line for the pusher: where the stack came from and its parts.
    pub fn describe(&self) -> String {
        let from = match &self.source {
            Some(s) => s.file.as_str(),
            None if self.dockerfile => "Dockerfile",
            None => "the buildpack",
        };
        let mut parts: Vec<String> = self
            .manifest
            .services
            .keys()
            .map(|s| format!("service {s}"))
            .collect();
        parts.extend(
            self.manifest
                .nodes
                .iter()
                .map(|(name, n)| format!("{} {name} x{}", n.kind, n.scale)),
        );
        format!("stack from {from}: {}", parts.join(", "))
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
pub fn detect(tree: &crate::receive::Tree) -> Result<Stack, StackError> {
    let read = |name: &str| {
        tree.open()
            .and_then(|f| {
                file_in_tar(
                    std::io::BufReader::new(f),
                    name,
                    manifest::MAX_MANIFEST_LEN as u64,
                )
            })
            .map_err(|e| StackError(format!("{name}: {e}")))
    };
    let text = |name: &str, bytes: Vec<u8>| {
        String::from_utf8(bytes).map_err(|_| StackError(format!("{name}: not UTF-8 text")))
    };
    let has_dockerfile = read("Dockerfile")?.is_some();
    let source = if let Some(bytes) = read("quarry.yml")? {
        Some(ManifestSource {
            file: "quarry.yml".into(),
            text: text("quarry.yml", bytes)?,
            buildpack: None,
        })
    } else if let Some(bytes) = read("Procfile")? {
        Some(ManifestSource {
            file: "Procfile".into(),
            text: text("Procfile", bytes)?,
            buildpack: None,
        })
    } else {
        None
    };
    let manifest = parse(source.as_ref())?;
    Ok(Stack {
        source,
        manifest,
        dockerfile: has_dockerfile,
    })
}

/// The stack of a buildpack build, from the source it settled on.
pub fn from_source(source: ManifestSource) -> Result<Stack, StackError> {
    let manifest = parse(Some(&source))?;
    Ok(Stack {
        source: Some(source),
        manifest,
        dockerfile: false,
    })
}

fn parse(source: Option<&ManifestSource>) -> Result<Manifest, StackError> {
    let mut manifest = match source {
        None => manifest::default_manifest(),
        Some(s) if s.file == "quarry.yml" => {
            manifest::parse_manifest(&s.file, &s.text).map_err(|e| StackError(e.to_string()))?
        }
        Some(s) => {
            manifest::parse_procfile(&s.file, &s.text).map_err(|e| StackError(e.to_string()))?
        }
    };
    if source.is_some_and(|s| s.buildpack.is_some()) {
        through_entrypoint(&mut manifest);
    }
    Ok(manifest)
}

/// The stack of an existing release (for config changes, restarts and
/// rollbacks), re-read from the manifest text the release recorded.
pub fn from_release(release: &Release) -> Result<Stack, StackError> {
    let manifest = parse(release.manifest.as_ref())
        .map_err(|e| StackError(format!("release v{}: {e}", release.number)))?;
    Ok(Stack {
        source: release.manifest.clone(),
        manifest,
        dockerfile: false,
    })
}

/// Buildpack images start processes through the stack's entrypoint, which
/// sources `.profile.d` (PATH of the venv, node_modules/.bin, …).
pub fn through_entrypoint(manifest: &mut Manifest) {
    let wrap = |c: &mut Option<Command>| {
        if let Some(cmd) = c.take() {
            let mut argv = vec![ENTRYPOINT.to_string()];
            match cmd {
                Command::Shell(s) => argv.extend(["/bin/sh".into(), "-c".into(), s]),
                Command::Exec(a) => argv.extend(a),
            }
            *c = Some(Command::Exec(argv));
        }
    };
    for node in manifest.nodes.values_mut() {
        wrap(&mut node.command);
    }
    wrap(&mut manifest.release);
}
