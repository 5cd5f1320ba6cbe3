//! The filesystem db: every piece of Quarry's state, as small files under one
//! data directory that `ls` and `cat` can read.
//!
//! Layout (see ARCHITECTURE.md):
//! ```text
//! config.yml, instance, ssh_host_ed25519_key, serve.json
//! keys/<name>.json
//! env/<KEY>
//! stacks/<app>/{repo.git, src, env/<KEY>, releases/v<N>.json, build/plan.json, status, log/}
//! ```
//! Every write goes through [`write_atomic`] (temp file, fsync, rename, fsync
//! of the directory) so a crash never leaves a torn file. This module touches
//! only the data directory; it knows nothing of Docker, nginx or SSH.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::validate;

/// Write `bytes` to `path` atomically with file mode `mode`: a reader sees the
/// old content or the new one, never a mix, even across a crash.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other(format!("{} has no parent directory", path.display())))?;
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    fs::File::open(dir)?.sync_all()
}

/// Serialize `value` as pretty JSON and write it atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T, mode: u32) -> io::Result<()> {
    let mut text = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    text.push(b'\n');
    write_atomic(path, &text, mode)
}

/// Read a JSON file; `Ok(None)` when it does not exist.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including keys and servers.
    Admin,
    /// Push and manage only the apps it is granted.
    Deployer,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Admin => "admin",
            Role::Deployer => "deployer",
        })
    }
}

/// One authorized public key (`keys/<name>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub name: String,
    pub role: Role,
    /// Apps a deployer may push and manage; ignored for admins.
    #[serde(default)]
    pub apps: Vec<String>,
    /// Whether a deployer may create apps.
    #[serde(default)]
    pub create: bool,
    /// The key in OpenSSH one-line form (`ssh-ed25519 AAAA… comment`).
    pub public_key: String,
    /// `SHA256:…`, what the SSH endpoint compares against.
    pub fingerprint: String,
    pub added: String,
}

impl KeyRecord {
    /// Whether this key may push to and manage `app`.
    pub fn may_manage(&self, app: &str) -> bool {
        self.role == Role::Admin || self.apps.iter().any(|a| a == app)
    }
}

/// Why a public key line was refused.
pub fn parse_public_key(line: &str) -> Result<(String, String), String> {
    let line = line.trim();
    if line.is_empty() {
        return Err("no public key given on standard input".into());
    }
    if line.len() > validate::MAX_KEY_LEN {
        return Err("public key is longer than 16 KiB".into());
    }
    if line.lines().count() != 1 {
        return Err("give exactly one public key line".into());
    }
    let key = russh::keys::ssh_key::PublicKey::from_openssh(line)
        .map_err(|e| format!("not an OpenSSH public key: {e}"))?;
    use russh::keys::ssh_key::Algorithm;
    match key.algorithm() {
        Algorithm::Ed25519 | Algorithm::Rsa { .. } | Algorithm::Ecdsa { .. } => {}
        other => {
            return Err(format!(
                "unsupported key type {other}: use ed25519, ecdsa or rsa"
            ));
        }
    }
    let fingerprint = key
        .fingerprint(russh::keys::ssh_key::HashAlg::Sha256)
        .to_string();
    let canonical = key.to_openssh().map_err(|e| e.to_string())?;
    Ok((canonical, fingerprint))
}

/// Folders of the data directory that hold state only Quarry may read.
const PRIVATE_DIRS: [&str; 6] = ["keys", "env", "stacks", "servers", "grid", "log"];

/// The data directory's own mode (see [`Store::open`]).
pub const ROOT_MODE: u32 = 0o711;

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    // A link in the data dir is not ours to change the target of.
    if meta.is_dir() && meta.permissions().mode() & 0o777 != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

/// The data directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Open (and create when missing) the data directory at `root`, and
    /// (again at every open, for instances made before) keep its modes:
    /// everything holding sources, secrets or keys is owner-only.
    pub fn open(root: &Path) -> io::Result<Store> {
        for dir in PRIVATE_DIRS {
            fs::create_dir_all(root.join(dir))?;
        }
        let root = root.canonicalize()?;
        let store = Store { root };
        store.secure_modes()?;
        Ok(store)
    }

    /// The root is 0711: others may pass through it but not list it, as
    /// nginx's workers (an unprivileged user) must to reach their temp files
    /// under `nginx/`; every folder below it that holds state is 0700, and
    /// so is every app's folder.
    fn secure_modes(&self) -> io::Result<()> {
        set_mode(&self.root, ROOT_MODE)?;
        for dir in PRIVATE_DIRS {
            set_mode(&self.root.join(dir), 0o700)?;
        }
        for entry in fs::read_dir(self.root.join("stacks"))? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                set_mode(&entry.path(), 0o700)?;
            }
        }
        Ok(())
    }

    /// Make `stacks/<app>` (owner-only) if it is missing.
    pub fn create_app_dir(&self, app: &str) -> io::Result<PathBuf> {
        let dir = self.app_dir(app);
        fs::create_dir_all(&dir)?;
        set_mode(&dir, 0o700)?;
        Ok(dir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A random id of this data directory, written once. Containers carry it as
    /// the `quarry.instance` label so two Quarry instances sharing one Docker
    /// engine never touch each other's containers.
    pub fn instance_id(&self) -> io::Result<String> {
        let path = self.root.join("instance");
        match fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            _ => {
                let id: String = (0..12)
                    .map(|_| char::from(b"0123456789abcdef"[rand::random_range(0..16)]))
                    .collect();
                write_atomic(&path, format!("{id}\n").as_bytes(), 0o644)?;
                Ok(id)
            }
        }
    }

    // ----- keys -----------------------------------------------------------

    pub fn keys(&self) -> io::Result<Vec<KeyRecord>> {
        let mut keys = Vec::new();
        for entry in fs::read_dir(self.root.join("keys"))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json")
                && let Some(k) = read_json::<KeyRecord>(&path)?
            {
                keys.push(k);
            }
        }
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(keys)
    }

    pub fn key_by_fingerprint(&self, fingerprint: &str) -> io::Result<Option<KeyRecord>> {
        Ok(self
            .keys()?
            .into_iter()
            .find(|k| k.fingerprint == fingerprint))
    }

    /// Add a key; refuses a name or a key that is already present.
    pub fn add_key(&self, record: &KeyRecord) -> Result<(), String> {
        validate::key_name(&record.name).map_err(|e| e.to_string())?;
        let existing = self.keys().map_err(|e| e.to_string())?;
        if existing.iter().any(|k| k.name == record.name) {
            return Err(format!("a key named {} exists already", record.name));
        }
        if let Some(k) = existing
            .iter()
            .find(|k| k.fingerprint == record.fingerprint)
        {
            return Err(format!("this key is registered already as {}", k.name));
        }
        write_json(&self.key_path(&record.name), record, 0o600).map_err(|e| e.to_string())
    }

    pub fn remove_key(&self, name: &str) -> io::Result<bool> {
        match fs::remove_file(self.key_path(name)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn key_path(&self, name: &str) -> PathBuf {
        self.root.join("keys").join(format!("{name}.json"))
    }

    // ----- apps -----------------------------------------------------------

    /// `stacks/<app>`; `app` must have been validated.
    pub fn app_dir(&self, app: &str) -> PathBuf {
        debug_assert!(validate::app_name(app).is_ok());
        self.root.join("stacks").join(app)
    }

    pub fn repo_dir(&self, app: &str) -> PathBuf {
        self.app_dir(app).join("repo.git")
    }

    pub fn app_exists(&self, app: &str) -> bool {
        self.repo_dir(app).join("HEAD").is_file()
    }

    pub fn apps(&self) -> io::Result<Vec<String>> {
        let mut apps = Vec::new();
        for entry in fs::read_dir(self.root.join("stacks"))? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str()
                && validate::app_name(name).is_ok()
                && self.app_exists(name)
            {
                apps.push(name.to_string());
            }
        }
        apps.sort();
        Ok(apps)
    }

    pub fn status(&self, app: &str) -> AppStatus {
        match fs::read_to_string(self.app_dir(app).join("status")) {
            Ok(s) => match s.trim() {
                "live" => AppStatus::Live,
                "disabled" => AppStatus::Disabled,
                "failed" => AppStatus::Failed,
                _ => AppStatus::New,
            },
            Err(_) => AppStatus::New,
        }
    }

    pub fn set_status(&self, app: &str, status: AppStatus) -> io::Result<()> {
        write_atomic(
            &self.app_dir(app).join("status"),
            format!("{}\n", status.as_str()).as_bytes(),
            0o644,
        )
    }

    // ----- releases -------------------------------------------------------

    pub fn releases(&self, app: &str) -> io::Result<Vec<Release>> {
        let dir = self.app_dir(app).join("releases");
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            let is_release = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('v') && n.ends_with(".json"));
            if is_release && let Some(r) = read_json::<Release>(&path)? {
                out.push(r);
            }
        }
        out.sort_by_key(|r| r.number);
        Ok(out)
    }

    pub fn release(&self, app: &str, number: u32) -> io::Result<Option<Release>> {
        read_json(&self.release_path(app, number))
    }

    /// The release currently serving, if any.
    pub fn live_release(&self, app: &str) -> io::Result<Option<Release>> {
        Ok(self
            .releases(app)?
            .into_iter()
            .rev()
            .find(|r| r.status == ReleaseStatus::Live))
    }

    pub fn next_release_number(&self, app: &str) -> io::Result<u32> {
        Ok(self.releases(app)?.last().map_or(1, |r| r.number + 1))
    }

    pub fn write_release(&self, app: &str, release: &Release) -> io::Result<()> {
        // The env snapshot holds secrets: owner-only.
        write_json(&self.release_path(app, release.number), release, 0o600)
    }

    fn release_path(&self, app: &str, number: u32) -> PathBuf {
        self.app_dir(app)
            .join("releases")
            .join(format!("v{number}.json"))
    }

    // ----- formation and domains ------------------------------------------

    /// Scale set with `ps:scale`, per node; it wins over quarry.yml's `scale`.
    pub fn formation(&self, app: &str) -> io::Result<BTreeMap<String, u32>> {
        Ok(read_json(&self.app_dir(app).join("formation.json"))?.unwrap_or_default())
    }

    pub fn set_formation(&self, app: &str, formation: &BTreeMap<String, u32>) -> io::Result<()> {
        write_json(&self.app_dir(app).join("formation.json"), formation, 0o644)
    }

    /// Domains added with `domains:add`, routed to the app's main web node.
    pub fn domains(&self, app: &str) -> io::Result<Vec<String>> {
        match fs::read_to_string(self.app_dir(app).join("domains")) {
            Ok(text) => Ok(text
                .lines()
                .filter(|l| validate::domain(l).is_ok())
                .map(str::to_string)
                .collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    pub fn set_domains(&self, app: &str, domains: &[String]) -> io::Result<()> {
        let mut text = domains.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        write_atomic(&self.app_dir(app).join("domains"), text.as_bytes(), 0o644)
    }

    // ----- audit ----------------------------------------------------------

    /// Append one line to the audit log of `app` (`stacks/<app>/log/audit.log`)
    /// or, for fleet-wide actions, `log/audit.log`. One JSON object per line,
    /// written with a single append so lines never interleave.
    pub fn audit(&self, app: Option<&str>, key: &KeyRecord, action: &str, detail: &str) {
        self.audit_as(app, &key.name, &key.fingerprint, action, detail);
    }

    /// What Quarry did by itself (the reconciler): recorded as key `quarry`.
    pub fn audit_system(&self, app: &str, action: &str, detail: &str) {
        self.audit_as(Some(app), "quarry", "-", action, detail);
    }

    /// A fleet-wide action Quarry took by itself (the cloud layer).
    pub fn audit_fleet(&self, action: &str, detail: &str) {
        self.audit_as(None, "quarry", "-", action, detail);
    }

    fn audit_as(
        &self,
        app: Option<&str>,
        key: &str,
        fingerprint: &str,
        action: &str,
        detail: &str,
    ) {
        let event = Event {
            time: now_rfc3339(),
            app: app.map(str::to_string),
            key: key.to_string(),
            fingerprint: fingerprint.to_string(),
            action: action.to_string(),
            detail: detail.chars().take(2000).collect(),
        };
        let path = match app {
            Some(a) => self.app_dir(a).join("log").join("audit.log"),
            None => self.root.join("log").join("audit.log"),
        };
        let mut line = serde_json::to_string(&event).unwrap_or_default();
        line.push('\n');
        let write = || -> io::Result<()> {
            fs::create_dir_all(path.parent().expect("log dir"))?;
            let mut f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            f.write_all(line.as_bytes())?;
            f.sync_data()
        };
        if let Err(e) = write() {
            tracing::warn!("cannot write {}: {e}", path.display());
        }
    }

    /// Audit events, oldest first: one app's, or (for `None`) every app's and
    /// the fleet's.
    pub fn events(&self, app: Option<&str>) -> io::Result<Vec<Event>> {
        let mut paths = Vec::new();
        match app {
            Some(a) => paths.push(self.app_dir(a).join("log").join("audit.log")),
            None => {
                paths.push(self.root.join("log").join("audit.log"));
                for a in self.apps()? {
                    paths.push(self.app_dir(&a).join("log").join("audit.log"));
                }
            }
        }
        let mut events = Vec::new();
        for path in paths {
            let text = match fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            events.extend(
                text.lines()
                    .filter_map(|l| serde_json::from_str::<Event>(l).ok()),
            );
        }
        events.sort_by(|a, b| a.time.cmp(&b.time));
        Ok(events)
    }

    /// Take `app` out of every key's grants (the app is being destroyed: a
    /// new app of the same name starts with no deployers). Returns the keys
    /// that had it.
    pub fn revoke_app(&self, app: &str) -> io::Result<Vec<String>> {
        let mut had = Vec::new();
        for mut k in self.keys()? {
            if k.apps.iter().any(|a| a == app) {
                k.apps.retain(|a| a != app);
                write_json(&self.key_path(&k.name), &k, 0o600)?;
                had.push(k.name);
            }
        }
        Ok(had)
    }

    /// Give a deployer's key one more app (it created it).
    pub fn grant(&self, name: &str, app: &str) -> io::Result<()> {
        if let Some(mut k) = read_json::<KeyRecord>(&self.key_path(name))?
            && !k.apps.iter().any(|a| a == app)
        {
            k.apps.push(app.to_string());
            write_json(&self.key_path(name), &k, 0o600)?;
        }
        Ok(())
    }

    // ----- env ------------------------------------------------------------

    /// The app's config vars (`stacks/<app>/env/<KEY>`).
    pub fn app_env(&self, app: &str) -> io::Result<BTreeMap<String, String>> {
        read_env_dir(&self.app_dir(app).join("env"))
    }

    /// The global environment (`env/<KEY>`), below every app's own.
    pub fn global_env(&self) -> io::Result<BTreeMap<String, String>> {
        read_env_dir(&self.root.join("env"))
    }

    pub fn set_app_env(&self, app: &str, key: &str, value: &str) -> io::Result<()> {
        write_atomic(
            &self.app_dir(app).join("env").join(key),
            value.as_bytes(),
            0o600,
        )
    }

    pub fn unset_app_env(&self, app: &str, key: &str) -> io::Result<bool> {
        match fs::remove_file(self.app_dir(app).join("env").join(key)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn read_env_dir(dir: &Path) -> io::Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(env),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Some(key) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if validate::env_key(&key).is_err() {
            continue; // temp files and strays are not variables
        }
        env.insert(key, fs::read_to_string(entry.path())?);
    }
    Ok(env)
}

/// One line of an audit log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    pub key: String,
    pub fingerprint: String,
    pub action: String,
    pub detail: String,
}

/// `stacks/<app>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppStatus {
    /// Created, never deployed.
    New,
    Live,
    Disabled,
    Failed,
}

impl AppStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AppStatus::New => "new",
            AppStatus::Live => "live",
            AppStatus::Disabled => "disabled",
            AppStatus::Failed => "failed",
        }
    }
}

/// Where a release is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseStatus {
    /// Being built and rolled out; only ever one per app.
    Deploying,
    /// Serving now.
    Live,
    /// Served once, replaced by a later release.
    Superseded,
    /// Never served: the build, start, health check or route failed.
    Failed,
}

impl ReleaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseStatus::Deploying => "deploying",
            ReleaseStatus::Live => "live",
            ReleaseStatus::Superseded => "superseded",
            ReleaseStatus::Failed => "failed",
        }
    }
}

/// `stacks/<app>/releases/v<N>.json`: an image plus its config. Only its
/// status and reason change after it is written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Release {
    pub number: u32,
    /// The pushed commit (full sha).
    pub commit: String,
    /// `quarry/<app>:v<N>`.
    pub image: String,
    /// The app's config vars when the release was made.
    pub env: BTreeMap<String, String>,
    /// The global env when the release was made (below quarry.yml's env).
    #[serde(default)]
    pub global_env: BTreeMap<String, String>,
    /// The quarry.yml or Procfile text the release was planned from, if any.
    #[serde(default)]
    pub manifest: Option<ManifestSource>,
    pub created: String,
    /// Name of the key that made the release.
    pub by: String,
    /// Its SHA256 fingerprint.
    pub fingerprint: String,
    /// What made it: "push abc1234", "rollback to v3", "config set FOO".
    pub description: String,
    pub status: ReleaseStatus,
    /// Why it failed, for a failed release.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The file a release's stack was read from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestSource {
    /// `quarry.yml` or `Procfile` (or a Procfile made from a buildpack's
    /// default process types, named so).
    pub file: String,
    pub text: String,
    /// The buildpack that built the image, if one did: its processes start
    /// through the stack's entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buildpack: Option<String>,
}

/// Now, as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b.txt");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "two");
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("b.txt")]);
    }

    #[test]
    fn env_files_round_trip_and_strays_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        fs::create_dir_all(store.app_dir("app")).unwrap();
        store.set_app_env("app", "GREETING", "hi there\n").unwrap();
        fs::write(store.app_dir("app").join("env/.tmp-x"), "junk").unwrap();
        let env = store.app_env("app").unwrap();
        assert_eq!(env.len(), 1);
        assert_eq!(env["GREETING"], "hi there\n");
        assert!(store.unset_app_env("app", "GREETING").unwrap());
        assert!(!store.unset_app_env("app", "GREETING").unwrap());
    }

    #[test]
    fn data_dir_and_app_dirs_are_owner_only_even_when_made_open_before() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        fs::create_dir_all(root.join("stacks/old")).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(root.join("stacks/old"), fs::Permissions::from_mode(0o755)).unwrap();
        let store = Store::open(&root).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o711);
        assert_eq!(mode(&root.join("stacks/old")), 0o700);
        assert_eq!(mode(&root.join("keys")), 0o700);
        assert_eq!(mode(&store.create_app_dir("new").unwrap()), 0o700);
    }

    #[test]
    fn revoking_an_app_takes_it_from_every_key_and_only_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for (name, apps) in [("a", vec!["x", "y"]), ("b", vec!["y"]), ("c", vec![])] {
            let record = KeyRecord {
                name: name.into(),
                role: Role::Deployer,
                apps: apps.into_iter().map(String::from).collect(),
                create: false,
                public_key: String::new(),
                fingerprint: format!("SHA256:{name}"),
                added: String::new(),
            };
            store.add_key(&record).unwrap();
        }
        assert_eq!(store.revoke_app("y").unwrap(), vec!["a", "b"]);
        let apps: Vec<Vec<String>> = store.keys().unwrap().into_iter().map(|k| k.apps).collect();
        assert_eq!(apps, vec![vec!["x".to_string()], vec![], vec![]]);
    }

    #[test]
    fn public_keys_are_checked() {
        assert!(parse_public_key("").is_err());
        assert!(parse_public_key("ssh-ed25519 notbase64").is_err());
        let (canon, fp) = parse_public_key(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@host",
        )
        .unwrap();
        assert!(canon.starts_with("ssh-ed25519 AAAA"));
        assert!(fp.starts_with("SHA256:"));
    }
}
