//! Releases and the app's status: `releases/v<N>.json` (the one writer of
//! release records) and `status`, with their state enums.
//! May touch: `stacks/<app>/releases/`, `stacks/<app>/status`.

use super::*;

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
    pub const ALL: [AppStatus; 4] = [
        AppStatus::New,
        AppStatus::Live,
        AppStatus::Disabled,
        AppStatus::Failed,
    ];

    /// The status a `status` file names.
    pub fn parse(s: &str) -> Option<AppStatus> {
        AppStatus::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Whether an app may go from `self` to `to` (staying put always may).
    /// A stopped app stays stopped when a deploy fails; a live one stays
    /// live (its release still serves); `new` is never gone back to.
    pub fn can_become(self, to: AppStatus) -> bool {
        use AppStatus::*;
        self == to
            || match self {
                New => matches!(to, Live | Disabled | Failed),
                Live => matches!(to, Disabled),
                Disabled => matches!(to, Live),
                Failed => matches!(to, Live | Disabled),
            }
    }

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
    /// Whether a release may go from `self` to `to` (staying put always
    /// may). A failed release stays failed; a superseded one becomes live
    /// again only when start-up repair finds it served last.
    pub fn can_become(self, to: ReleaseStatus) -> bool {
        use ReleaseStatus::*;
        self == to
            || match self {
                Deploying => matches!(to, Live | Failed),
                Live => matches!(to, Superseded),
                Superseded => matches!(to, Live),
                Failed => false,
            }
    }

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

impl Store {
    /// The app's status; an app without a status file is `new`. A file that
    /// cannot be read or says something else is logged and read as `new`
    /// (the release records, not this file, decide what serves).
    pub fn status(&self, app: &str) -> AppStatus {
        let path = self.app_dir(app).join("status");
        match fs::read_to_string(&path) {
            Ok(s) => AppStatus::parse(s.trim()).unwrap_or_else(|| {
                tracing::warn!(app, "{}: unknown status {:?}", path.display(), s.trim());
                AppStatus::New
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => AppStatus::New,
            Err(e) => {
                tracing::warn!(app, "{}: {e}", path.display());
                AppStatus::New
            }
        }
    }

    /// Move the app to `status`; a change [`AppStatus::can_become`] forbids
    /// is refused (`InvalidInput`) and nothing is written.
    pub fn set_status(&self, app: &str, status: AppStatus) -> io::Result<()> {
        let now = self.status(app);
        if !now.can_become(status) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: app {app} cannot go from {} to {}",
                    self.app_dir(app).join("status").display(),
                    now.as_str(),
                    status.as_str()
                ),
            ));
        }
        self.restore_status(app, status)
    }

    /// Put back the status an app had before a change that failed (the
    /// undo of [`Store::set_status`], so not a transition of its own).
    pub fn restore_status(&self, app: &str, status: AppStatus) -> io::Result<()> {
        write_atomic(
            &self.app_dir(app).join("status"),
            format!("{}\n", status.as_str()).as_bytes(),
            0o644,
        )
    }

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

    /// Write a release record. Over an existing one, its status may only
    /// change as [`ReleaseStatus::can_become`] allows (`InvalidInput`
    /// otherwise, and nothing is written).
    pub fn write_release(&self, app: &str, release: &Release) -> io::Result<()> {
        let path = self.release_path(app, release.number);
        if let Some(old) = read_json::<Release>(&path)?
            && !old.status.can_become(release.status)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: release v{} cannot go from {} to {}",
                    path.display(),
                    release.number,
                    old.status.as_str(),
                    release.status.as_str()
                ),
            ));
        }
        // The env snapshot holds secrets: owner-only.
        write_json(&path, release, 0o600)
    }

    pub(super) fn release_path(&self, app: &str, number: u32) -> PathBuf {
        self.app_dir(app)
            .join("releases")
            .join(format!("v{number}.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_status_transitions_are_the_listed_ones() {
        use AppStatus::*;
        let allowed = [
            (New, Live),
            (New, Disabled),
            (New, Failed),
            (Live, Disabled),
            (Disabled, Live),
            (Failed, Live),
            (Failed, Disabled),
        ];
        for from in AppStatus::ALL {
            for to in AppStatus::ALL {
                let want = from == to || allowed.contains(&(from, to));
                assert_eq!(from.can_become(to), want, "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn release_status_transitions_are_the_listed_ones() {
        use ReleaseStatus::*;
        let all = [Deploying, Live, Superseded, Failed];
        let allowed = [
            (Deploying, Live),
            (Deploying, Failed),
            (Live, Superseded),
            (Superseded, Live),
        ];
        for from in all {
            for to in all {
                let want = from == to || allowed.contains(&(from, to));
                assert_eq!(from.can_become(to), want, "{from:?} -> {to:?}");
            }
        }
    }

    fn release(number: u32, status: ReleaseStatus) -> Release {
        Release {
            number,
            commit: "c".repeat(40),
            image: format!("quarry/shop:v{number}"),
            env: BTreeMap::new(),
            global_env: BTreeMap::new(),
            manifest: None,
            status,
            reason: None,
            created: "2026-01-01T00:00:00Z".into(),
            by: "alice".into(),
            fingerprint: "SHA256:x".into(),
            description: "push cccccc".into(),
        }
    }

    #[test]
    fn the_store_refuses_a_forbidden_release_change_and_keeps_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .write_release("shop", &release(1, ReleaseStatus::Deploying))
            .unwrap();
        store
            .write_release("shop", &release(1, ReleaseStatus::Failed))
            .unwrap();
        let e = store
            .write_release("shop", &release(1, ReleaseStatus::Live))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(
            e.to_string()
                .ends_with("releases/v1.json: release v1 cannot go from failed to live"),
            "{e}"
        );
        let kept = store.release("shop", 1).unwrap().unwrap();
        assert_eq!(kept.status, ReleaseStatus::Failed);
    }

    #[test]
    fn the_store_refuses_a_forbidden_app_change_but_an_undo_restores() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.set_status("shop", AppStatus::Live).unwrap();
        let e = store.set_status("shop", AppStatus::Failed).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("app shop cannot go from live to failed"),
            "{e}"
        );
        assert_eq!(store.status("shop"), AppStatus::Live);
        store.set_status("shop", AppStatus::Disabled).unwrap();
        store.restore_status("shop", AppStatus::Live).unwrap();
        assert_eq!(store.status("shop"), AppStatus::Live);
        assert!(store.set_status("shop", AppStatus::New).is_err());
    }
}
