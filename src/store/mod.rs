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

mod audit;
mod keys;
mod releases;

pub use audit::Event;
pub use keys::{KeyError, KeyRecord, Role, parse_public_key};
pub use releases::{AppStatus, ManifestSource, Release, ReleaseStatus};

/// `e` with the path it happened at, keeping its kind (a full disk then
/// names the file it could not write).
pub fn at(path: &Path) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Write `bytes` to `path` atomically with file mode `mode`: a reader sees the
/// old content or the new one, never a mix, even across a crash. Errors name
/// the path.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other(format!("{} has no parent directory", path.display())))?;
    fs::create_dir_all(dir).map_err(at(dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(at(dir))?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(at(path))?;
    tmp.write_all(bytes).map_err(at(path))?;
    tmp.as_file().sync_all().map_err(at(path))?;
    tmp.persist(path).map_err(|e| at(path)(e.error))?;
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(at(dir))
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
        Err(e) => Err(at(path)(e)),
    }
}

/// Written to `<data>/serve.json` once the daemon listens: the real
/// addresses (ports chosen by the OS when 0 was asked for).
#[derive(Debug, Serialize, Deserialize)]
pub struct Running {
    pub pid: u32,
    pub ssh: std::net::SocketAddr,
    pub http: std::net::SocketAddr,
    #[serde(default)]
    pub https: Option<std::net::SocketAddr>,
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
        let dir = self.root.join("stacks");
        for entry in fs::read_dir(&dir).map_err(at(&dir))? {
            let entry = entry.map_err(at(&dir))?;
            if entry.file_type()?.is_dir() {
                set_mode(&entry.path(), 0o700)?;
            }
        }
        Ok(())
    }

    /// Make `stacks/<app>` (owner-only) if it is missing.
    pub fn create_app_dir(&self, app: &str) -> io::Result<PathBuf> {
        let dir = self.app_dir(app);
        fs::create_dir_all(&dir).map_err(at(&dir))?;
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
        let dir = self.root.join("stacks");
        for entry in fs::read_dir(&dir).map_err(at(&dir))? {
            let entry = entry.map_err(at(&dir))?;
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

    /// Scale set with `ps:scale`, per node; it wins over quarry.yml's `scale`.
    pub fn formation(&self, app: &str) -> io::Result<BTreeMap<String, u32>> {
        Ok(read_json(&self.app_dir(app).join("formation.json"))?.unwrap_or_default())
    }

    pub fn set_formation(&self, app: &str, formation: &BTreeMap<String, u32>) -> io::Result<()> {
        write_json(&self.app_dir(app).join("formation.json"), formation, 0o644)
    }

    /// Domains added with `domains:add`, routed to the app's main web node.
    pub fn domains(&self, app: &str) -> io::Result<Vec<String>> {
        let path = self.app_dir(app).join("domains");
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text
                .lines()
                .filter(|l| validate::domain(l).is_ok())
                .map(str::to_string)
                .collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(at(&path)(e)),
        }
    }

    pub fn set_domains(&self, app: &str, domains: &[String]) -> io::Result<()> {
        let mut text = domains.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        write_atomic(&self.app_dir(app).join("domains"), text.as_bytes(), 0o644)
    }

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
        let path = self.app_dir(app).join("env").join(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(at(&path)(e)),
        }
    }
}

fn read_env_dir(dir: &Path) -> io::Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(env),
        Err(e) => return Err(at(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(at(dir))?;
        let Some(key) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if validate::env_key(&key).is_err() {
            continue; // temp files and strays are not variables
        }
        let path = entry.path();
        env.insert(key, fs::read_to_string(&path).map_err(at(&path))?);
    }
    Ok(env)
}

/// Now, as RFC 3339 UTC (the stamp of every record written here).
pub use crate::clock::now_rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_errors_name_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let stacks = dir.path().join("stacks");
        fs::remove_dir_all(&stacks).unwrap();
        fs::write(&stacks, "not a folder").unwrap();
        let e = store.apps().unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("{}: ", stacks.display())),
            "{e}"
        );
        assert_eq!(e.kind(), io::ErrorKind::NotADirectory);
    }

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
