//! Provisioners: shell scripts the operator stores (`provisioners:add`) and
//! Quarry runs on SSH servers (`sh -s`, the script on stdin) over the
//! server's session after it joins, or again with `servers:provision`.
//!
//! Scripts live in `<data>/provisioners/<name>.sh` (at most [`MAX_SCRIPT`]
//! bytes); each run's output goes to the caller and to
//! `servers/<server>/provision/<name>.log` (its last [`MAX_LOG`] bytes);
//! the sha1 and outcome of the last run are kept on the server's record.
//! May touch: `<data>/provisioners/`, `servers/<name>/provision/`, a link.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha1::Digest;
use tokio::sync::mpsc;

use crate::remote::{Link, SshError};

/// The longest script accepted.
pub const MAX_SCRIPT: usize = 1024 * 1024;
/// The most of a run's output kept in its log.
pub const MAX_LOG: usize = 256 * 1024;

/// The last run of one provisioner on one server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ran {
    pub sha1: String,
    pub ok: bool,
    /// The script's exit status (none when the session failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<u32>,
    pub at: String,
}

/// A stored provisioner.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Provisioner {
    pub name: String,
    pub sha1: String,
    pub bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(
        "provisioner name {0:?}: use 1-63 lower-case letters, digits and '-', starting with a letter or digit"
    )]
    BadName(String),
    #[error("no provisioner named {0}")]
    Missing(String),
    #[error("provisioner {0}: the script is empty")]
    Empty(String),
    #[error("provisioner {name}: the script is longer than {MAX_SCRIPT} bytes")]
    TooLong { name: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("provisioner {name} on server {server}: {source}")]
    Session {
        name: String,
        server: String,
        source: Box<SshError>,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ProvisionError + '_ {
    move |source| ProvisionError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn check_name(name: &str) -> Result<(), ProvisionError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(ProvisionError::BadName(name.to_string()))
    }
}

pub fn sha1_hex(bytes: &[u8]) -> String {
    sha1::Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn dir(root: &Path) -> PathBuf {
    root.join("provisioners")
}

fn script_path(root: &Path, name: &str) -> PathBuf {
    dir(root).join(format!("{name}.sh"))
}

/// Store (or replace) a script; returns its sha1.
pub fn add(root: &Path, name: &str, script: &[u8]) -> Result<String, ProvisionError> {
    check_name(name)?;
    if script.is_empty() {
        return Err(ProvisionError::Empty(name.to_string()));
    }
    if script.len() > MAX_SCRIPT {
        return Err(ProvisionError::TooLong {
            name: name.to_string(),
        });
    }
    let d = dir(root);
    std::fs::create_dir_all(&d).map_err(io(&d))?;
    let path = script_path(root, name);
    crate::store::write_atomic(&path, script, 0o600).map_err(io(&path))?;
    Ok(sha1_hex(script))
}

/// The script of `name`, read no further than [`MAX_SCRIPT`].
pub fn read(root: &Path, name: &str) -> Result<Vec<u8>, ProvisionError> {
    check_name(name)?;
    let path = script_path(root, name);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ProvisionError::Missing(name.to_string()));
        }
        Err(e) => return Err(io(&path)(e)),
    };
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_SCRIPT as u64 + 1),
        &mut bytes,
    )
    .map_err(io(&path))?;
    if bytes.len() > MAX_SCRIPT {
        return Err(ProvisionError::TooLong {
            name: name.to_string(),
        });
    }
    Ok(bytes)
}

/// Every stored provisioner, by name.
pub fn list(root: &Path) -> Result<Vec<Provisioner>, ProvisionError> {
    let d = dir(root);
    let entries = match std::fs::read_dir(&d) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&d)(e)),
    };
    let mut all = Vec::new();
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(name) = file.strip_suffix(".sh") else {
            continue;
        };
        if check_name(name).is_err() {
            continue;
        }
        let script = read(root, name)?;
        all.push(Provisioner {
            name: name.to_string(),
            sha1: sha1_hex(&script),
            bytes: script.len(),
        });
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

/// Forget a script; false when there was none.
pub fn remove(root: &Path, name: &str) -> Result<bool, ProvisionError> {
    check_name(name)?;
    let path = script_path(root, name);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io(&path)(e)),
    }
}

/// Why a server is held back: the first provisioner whose last run failed.
pub fn failed(provisioned: &BTreeMap<String, Ran>) -> Option<String> {
    provisioned
        .iter()
        .find(|(_, r)| !r.ok)
        .map(|(name, _)| format!("provisioner {name} failed"))
}

/// Which of `wanted` (all stored ones when empty) to run on a server that
/// ran `done`: named ones always; otherwise those never run there, changed
/// since, or failed last time.
pub fn due(stored: &[Provisioner], done: &BTreeMap<String, Ran>, named: &[String]) -> Vec<String> {
    if !named.is_empty() {
        return named.to_vec();
    }
    stored
        .iter()
        .filter(|p| done.get(&p.name).is_none_or(|r| !r.ok || r.sha1 != p.sha1))
        .map(|p| p.name.clone())
        .collect()
}

/// The log of a provisioner's runs on a server.
pub fn log_path(root: &Path, server: &str, name: &str) -> PathBuf {
    root.join("servers")
        .join(server)
        .join("provision")
        .join(format!("{name}.log"))
}

/// Run `script` on the server behind `link` (`sh -s`), its output sent to
/// `output` as it comes and kept in the log. A script that exits non-zero
/// is a run with `ok: false`; a session that fails is an error.
pub async fn run(
    link: &Link,
    root: &Path,
    server: &str,
    name: &str,
    script: &[u8],
    output: mpsc::UnboundedSender<Bytes>,
) -> Result<Ran, ProvisionError> {
    let path = log_path(root, server, name);
    let parent = path.parent().expect("log in a dir");
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let keep = async {
        let mut kept: Vec<u8> = Vec::new();
        while let Some(chunk) = rx.recv().await {
            kept.extend_from_slice(&chunk);
            if kept.len() > 2 * MAX_LOG {
                kept.drain(..kept.len() - MAX_LOG);
            }
            let _ = output.send(chunk);
        }
        if kept.len() > MAX_LOG {
            kept.drain(..kept.len() - MAX_LOG);
        }
        kept
    };
    let exec = async {
        let r = link.exec("sh -s", script, &tx).await;
        drop(tx);
        r
    };
    let (status, kept) = tokio::join!(exec, keep);
    let mut log = std::fs::File::create(&path).map_err(io(&path))?;
    log.write_all(&kept).map_err(io(&path))?;
    let status = status.map_err(|source| {
        let _ = writeln!(log, "quarry: {source}");
        ProvisionError::Session {
            name: name.to_string(),
            server: server.to_string(),
            source: Box::new(source),
        }
    })?;
    let _ = writeln!(log, "quarry: exit status {status}");
    Ok(Ran {
        sha1: sha1_hex(script),
        ok: status == 0,
        exit: Some(status),
        at: crate::store::now_rfc3339(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran(sha1: &str, ok: bool) -> Ran {
        Ran {
            sha1: sha1.into(),
            ok,
            exit: Some(if ok { 0 } else { 1 }),
            at: String::new(),
        }
    }

    #[test]
    fn sha1_is_the_usual_hex() {
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn changed_failed_and_new_scripts_are_due_named_ones_always() {
        let stored = ["a", "b", "c", "d"].map(|n| Provisioner {
            name: n.into(),
            sha1: format!("{n}1"),
            bytes: 1,
        });
        let done = BTreeMap::from([
            ("a".to_string(), ran("a1", true)),
            ("b".to_string(), ran("old", true)),
            ("c".to_string(), ran("c1", false)),
        ]);
        assert_eq!(due(&stored, &done, &[]), vec!["b", "c", "d"]);
        assert_eq!(due(&stored, &done, &["a".to_string()]), vec!["a"]);
    }

    #[test]
    fn names_are_plain() {
        assert!(check_name("docker-setup").is_ok());
        assert_eq!(
            check_name("../x").unwrap_err().to_string(),
            "provisioner name \"../x\": use 1-63 lower-case letters, digits and '-', starting with a letter or digit"
        );
    }
}
