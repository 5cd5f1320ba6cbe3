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

    pub fn set_status(&self, app: &str, status: AppStatus) -> io::Result<()> {
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

    pub fn write_release(&self, app: &str, release: &Release) -> io::Result<()> {
        // The env snapshot holds secrets: owner-only.
        write_json(&self.release_path(app, release.number), release, 0o600)
    }

    pub(super) fn release_path(&self, app: &str, number: u32) -> PathBuf {
        self.app_dir(app)
            .join("releases")
            .join(format!("v{number}.json"))
    }
}
