//! Running provisioners on a server of the fleet over its SSH session: the
//! server takes no containers meanwhile (unknown, its Docker bridge held)
//! and is running again only when every one succeeded; each run's sha1 and
//! outcome land on its record, its output goes to the caller as it comes
//! and to its log ([`crate::provision::run`]).
//! May touch: the server's session and record, `servers/<name>/provision/`.

use std::path::PathBuf;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Fleet, FleetError, ServerState};
use crate::progress::Progress;
use crate::provision::{self, ProvisionError, Ran};
use crate::store::Store;

/// What [`provision`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// No provisioner was named: nothing ran, the state is unchanged.
    Nothing,
    /// Every one ran and succeeded: the server takes containers.
    Done,
}

/// Why a server is not provisioned.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("server {server} is not reached over SSH: provisioners need servers:add --ssh")]
    NotSsh { server: String },
    #[error(transparent)]
    Script(#[from] ProvisionError),
    /// The session failed under the script.
    #[error(
        "{source}; the server stays unknown and takes no containers; the output so far is in {}",
        .log.display()
    )]
    Broken {
        source: ProvisionError,
        log: PathBuf,
        last_line: Option<String>,
    },
    /// The script exited non-zero.
    #[error(
        "provisioner {name} failed on server {server} (exit status {}); the server stays unknown and takes no containers; its output is in {}; fix the script or the server and run servers:provision {server}",
        exit_text(*.exit),
        .log.display()
    )]
    Failed {
        name: String,
        server: String,
        exit: Option<u32>,
        log: PathBuf,
        last_line: Option<String>,
    },
    #[error(transparent)]
    Fleet(#[from] FleetError),
}

fn exit_text(exit: Option<u32>) -> String {
    exit.map_or("-".to_string(), |c| c.to_string())
}

impl ApplyError {
    /// One line for a provider's server that was given back because of it:
    /// the script's last line and where its log is kept.
    pub fn given_back(&self, machine: &str) -> String {
        match self {
            ApplyError::Failed {
                name,
                server,
                exit,
                log,
                last_line,
            } => format!(
                "provisioner {name} failed on server {server} (exit status {}): {}; machine {machine} was given back; its output is in {}",
                exit_text(*exit),
                last_line.as_deref().unwrap_or("(no output)"),
                log.display()
            ),
            ApplyError::Broken {
                source,
                log,
                last_line,
            } => format!(
                "{source} (last line: {}); machine {machine} was given back; the output so far is in {}",
                last_line.as_deref().unwrap_or("(no output)"),
                log.display()
            ),
            ApplyError::NotSsh { .. } | ApplyError::Script(_) | ApplyError::Fleet(_) => {
                format!("{self}; machine {machine} was given back")
            }
        }
    }
}

/// The last non-empty line of `tail`, cut to 300 characters.
fn last_line(tail: &[u8]) -> Option<String> {
    String::from_utf8_lossy(tail)
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.chars().take(300).collect())
}

/// Run `names` on `server` in order, each announced and its output sent
/// to `output` as it comes.
pub async fn provision(
    store: &Store,
    fleet: &Fleet,
    server: &str,
    names: &[String],
    output: mpsc::UnboundedSender<Bytes>,
) -> Result<Applied, ApplyError> {
    let link = fleet.link(server).ok_or_else(|| ApplyError::NotSsh {
        server: server.to_string(),
    })?;
    let scripts = names
        .iter()
        .map(|n| provision::read(store.root(), n).map(|s| (n.clone(), s)))
        .collect::<Result<Vec<_>, _>>()?;
    if scripts.is_empty() {
        return Ok(Applied::Nothing);
    }
    link.hold(Some("being provisioned".into()));
    if let Err(e) = fleet.set_state(store, server, ServerState::Unknown) {
        tracing::warn!("{e}");
    }
    for (name, script) in scripts {
        let _ = output.send(Bytes::from(format!(
            "-----> Provisioning {server} with {name}\n"
        )));
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        let run = provision::run(&link, store.root(), server, &name, &script, tx);
        let relay = async {
            let mut tail: Vec<u8> = Vec::new();
            while let Some(chunk) = rx.recv().await {
                tail.extend_from_slice(&chunk);
                if tail.len() > 8192 {
                    tail.drain(..tail.len() - 4096);
                }
                let _ = output.send(chunk);
            }
            tail
        };
        let (ran, tail) = tokio::join!(run, relay);
        let log = provision::log_path(store.root(), server, &name);
        let (ran, broken) = match ran {
            Ok(r) => (r, None),
            Err(e) => (
                Ran {
                    sha1: provision::sha1_hex(&script),
                    ok: false,
                    exit: None,
                    at: crate::store::now_rfc3339(),
                },
                Some(e),
            ),
        };
        let (ok, exit) = (ran.ok, ran.exit);
        fleet.update(store, server, |s| {
            s.provisioned.insert(name.clone(), ran);
        })?;
        if !ok {
            link.hold(Some(format!("provisioner {name} failed")));
            let last_line = last_line(&tail);
            return Err(match broken {
                Some(source) => ApplyError::Broken {
                    source,
                    log,
                    last_line,
                },
                None => ApplyError::Failed {
                    name,
                    server: server.to_string(),
                    exit,
                    log,
                    last_line,
                },
            });
        }
    }
    link.hold(None);
    fleet.set_state(store, server, ServerState::Running)?;
    Ok(Applied::Done)
}

/// [`provision`] with its output as detail lines of `p` (a push's progress).
pub async fn provision_reporting(
    store: &Store,
    fleet: &Fleet,
    server: &str,
    names: &[String],
    p: &Progress,
) -> Result<Applied, ApplyError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let run = provision(store, fleet, server, names, tx);
    let relay = async {
        let mut partial: Vec<u8> = Vec::new();
        while let Some(chunk) = rx.recv().await {
            partial.extend_from_slice(&chunk);
            while let Some(end) = partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = partial.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                match line.trim_end().strip_prefix("-----> ") {
                    Some(step) => p.step(step),
                    None => p.detail(line.trim_end()),
                }
            }
        }
        if !partial.is_empty() {
            p.detail(String::from_utf8_lossy(&partial).trim_end());
        }
    };
    let (applied, ()) = tokio::join!(run, relay);
    applied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_line_is_the_last_one_with_words() {
        assert_eq!(
            last_line(b"step one\ndisk too small  \n\n").as_deref(),
            Some("disk too small")
        );
        assert_eq!(last_line(b"\n \n"), None);
    }

    #[test]
    fn a_given_back_machine_is_named_with_the_scripts_last_line() {
        let e = ApplyError::Failed {
            name: "base".into(),
            server: "auto-1".into(),
            exit: Some(4),
            log: "/d/servers/auto-1/provision/base.log".into(),
            last_line: Some("disk too small".into()),
        };
        assert_eq!(
            e.given_back("m-7"),
            "provisioner base failed on server auto-1 (exit status 4): disk too small; machine m-7 was given back; its output is in /d/servers/auto-1/provision/base.log"
        );
    }
}
