//! Receive: the app's bare repository and the pushed tree.
//!
//! Creates `stacks/<app>/repo.git` with Quarry's hooks, and turns a pushed
//! commit into a tar stream (`git archive`) that feeds the build and the
//! `stacks/<app>/src` checkout. During `pre-receive` the new objects live in
//! git's quarantine directory, so every git call here runs with the object
//! directories the hook was given. May touch: the app's directory, `git`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use tokio::process::Command;

use crate::store::{Store, write_atomic};

/// The pre-receive hook, from `hooks/pre-receive`.
const PRE_RECEIVE: &str = include_str!("../hooks/pre-receive");

/// The git variables that let a process outside the hook see quarantined
/// objects. Only these pass from the hook to the daemon.
pub const QUARANTINE_VARS: &[&str] = &[
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_QUARANTINE_PATH",
];

/// git's "no object" id: the old value of a ref that does not exist yet.
pub const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// The commit `refname` points at, if it exists.
pub async fn ref_value(repo: &Path, refname: &str) -> Option<String> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["rev-parse", "--verify", "--quiet", refname])
        .stdin(Stdio::null())
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Largest pushed tree Quarry unpacks (bytes of tar), unless the operator
/// sets [`MAX_TREE_ENV`].
pub const MAX_TREE_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// The daemon's environment may lower (or raise) the unpacked tree limit, in bytes.
pub const MAX_TREE_ENV: &str = "QUARRY_MAX_TREE_SIZE";

/// Largest push git accepts (`receive.maxInputSize`, bytes of pack), unless
/// the operator sets [`MAX_PUSH_ENV`].
pub const MAX_PUSH_BYTES: u64 = 1024 * 1024 * 1024;

/// The daemon's environment may set the push limit, in bytes.
pub const MAX_PUSH_ENV: &str = "QUARRY_MAX_PUSH_SIZE";

fn limit_from_env(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// The unpacked tree limit in force.
pub fn max_tree_bytes() -> u64 {
    limit_from_env(MAX_TREE_ENV, MAX_TREE_BYTES)
}

/// The push limit in force.
pub fn max_push_bytes() -> u64 {
    limit_from_env(MAX_PUSH_ENV, MAX_PUSH_BYTES)
}

/// Create the app: its directory and a bare repository with Quarry's hooks.
pub fn create_app(store: &Store, app: &str) -> io::Result<()> {
    let dir = store.create_app_dir(app)?;
    let repo = store.repo_dir(app);
    for sub in ["env", "releases", "build", "log"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    if !repo.join("HEAD").is_file() {
        let tmp = dir.join(".repo.git.tmp");
        let _ = fs::remove_dir_all(&tmp);
        let status = std::process::Command::new("git")
            .args(["init", "--bare", "--quiet", "--initial-branch=main"])
            .arg(&tmp)
            .stdin(Stdio::null())
            .status()?;
        if !status.success() {
            return Err(io::Error::other(format!(
                "git init --bare failed: {status}"
            )));
        }
        install_hooks(&tmp)?;
        // Pushes must not go through unless the hook approves, and a failed
        // hook must leave no half-written objects in the repo.
        fs::rename(&tmp, &repo)?;
    } else {
        install_hooks(&repo)?;
    }
    store.set_status(app, crate::store::AppStatus::New)
}

/// (Re)install the hooks; done on creation and at every start so an upgraded
/// Quarry refreshes them.
pub fn install_hooks(repo: &Path) -> io::Result<()> {
    let path = repo.join("hooks").join("pre-receive");
    write_atomic(&path, PRE_RECEIVE.as_bytes(), 0o755)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    // git itself refuses a bigger pack before anything is written or unpacked.
    let status = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["config", "receive.maxInputSize"])
        .arg(max_push_bytes().to_string())
        .stdin(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "git config receive.maxInputSize failed: {status}"
        )))
    }
}

/// Point the bare repo's HEAD at the branch that was pushed, so a clone
/// checks it out.
pub async fn set_head(repo: &Path, branch_ref: &str) -> io::Result<()> {
    let status = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["symbolic-ref", "HEAD", branch_ref])
        .status()
        .await?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other("git symbolic-ref HEAD failed"))
    }
}

/// A pushed tree as a tar, spooled to an unnamed-after-use file beside the
/// app's repo: never held whole in memory.
pub struct Tree {
    file: tempfile::NamedTempFile,
    len: u64,
}

impl Tree {
    /// A reader from the start of the tar, independent of any other.
    pub fn open(&self) -> io::Result<fs::File> {
        self.file.reopen()
    }

    /// Bytes of tar.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Why the pushed tree could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("invalid commit id {0:?}")]
    BadCommit(String),
    #[error("cannot run git archive: {0}")]
    Run(io::Error),
    #[error("cannot read git archive: {0}")]
    Read(io::Error),
    #[error("cannot spool the pushed tree: {0}")]
    Spool(io::Error),
    #[error(
        "the pushed tree is larger than {} MB unpacked; make it smaller (the operator sets the limit with {MAX_TREE_ENV})",
        cap / 1_000_000
    )]
    TooLarge { cap: u64 },
    #[error("git archive {commit} failed: {stderr}")]
    Failed { commit: String, stderr: String },
}

/// `git archive --format=tar <treeish>` (a commit, or `<commit>:<dir>`),
/// read through the quarantine variables in `git_env` and streamed into a
/// file in `spool` with at most `cap` bytes; a bigger tree stops git there.
pub async fn archive(
    repo: &Path,
    commit: &str,
    git_env: &BTreeMap<String, String>,
    spool: &Path,
    cap: u64,
) -> Result<Tree, ArchiveError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ArchiveError::BadCommit(commit.to_owned()));
    }
    let mut cmd = Command::new("git");
    cmd.arg("--git-dir")
        .arg(repo)
        .args(["archive", "--format=tar", commit])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in git_env {
        if QUARANTINE_VARS.contains(&k.as_str()) {
            cmd.env(k, v);
        }
    }
    let mut child = cmd.spawn().map_err(ArchiveError::Run)?;
    let file = tempfile::NamedTempFile::new_in(spool).map_err(ArchiveError::Spool)?;
    let mut out = tokio::fs::File::from_std(file.reopen().map_err(ArchiveError::Spool)?);
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let errors = tokio::spawn(async move {
        let mut text = Vec::new();
        let _ = (&mut stderr).take(4096).read_to_end(&mut text).await;
        // Keep draining so git never blocks on a full pipe.
        let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
        text
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut len: u64 = 0;
    loop {
        let n = stdout.read(&mut buf).await.map_err(ArchiveError::Read)?;
        if n == 0 {
            break;
        }
        len += n as u64;
        if len > cap {
            let _ = child.kill().await;
            return Err(ArchiveError::TooLarge { cap });
        }
        out.write_all(&buf[..n])
            .await
            .map_err(ArchiveError::Spool)?;
    }
    out.flush().await.map_err(ArchiveError::Spool)?;
    let status = child.wait().await.map_err(ArchiveError::Run)?;
    let errors = errors.await.unwrap_or_default();
    if !status.success() {
        return Err(ArchiveError::Failed {
            commit: commit.to_owned(),
            stderr: String::from_utf8_lossy(&errors).trim().to_owned(),
        });
    }
    Ok(Tree { file, len })
}

/// Replace `stacks/<app>/src` with the tree in `tar`, atomically: unpack
/// beside it, then swap.
pub fn unpack_src(store: &Store, app: &str, tree: &Tree) -> io::Result<()> {
    let dir = store.app_dir(app);
    let new = dir.join(".src.new");
    let old = dir.join(".src.old");
    let _ = fs::remove_dir_all(&new);
    let _ = fs::remove_dir_all(&old);
    fs::create_dir_all(&new)?;
    let mut archive = tar::Archive::new(io::BufReader::new(tree.open()?));
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    // tar::Archive::unpack refuses entries escaping `new` (`..`, absolute).
    archive.unpack(&new)?;
    let src = dir.join("src");
    if src.exists() {
        fs::rename(&src, &old)?;
    }
    fs::rename(&new, &src)?;
    let _ = fs::remove_dir_all(&old);
    Ok(())
}

/// Read one file from the pushed tree (`quarry.yml`, `Procfile`, …).
pub fn file_in_tar<R: io::Read>(tar: R, name: &str, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        if path == Path::new(name) && entry.header().entry_type().is_file() {
            if entry.size() > limit {
                return Err(io::Error::other(format!(
                    "{name} is larger than {limit} bytes"
                )));
            }
            let mut buf = Vec::new();
            io::Read::read_to_end(&mut io::Read::take(&mut entry, limit), &mut buf)?;
            return Ok(Some(buf));
        }
    }
    Ok(None)
}
