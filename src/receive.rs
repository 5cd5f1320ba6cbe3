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

/// Largest pushed tree Quarry unpacks (bytes of tar).
pub const MAX_TREE_BYTES: usize = 2 * 1024 * 1024 * 1024;

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
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
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

/// `git archive --format=tar <commit>` of the pushed commit, read through
/// the quarantine variables in `git_env`.
pub async fn archive(
    repo: &Path,
    commit: &str,
    git_env: &BTreeMap<String, String>,
) -> Result<Vec<u8>, String> {
    if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("invalid commit id {commit:?}"));
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
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("cannot run git archive: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git archive {commit} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if out.stdout.len() > MAX_TREE_BYTES {
        return Err("the pushed tree is larger than 2 GiB".into());
    }
    Ok(out.stdout)
}

/// Replace `stacks/<app>/src` with the tree in `tar`, atomically: unpack
/// beside it, then swap.
pub fn unpack_src(store: &Store, app: &str, tar: &[u8]) -> io::Result<()> {
    let dir = store.app_dir(app);
    let new = dir.join(".src.new");
    let old = dir.join(".src.old");
    let _ = fs::remove_dir_all(&new);
    let _ = fs::remove_dir_all(&old);
    fs::create_dir_all(&new)?;
    let mut archive = tar::Archive::new(tar);
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
pub fn file_in_tar(tar: &[u8], name: &str, limit: u64) -> io::Result<Option<Vec<u8>>> {
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
            io::Read::read_to_end(&mut entry, &mut buf)?;
            return Ok(Some(buf));
        }
    }
    Ok(None)
}
