//! The fleet's hosts file: every server's name → address, kept between
//! `# quarry hosts begin` and `# quarry hosts end` in `/etc/hosts` of each SSH
//! server (rewritten atomically over its session when servers join or
//! leave, when the daemon starts and when a server answers again after it
//! was unknown), and on the HQ only in the file `QUARRY_HOSTS_FILE` names.
//!
//! [`render`] and [`splice`] are pure (golden-tested). On a server the file
//! is `$QUARRY_HOSTS_FILE` if its sshd sets that for the session, else
//! `/etc/hosts`.
//! May touch: the HQ file named by `QUARRY_HOSTS_FILE`, the servers' hosts
//! files through their links.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;

pub const BEGIN: &str = "# quarry hosts begin";
pub const END: &str = "# quarry hosts end";

/// Why a hosts file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("writing the hosts file exited {status}: {said}")]
    Exit { status: u32, said: String },
    #[error(transparent)]
    Ssh(#[from] crate::remote::SshError),
    #[error("{}: larger than 4 MiB", .path.display())]
    TooLarge { path: PathBuf },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One line of the block.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub address: String,
}

/// The servers the block names: all but the HQ's own `local` (its address
/// is where containers publish, often loopback, not where others reach it).
pub fn entries(servers: &[crate::fleet::Server]) -> Vec<Entry> {
    let mut all: Vec<Entry> = servers
        .iter()
        .filter(|s| s.name != crate::fleet::LOCAL)
        .map(|s| Entry {
            name: s.name.clone(),
            address: s.address.clone(),
        })
        .collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}

/// The marked block, ending with a newline.
pub fn render(entries: &[Entry]) -> String {
    let mut text = format!("{BEGIN}\n");
    for e in entries {
        text.push_str(&format!("{}\t{}\n", e.address, e.name));
    }
    text.push_str(END);
    text.push('\n');
    text
}

/// `existing` with its marked block replaced by `block` (appended when it
/// has none); every other line kept as it was.
pub fn splice(existing: &str, block: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    let mut placed = false;
    for line in existing.lines() {
        match (inside, line.trim_end()) {
            (false, BEGIN) => {
                inside = true;
                if !placed {
                    out.push_str(block);
                    placed = true;
                }
            }
            (true, END) => inside = false,
            (true, _) => {}
            (false, _) => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if !placed {
        out.push_str(block);
    }
    out
}

/// Rewrites the file on a server: the block comes on stdin; the rest of the
/// file is kept; the new file replaces the old one with a rename. It is the
/// exec request's command line, which sshd gives to the user's shell.
const REMOTE_WRITE: &str = r##"set -e
f="${QUARRY_HOSTS_FILE:-/etc/hosts}"
t="$f.quarry-tmp.$$"
block=$(cat)
{ if [ -f "$f" ]; then awk '$0 == "# quarry hosts begin" {s=1; next} $0 == "# quarry hosts end" {s=0; next} !s' "$f"; fi; printf '%s\n' "$block"; } > "$t"
chmod 644 "$t"
mv -f "$t" "$f"
"##;

/// Write the block on one server over its session.
pub async fn write_remote(link: &crate::remote::Link, block: &str) -> Result<(), HostsError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let status = link.exec(REMOTE_WRITE, block.as_bytes(), &tx).await;
    drop(tx);
    let mut said = Vec::new();
    while let Ok(chunk) = rx.try_recv() {
        said.extend_from_slice(&chunk);
    }
    match status {
        Ok(0) => Ok(()),
        Ok(status) => Err(HostsError::Exit {
            status,
            said: String::from_utf8_lossy(&said).trim().to_string(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Write the block into the HQ's file at `path` (temp file and rename).
pub fn write_local(path: &Path, block: &str) -> Result<(), HostsError> {
    const MAX: u64 = 4 * 1024 * 1024;
    let io = |source| HostsError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Read no further than the limit: the operator's file, but bounded.
    let existing = match std::fs::File::open(path) {
        Ok(f) => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX + 1), &mut bytes)
                .map_err(io)?;
            if bytes.len() as u64 > MAX {
                return Err(HostsError::TooLarge {
                    path: path.to_path_buf(),
                });
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(e)),
    };
    crate::store::write_atomic(path, splice(&existing, block).as_bytes(), 0o644).map_err(io)
}

/// The HQ's hosts file, when the operator allows one.
pub fn local_file() -> Option<std::path::PathBuf> {
    std::env::var_os("QUARRY_HOSTS_FILE")
        .filter(|p| !p.is_empty())
        .map(Into::into)
}

/// Bring every SSH server's block (and the HQ's, if allowed) up to date;
/// returns one warning per place that could not be written.
pub async fn sync(fleet: &crate::fleet::Fleet) -> Vec<String> {
    let servers = fleet.list();
    let block = render(&entries(&servers));
    let mut warnings = Vec::new();
    for s in servers.iter().filter(|s| s.ssh.is_some()) {
        let Some(link) = fleet.link(&s.name) else {
            continue;
        };
        if let Err(e) = write_remote(&link, &block).await {
            warnings.push(format!("hosts file on {}: {e}", s.name));
        }
    }
    if let Some(path) = local_file()
        && let Err(e) = write_local(&path, &block)
    {
        warnings.push(format!("hosts file on the HQ: {e}"));
    }
    warnings
}

/// [`sync`] for the daemon's own reasons (its start, a server back from
/// unknown): warnings go to its log.
pub async fn sync_logged(fleet: &crate::fleet::Fleet, why: &str) {
    let warnings = sync(fleet).await;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(warnings = warnings.len(), "hosts block rewritten ({why})");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> String {
        render(&[
            Entry {
                name: "db1".into(),
                address: "10.0.0.5".into(),
            },
            Entry {
                name: "web".into(),
                address: "10.0.0.6".into(),
            },
        ])
    }

    #[test]
    fn the_block_is_marked_lines_of_address_and_name() {
        assert_eq!(
            two(),
            "# quarry hosts begin\n10.0.0.5\tdb1\n10.0.0.6\tweb\n# quarry hosts end\n"
        );
    }

    #[test]
    fn splicing_replaces_the_block_in_place_and_keeps_the_rest() {
        let existing = "127.0.0.1\tlocalhost\n# quarry hosts begin\n10.9.9.9\told\n# quarry hosts end\n::1\tip6-localhost\n";
        assert_eq!(
            splice(existing, &two()),
            "127.0.0.1\tlocalhost\n# quarry hosts begin\n10.0.0.5\tdb1\n10.0.0.6\tweb\n# quarry hosts end\n::1\tip6-localhost\n"
        );
        assert_eq!(
            splice("127.0.0.1\tlocalhost", &render(&[])),
            "127.0.0.1\tlocalhost\n# quarry hosts begin\n# quarry hosts end\n"
        );
    }
}
