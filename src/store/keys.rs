//! Keys: who may do what (`keys/<name>.json`), public key checks, grants.
//! May touch: `keys/`.

use super::*;

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

/// Why a public key was refused or could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no public key given on standard input")]
    Empty,
    #[error("public key is longer than 16 KiB")]
    TooLong,
    #[error("give exactly one public key line")]
    Lines,
    #[error("not an OpenSSH public key: {0}")]
    NotOpenSsh(String),
    #[error("unsupported key type {0}: use ed25519, ecdsa or rsa")]
    Algorithm(String),
    #[error("{0}")]
    Name(String),
    #[error("a key named {0} exists already")]
    NameTaken(String),
    #[error("this key is registered already as {0}")]
    Registered(String),
    #[error("{0} is the last admin key; add another admin first")]
    LastAdmin(String),
    /// `keys/` or one key's file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// A public key line → (canonical OpenSSH form, `SHA256:` fingerprint).
pub fn parse_public_key(line: &str) -> Result<(String, String), KeyError> {
    let line = line.trim();
    if line.is_empty() {
        return Err(KeyError::Empty);
    }
    if line.len() > validate::MAX_KEY_LEN {
        return Err(KeyError::TooLong);
    }
    if line.lines().count() != 1 {
        return Err(KeyError::Lines);
    }
    let key = russh::keys::ssh_key::PublicKey::from_openssh(line)
        .map_err(|e| KeyError::NotOpenSsh(e.to_string()))?;
    use russh::keys::ssh_key::Algorithm;
    match key.algorithm() {
        Algorithm::Ed25519 | Algorithm::Rsa { .. } | Algorithm::Ecdsa { .. } => {}
        other => return Err(KeyError::Algorithm(other.to_string())),
    }
    let fingerprint = key
        .fingerprint(russh::keys::ssh_key::HashAlg::Sha256)
        .to_string();
    let canonical = key
        .to_openssh()
        .map_err(|e| KeyError::NotOpenSsh(e.to_string()))?;
    Ok((canonical, fingerprint))
}

impl Store {
    pub fn keys(&self) -> io::Result<Vec<KeyRecord>> {
        let mut keys = Vec::new();
        let dir = self.root.join("keys");
        for entry in fs::read_dir(&dir).map_err(at(&dir))? {
            let path = entry.map_err(at(&dir))?.path();
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
    pub fn add_key(&self, record: &KeyRecord) -> Result<(), KeyError> {
        validate::key_name(&record.name).map_err(|e| KeyError::Name(e.to_string()))?;
        let existing = self.keys().map_err(|source| KeyError::Io {
            path: self.root.join("keys"),
            source,
        })?;
        if existing.iter().any(|k| k.name == record.name) {
            return Err(KeyError::NameTaken(record.name.clone()));
        }
        if let Some(k) = existing
            .iter()
            .find(|k| k.fingerprint == record.fingerprint)
        {
            return Err(KeyError::Registered(k.name.clone()));
        }
        let path = self.key_path(&record.name);
        write_json(&path, record, 0o600).map_err(|source| KeyError::Io { path, source })
    }

    /// Remove the key `name`; `Ok(false)` when there is none. The last
    /// admin key is never removed (over SSH or from the local CLI alike):
    /// the check and the removal hold `keys/.lock`, so two admins removing
    /// each other at once leave one.
    pub fn remove_key(&self, name: &str) -> Result<bool, KeyError> {
        let dir = self.root.join("keys");
        let io_at = |path: PathBuf| move |source| KeyError::Io { path, source };
        fs::create_dir_all(&dir).map_err(io_at(dir.clone()))?;
        let lock_path = dir.join(".lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_at(lock_path.clone()))?;
        lock.lock().map_err(io_at(lock_path))?;
        let keys = self.keys().map_err(io_at(dir))?;
        let admins = keys.iter().filter(|k| k.role == Role::Admin).count();
        if admins == 1 && keys.iter().any(|k| k.name == name && k.role == Role::Admin) {
            return Err(KeyError::LastAdmin(name.to_string()));
        }
        let path = self.key_path(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(KeyError::Io { path, source }),
        }
    }

    pub(super) fn key_path(&self, name: &str) -> PathBuf {
        self.root.join("keys").join(format!("{name}.json"))
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, role: Role) -> KeyRecord {
        KeyRecord {
            name: name.into(),
            role,
            apps: Vec::new(),
            create: false,
            public_key: String::new(),
            fingerprint: format!("SHA256:{name}"),
            added: String::new(),
        }
    }

    #[test]
    fn the_last_admin_key_stays_and_others_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for (name, role) in [
            ("root", Role::Admin),
            ("ops", Role::Admin),
            ("dev", Role::Deployer),
        ] {
            store.add_key(&key(name, role)).unwrap();
        }
        assert!(store.remove_key("ops").unwrap());
        let e = store.remove_key("root").unwrap_err();
        assert_eq!(
            e.to_string(),
            "root is the last admin key; add another admin first"
        );
        assert!(store.remove_key("dev").unwrap());
        assert!(!store.remove_key("ghost").unwrap());
        let left: Vec<String> = store.keys().unwrap().into_iter().map(|k| k.name).collect();
        assert_eq!(left, ["root"]);
    }
}
