//! Buildpack builds (Heroku's classic API) for apps without a Dockerfile.
//!
//! The build stage of a push: a Dockerfile in the repo root is built as it
//! always was, unless quarry.yml `build.buildpack` or the `BUILDPACK_URL`
//! config var names a buildpack; without a Dockerfile the built-in buildpacks
//! are asked in order (`bin/detect`). The chosen buildpack's `bin/detect`,
//! `bin/compile BUILD CACHE ENV` and `bin/release BUILD` run in one throwaway
//! container from the stack image, as the stack's user `app` (uid 1000); the
//! compiled BUILD dir becomes the app image (`FROM <stack>`, `/app`). The
//! cache dir is the app's own (`stacks/<app>/build/cache`), kept across pushes.
//! May touch: the app's `build/` dir, `<data>/buildpacks`, the Docker engine
//! (one build container and one image build per push), `git clone`.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{CreateContainerOptionsBuilder, LogsOptionsBuilder};
use futures_util::StreamExt;
use serde::Deserialize;

use crate::build;
use crate::daemon::Daemon;
use crate::launch;
use crate::manifest::{Command, Manifest};
use crate::progress::Progress;
use crate::stack::{self, Stack};
use crate::stackimage::{self, pass_through};
use crate::store::{ManifestSource, Release};

/// The stack's entrypoint: sources `/app/.profile.d/*.sh`, then execs its arguments.
pub const ENTRYPOINT: &str = "/usr/local/bin/quarry-entrypoint";

/// The config var that names a buildpack (Heroku's).
pub const BUILDPACK_URL: &str = "BUILDPACK_URL";

/// The uid and gid of the stack's user `app`, which compile runs as.
const APP_UID: u32 = 1000;

/// The daemon's proxy settings, passed to build containers when set.
const PROXY_VARS: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// A compile runs at most this long.
const COMPILE_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// A `git clone` of a buildpack runs at most this long.
const CLONE_DEADLINE: Duration = Duration::from_secs(180);

/// The built-in buildpacks in detect order, with their scripts (from `buildpacks/`).
pub const BUILTIN: &[(&str, [(&str, &str); 3])] = &[
    (
        "python",
        [
            ("detect", include_str!("../buildpacks/python/bin/detect")),
            ("compile", include_str!("../buildpacks/python/bin/compile")),
            ("release", include_str!("../buildpacks/python/bin/release")),
        ],
    ),
    (
        "node",
        [
            ("detect", include_str!("../buildpacks/node/bin/detect")),
            ("compile", include_str!("../buildpacks/node/bin/compile")),
            ("release", include_str!("../buildpacks/node/bin/release")),
        ],
    ),
    (
        "static",
        [
            ("detect", include_str!("../buildpacks/static/bin/detect")),
            ("compile", include_str!("../buildpacks/static/bin/compile")),
            ("release", include_str!("../buildpacks/static/bin/release")),
        ],
    ),
    (
        "procfile",
        [
            ("detect", include_str!("../buildpacks/procfile/bin/detect")),
            (
                "compile",
                include_str!("../buildpacks/procfile/bin/compile"),
            ),
            (
                "release",
                include_str!("../buildpacks/procfile/bin/release"),
            ),
        ],
    ),
];

/// Runs in the build container: detect, compile, release, with markers in
/// /tmp/out so Quarry can tell which step failed. Fixed text: nothing of the
/// user's reaches a shell line.
const BUILD_SCRIPT: &str = r#"set -e
if ! /buildpack/bin/detect /tmp/build >/tmp/out/detect; then
  : >/tmp/out/not-detected
  exit 1
fi
/buildpack/bin/compile /tmp/build /tmp/cache /tmp/env
: >/tmp/out/compiled
/buildpack/bin/release /tmp/build >/tmp/out/release.yml
"#;

/// Where the built-in buildpacks are written out.
pub fn builtin_dir(root: &Path) -> PathBuf {
    root.join("buildpacks")
}

/// Write the built-in buildpacks under `<data>/buildpacks/<name>/bin/` (0755),
/// so an installed binary needs no checkout of the repository.
pub fn install(root: &Path) -> io::Result<()> {
    for (name, scripts) in BUILTIN {
        let bin = builtin_dir(root).join(name).join("bin");
        fs::create_dir_all(&bin)?;
        for (script, text) in scripts {
            let path = bin.join(script);
            if fs::read(&path).ok().as_deref() != Some(text.as_bytes()) {
                crate::store::write_atomic(&path, text.as_bytes(), 0o755)?;
            }
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

/// At start: write the built-ins out, and remove what a crash left of a
/// build (its container, its work dir).
pub async fn at_start(d: &Daemon) {
    if let Err(e) = install(d.store.root()) {
        tracing::warn!("cannot write the built-in buildpacks: {e}");
    }
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("{}={}", launch::LABEL_INSTANCE, d.instance),
            format!("{}=build", launch::LABEL_ONEOFF),
        ],
    )]);
    let options = bollard::query_parameters::ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    if let Ok(list) = d.docker.list_containers(Some(options)).await {
        for c in list {
            if let Some(id) = c.id {
                tracing::info!(container = %id, "removing a leftover build container");
                let _ = launch::remove(&d.docker, &id, 0).await;
            }
        }
    }
    for app in d.store.apps().unwrap_or_default() {
        let _ = fs::remove_dir_all(work_dir(d, &app));
    }
}

/// Where a buildpack comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// One of [`BUILTIN`], by name.
    Builtin(String),
    /// A directory inside the pushed repository.
    InRepo(String),
    /// An absolute path on this server: a buildpack directory or a git repository.
    Local(PathBuf),
    /// A git URL (`https://`, `http://`, `git://`, `file://`), optionally `#ref`.
    Git {
        url: String,
        reference: Option<String>,
    },
}

impl Source {
    /// Reads `build.buildpack` / `BUILDPACK_URL`.
    pub fn parse(value: &str) -> Result<Source, String> {
        let bad = |why: &str| {
            Err(format!(
                "buildpack {value:?}: {why}; use a built-in name ({}), a path in the repository, an absolute path on the server, or a git URL (https://, http://, git://, file://, with an optional #ref)",
                builtin_names().join(", ")
            ))
        };
        if value.is_empty()
            || value.len() > 1024
            || value.starts_with('-')
            || value.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return bad("empty, too long, a leading '-', or spaces");
        }
        if BUILTIN.iter().any(|(n, _)| *n == value) {
            return Ok(Source::Builtin(value.to_string()));
        }
        if let Some((scheme, _)) = value.split_once("://") {
            if !["https", "http", "git", "file"].contains(&scheme) {
                return bad(&format!("the scheme {scheme}:// is not supported"));
            }
            let (url, reference) = match value.split_once('#') {
                Some((url, r)) => (url, Some(r)),
                None => (value, None),
            };
            if let Some(r) = reference
                && (r.is_empty()
                    || r.starts_with('-')
                    || !r
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b)))
            {
                return bad("the #ref must be a branch or tag name");
            }
            return Ok(Source::Git {
                url: url.to_string(),
                reference: reference.map(str::to_string),
            });
        }
        if value.contains("::") || value.contains(':') && !value.starts_with('/') {
            return bad("not a supported URL");
        }
        if value.starts_with('/') {
            if value.split('/').any(|p| p == "..") {
                return bad("'..' is not allowed in the path");
            }
            return Ok(Source::Local(PathBuf::from(value)));
        }
        let path = value.trim_start_matches("./").trim_end_matches('/');
        if path.is_empty() || path.split('/').any(|p| p == ".." || p.is_empty()) {
            return bad("a path in the repository must stay inside it");
        }
        Ok(Source::InRepo(path.to_string()))
    }
}

pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}

/// How the pushed tree becomes an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Dockerfile,
    /// A buildpack: the one asked for, or the first built-in that detects the app.
    Buildpack(Option<Source>),
}

/// quarry.yml `build.buildpack`, else `BUILDPACK_URL`, else the Dockerfile,
/// else detection.
pub fn choose(stack: &Stack, env: &BTreeMap<String, String>) -> Result<Choice, String> {
    let asked = stack.manifest.build.buildpack.as_deref().or_else(|| {
        env.get(BUILDPACK_URL)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    });
    match asked {
        Some(value) => Ok(Choice::Buildpack(Some(Source::parse(value)?))),
        None if stack.dockerfile => Ok(Choice::Dockerfile),
        None => Ok(Choice::Buildpack(None)),
    }
}

/// The build stage of a push: Dockerfile or buildpack. Returns the stack the
/// release runs (a buildpack build may add process types from `bin/release`)
/// and records it on `release`.
pub async fn build_stage(
    d: &Daemon,
    app: &str,
    release: &mut Release,
    tree: Vec<u8>,
    stack: Stack,
    p: &Progress,
) -> Result<Stack, String> {
    // One label only: the classic builder adds a build step per label.
    // The tag names the app; the label scopes cleanup to this instance.
    let labels = HashMap::from([(launch::LABEL_INSTANCE.to_string(), d.instance.clone())]);
    match choose(&stack, &release.env)? {
        Choice::Dockerfile => {
            p.step(format!("Building {} from the Dockerfile", release.image));
            build::build_dockerfile(&d.docker, app, tree, &release.image, labels, p).await?;
            Ok(stack)
        }
        Choice::Buildpack(asked) => {
            let work = Work::new(work_dir(d, app))
                .map_err(|e| format!("cannot make the build dir of {app}: {e}"))?;
            let stack = buildpack_build(d, app, release, &tree, &stack, asked, &work, p).await;
            drop(work);
            let stack = stack?;
            prune_downloads(d, app, release, stack.manifest.releases.keep, p);
            release.manifest = stack.source.clone();
            d.store
                .write_release(app, release)
                .map_err(|e| e.to_string())?;
            Ok(stack)
        }
    }
}

fn work_dir(d: &Daemon, app: &str) -> PathBuf {
    d.store.app_dir(app).join("build").join("work")
}

/// The app's build cache, kept across pushes (removed with the app).
pub fn cache_dir(d: &Daemon, app: &str) -> PathBuf {
    d.store.app_dir(app).join("build").join("cache")
}

/// The built-ins' download caches inside CACHE (the restored venv and
/// node_modules hold only the current dependency key already).
const DOWNLOAD_CACHES: &[&str] = &["pip", "npm"];

/// Drop cached downloads older than the oldest release still kept
/// (`releases.keep`, counting this one): the cache shrinks with the releases.
fn prune_downloads(d: &Daemon, app: &str, release: &Release, keep: u32, p: &Progress) {
    let Ok(releases) = d.store.releases(app) else {
        return;
    };
    let Some(cutoff) = download_cutoff(&releases, release, keep) else {
        return;
    };
    let cache = cache_dir(d, app);
    let mut freed = 0;
    for sub in DOWNLOAD_CACHES {
        freed += remove_older(&cache.join(sub), cutoff);
    }
    if freed > 0 {
        p.detail(format!(
            "pruned {} MB of cached downloads older than the releases kept",
            freed.div_ceil(1_000_000)
        ));
    }
}

/// When the oldest kept release was made; `None` when every earlier
/// successful release is still kept.
fn download_cutoff(
    releases: &[Release],
    current: &Release,
    keep: u32,
) -> Option<std::time::SystemTime> {
    use crate::store::ReleaseStatus;
    let keep_before = keep.max(1) as usize - 1;
    let earlier: Vec<&Release> = releases
        .iter()
        .filter(|r| r.number < current.number)
        .filter(|r| matches!(r.status, ReleaseStatus::Live | ReleaseStatus::Superseded))
        .collect();
    if earlier.len() <= keep_before {
        return None;
    }
    let oldest_kept = match keep_before {
        0 => current,
        n => earlier[earlier.len() - n],
    };
    let at = time::OffsetDateTime::parse(
        &oldest_kept.created,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()?;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(at.unix_timestamp().max(0) as u64))
}

/// Remove files under `dir` last modified before `cutoff`; returns the bytes freed.
fn remove_older(dir: &Path, cutoff: std::time::SystemTime) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut freed = 0;
    for entry in entries.flatten() {
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if meta.is_dir() {
            freed += remove_older(&entry.path(), cutoff);
        } else if meta.modified().is_ok_and(|m| m < cutoff) && fs::remove_file(entry.path()).is_ok()
        {
            freed += meta.len();
        }
    }
    freed
}

/// A build's scratch dirs; removed when dropped.
struct Work {
    root: PathBuf,
}

impl Work {
    fn new(root: PathBuf) -> io::Result<Work> {
        let _ = fs::remove_dir_all(&root);
        for sub in ["src", "env", "out", "ctx"] {
            fs::create_dir_all(root.join(sub))?;
        }
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700))?;
        Ok(Work { root })
    }
    fn src(&self) -> PathBuf {
        self.root.join("src")
    }
    fn env(&self) -> PathBuf {
        self.root.join("env")
    }
    fn out(&self) -> PathBuf {
        self.root.join("out")
    }
    fn fetched(&self) -> PathBuf {
        self.root.join("buildpack")
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

#[allow(clippy::too_many_arguments)]
async fn buildpack_build(
    d: &Daemon,
    app: &str,
    release: &Release,
    tree: &[u8],
    stack: &Stack,
    asked: Option<Source>,
    work: &Work,
    p: &Progress,
) -> Result<Stack, String> {
    let src = work.src();
    {
        let mut archive = tar::Archive::new(tree);
        archive.set_preserve_permissions(true);
        archive
            .unpack(&src)
            .map_err(|e| format!("cannot unpack the pushed tree: {e}"))?;
    }
    // Which buildpack, and the directory mounted as /buildpack.
    let (name, dir) = match asked {
        None => {
            let root = builtin_dir(d.store.root());
            let mut found = None;
            for name in builtin_names() {
                if detect_on_host(&root.join(name), &src).await {
                    found = Some(name);
                    break;
                }
            }
            let Some(name) = found else {
                return Err(format!(
                    "no buildpack detected this app (tried {}): add a Dockerfile, a requirements.txt, package.json, index.html or Procfile, or set build.buildpack",
                    builtin_names().join(", ")
                ));
            };
            (name.to_string(), root.join(name))
        }
        Some(Source::Builtin(name)) => {
            let dir = builtin_dir(d.store.root()).join(&name);
            (name, dir)
        }
        Some(Source::InRepo(path)) => {
            // A symlink in the repository must not lead out of it.
            let from = src
                .join(&path)
                .canonicalize()
                .ok()
                .filter(|f| src.canonicalize().is_ok_and(|s| f.starts_with(s)))
                .ok_or_else(|| format!("buildpack {path}: no such directory in the repository"))?;
            if !from.join("bin").join("compile").is_file() {
                return Err(format!(
                    "buildpack {path}: no bin/compile in that directory of the repository"
                ));
            }
            copy_tree(&from, &work.fetched())
                .map_err(|e| format!("cannot copy the buildpack {path}: {e}"))?;
            (path, work.fetched())
        }
        Some(Source::Local(path)) => {
            let shown = path.display().to_string();
            outside_data_dir(d, &path)?;
            if path.join(".git").exists() || path.join("HEAD").is_file() {
                let url = format!("file://{shown}");
                clone(&url, None, &work.fetched(), p).await?;
            } else if path.join("bin").join("compile").is_file() {
                copy_tree(&path, &work.fetched())
                    .map_err(|e| format!("cannot copy the buildpack {shown}: {e}"))?;
            } else {
                return Err(format!(
                    "buildpack {shown}: neither a git repository nor a directory with bin/compile"
                ));
            }
            (shown, work.fetched())
        }
        Some(Source::Git { url, reference }) => {
            if let Some(path) = url.strip_prefix("file://") {
                outside_data_dir(d, Path::new(path))?;
            }
            clone(&url, reference.as_deref(), &work.fetched(), p).await?;
            let shown = match &reference {
                Some(r) => format!("{url}#{r}"),
                None => url,
            };
            (shown, work.fetched())
        }
    };

    let stack_image = &stackimage::configured();
    stackimage::ensure(&d.docker, stack_image, p).await?;
    let started = Instant::now();

    // ENV_DIR: the app's config vars over the global ones, one file each.
    let mut vars = release.global_env.clone();
    vars.extend(release.env.clone());
    for (key, value) in &vars {
        let path = work.env().join(key);
        fs::write(&path, value).map_err(|e| format!("cannot write the env dir: {e}"))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
    }
    let cache = cache_dir(d, app);
    fs::create_dir_all(&cache).map_err(|e| format!("cannot make the build cache: {e}"))?;
    let owned = [src.clone(), work.env(), work.out()];
    tokio::task::spawn_blocking(move || -> io::Result<()> {
        for dir in &owned {
            chown_tree(dir)?;
        }
        std::os::unix::fs::lchown(&cache, Some(APP_UID), Some(APP_UID))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot hand the build dirs to uid {APP_UID}: {e}"))?;

    p.step(format!(
        "Building {} with the {name} buildpack on {stack_image}",
        release.image
    ));
    let compiled = Instant::now();
    run_build_container(d, app, release, &name, &dir, work, stack_image, p).await?;
    p.detail(format!(
        "compiled in {:.1}s",
        compiled.elapsed().as_secs_f64()
    ));

    let release_yml = fs::read_to_string(work.out().join("release.yml")).unwrap_or_default();
    let defaults = process_types(&name, &release_yml)?;
    let source = manifest_source(stack.source.as_ref(), &defaults, &name)?;
    let stack = stack::from_source(source).map_err(|e| e.to_string())?;

    p.step(format!("Making the app image {}", release.image));
    let context = image_context(stack_image, &src, defaults.get("web").map(String::as_str))
        .await
        .map_err(|e| format!("cannot pack the compiled app: {e}"))?;
    let labels = HashMap::from([(launch::LABEL_INSTANCE.to_string(), d.instance.clone())]);
    build::build_dockerfile(
        &d.docker,
        app,
        context,
        &release.image,
        labels,
        &Progress::silent(),
    )
    .await?;
    let size = |image: &str| {
        let docker = d.docker.clone();
        let image = image.to_string();
        async move {
            docker
                .inspect_image(&image)
                .await
                .ok()
                .and_then(|i| i.size)
                .unwrap_or(0)
        }
    };
    let (total, base) = (size(&release.image).await, size(stack_image).await);
    p.detail(format!(
        "{}: {} MB ({} MB app layer on the shared {} MB stack); built in {:.1}s",
        release.image,
        total / 1_000_000,
        (total - base).max(0) / 1_000_000,
        base / 1_000_000,
        started.elapsed().as_secs_f64()
    ));
    Ok(stack)
}

/// A buildpack on this server may be anywhere but in Quarry's data dir,
/// which holds other apps' repositories and config.
fn outside_data_dir(d: &Daemon, path: &Path) -> Result<(), String> {
    let data = d.store.root().canonicalize().map_err(|e| e.to_string())?;
    match path.canonicalize() {
        Ok(p) if p.starts_with(&data) => Err(format!(
            "buildpack {}: a path inside Quarry's data directory is not allowed",
            path.display()
        )),
        _ => Ok(()),
    }
}

/// `bin/detect BUILD_DIR` of a built-in, on the host (they only look at files).
async fn detect_on_host(dir: &Path, src: &Path) -> bool {
    let run = tokio::process::Command::new(dir.join("bin").join("detect"))
        .arg(src)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    matches!(
        tokio::time::timeout(Duration::from_secs(30), run).await,
        Ok(Ok(s)) if s.success()
    )
}

/// `git clone --depth 1 [--branch REF] -- URL DIR`, with only plain transports allowed.
async fn clone(url: &str, reference: Option<&str>, to: &Path, p: &Progress) -> Result<(), String> {
    p.step(format!("Fetching the buildpack {url}"));
    let _ = fs::remove_dir_all(to);
    let mut cmd = tokio::process::Command::new("git");
    cmd.args(["clone", "--quiet", "--depth", "1"]);
    if let Some(r) = reference {
        cmd.args(["--branch", r]);
    }
    cmd.arg("--")
        .arg(url)
        .arg(to)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ALLOW_PROTOCOL", "file:git:http:https")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(CLONE_DEADLINE, cmd.output())
        .await
        .map_err(|_| {
            format!(
                "cannot fetch the buildpack {url}: git clone took longer than {}s",
                CLONE_DEADLINE.as_secs()
            )
        })?
        .map_err(|e| format!("cannot fetch the buildpack {url}: cannot run git: {e}"))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        let why = why.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(format!(
            "cannot fetch the buildpack {url}: git clone failed: {}",
            why.trim()
        ));
    }
    if !to.join("bin").join("compile").is_file() {
        return Err(format!(
            "the buildpack {url} has no bin/compile: not a buildpack"
        ));
    }
    Ok(())
}

/// detect + compile + release in a throwaway container from the stack,
/// as uid 1000, streaming its output to the pusher.
#[allow(clippy::too_many_arguments)]
async fn run_build_container(
    d: &Daemon,
    app: &str,
    release: &Release,
    name: &str,
    buildpack: &Path,
    work: &Work,
    stack_image: &str,
    p: &Progress,
) -> Result<(), String> {
    let docker = &d.docker;
    let container = format!("{app}.build.v{}", release.number);
    match launch::owner(docker, &container).await {
        launch::NameOwner::Free => {}
        launch::NameOwner::Us(i) if i == d.instance => {
            launch::remove(docker, &container, 0).await?
        }
        _ => return Err(launch::foreign_name(&container)),
    }
    let network = launch::ensure_network(docker, &d.instance).await?;
    // Mounts, not `-v` strings: a path with ':' or ',' stays one path.
    let bind = |from: &Path, to: &str, ro: bool| Mount {
        source: Some(from.display().to_string()),
        target: Some(to.to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(ro),
        ..Default::default()
    };
    let mounts = vec![
        bind(&work.src(), "/tmp/build", false),
        bind(&cache_dir(d, app), "/tmp/cache", false),
        bind(&work.env(), "/tmp/env", true),
        bind(&work.out(), "/tmp/out", false),
        bind(buildpack, "/buildpack", true),
    ];
    let labels = HashMap::from([
        (launch::LABEL_INSTANCE.to_string(), d.instance.clone()),
        (launch::LABEL_APP.to_string(), app.to_string()),
        (launch::LABEL_ONEOFF.to_string(), "build".to_string()),
    ]);
    let mut env = vec![
        format!("STACK={stack_image}"),
        format!("SOURCE_VERSION={}", release.commit),
        "HOME=/app".to_string(),
        "LANG=C.UTF-8".to_string(),
    ];
    // A daemon that reaches the internet through a proxy passes it on, so
    // pip and npm can download too.
    for key in PROXY_VARS {
        if let Ok(value) = std::env::var(key) {
            env.push(format!("{key}={value}"));
        }
    }
    let body = ContainerCreateBody {
        image: Some(stack_image.to_string()),
        user: Some(format!("{APP_UID}:{APP_UID}")),
        env: Some(env),
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
        cmd: Some(vec![BUILD_SCRIPT.to_string(), "quarry-build".to_string()]),
        working_dir: Some("/tmp/build".into()),
        labels: Some(labels),
        host_config: Some(HostConfig {
            mounts: Some(mounts),
            network_mode: Some(network),
            init: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default()
        .name(&container)
        .build();
    let created = docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| {
            format!(
                "cannot create the build container {container}: {}",
                launch::docker_message(&e)
            )
        })?;
    let id = created.id;
    let result = async {
        docker.start_container(&id, None).await.map_err(|e| {
            format!(
                "cannot start the build container {container}: {}",
                launch::docker_message(&e)
            )
        })?;
        tokio::time::timeout(COMPILE_DEADLINE, follow(docker, &id, p))
            .await
            .map_err(|_| {
                format!(
                    "the build of {app} did not finish within {} min",
                    COMPILE_DEADLINE.as_secs() / 60
                )
            })
    }
    .await;
    let code = match result {
        Ok(tail) => {
            let code = exit_code(docker, &id).await;
            (code, tail)
        }
        Err(e) => {
            let _ = launch::remove(docker, &id, 0).await;
            return Err(e);
        }
    };
    let _ = launch::remove(docker, &id, 0).await;
    let (code, tail) = code;
    if code == 0 {
        return Ok(());
    }
    if !tail.is_empty() {
        p.warn("last lines of the build:");
        for line in &tail {
            p.warn(format!("  {line}"));
        }
    }
    let out = work.out();
    Err(if out.join("not-detected").exists() {
        format!("the {name} buildpack does not apply to this app (its bin/detect said no)")
    } else if !out.join("compiled").exists() {
        format!("the {name} buildpack's bin/compile failed with exit code {code}")
    } else {
        format!("the {name} buildpack's bin/release failed with exit code {code}")
    })
}

/// Stream the container's output to the pusher until it exits; returns the last lines.
async fn follow(docker: &bollard::Docker, id: &str, p: &Progress) -> Vec<String> {
    let options = LogsOptionsBuilder::default()
        .follow(true)
        .stdout(true)
        .stderr(true)
        .build();
    let mut stream = docker.logs(id, Some(options));
    let mut tail: Vec<String> = Vec::new();
    let mut pending = String::new();
    let line_out = |line: &str, tail: &mut Vec<String>| {
        let line = line.trim_end();
        pass_through(p, line);
        if tail.len() == 15 {
            tail.remove(0);
        }
        tail.push(line.to_string());
    };
    while let Some(Ok(chunk)) = stream.next().await {
        pending.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        while let Some(pos) = pending.find('\n') {
            let line: String = pending.drain(..=pos).collect();
            line_out(&line, &mut tail);
        }
    }
    if !pending.trim().is_empty() {
        line_out(&pending, &mut tail);
    }
    tail
}

async fn exit_code(docker: &bollard::Docker, id: &str) -> i64 {
    let mut stream =
        docker.wait_container(id, None::<bollard::query_parameters::WaitContainerOptions>);
    match stream.next().await {
        Some(Ok(r)) => r.status_code,
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
        _ => -1,
    }
}

/// What `bin/release` printed.
#[derive(Debug, Deserialize)]
struct ReleaseOutput {
    #[serde(default)]
    default_process_types: Option<BTreeMap<String, String>>,
}

/// The default process types from `bin/release`'s YAML.
pub fn process_types(buildpack: &str, yaml: &str) -> Result<BTreeMap<String, String>, String> {
    if yaml.trim().is_empty() || yaml.trim() == "---" {
        return Ok(BTreeMap::new());
    }
    let out: ReleaseOutput = serde_saphyr::from_str(yaml).map_err(|e| {
        let e = e.to_string();
        format!(
            "the {buildpack} buildpack's bin/release printed invalid YAML: {}",
            e.lines().next().unwrap_or("")
        )
    })?;
    let types = out.default_process_types.unwrap_or_default();
    for (name, command) in &types {
        crate::validate::process_name("process type", name)
            .map_err(|e| format!("the {buildpack} buildpack's bin/release: {e}"))?;
        if command.trim().is_empty() || command.contains(['\0', '\n']) {
            return Err(format!(
                "the {buildpack} buildpack's bin/release: the command of {name} is empty or not one line"
            ));
        }
    }
    Ok(types)
}

/// The manifest source of a buildpack release: quarry.yml as pushed; else
/// the Procfile with the buildpack's default process types it lacks added
/// (a Procfile's own types win, as on Heroku); else the defaults alone.
pub fn manifest_source(
    pushed: Option<&ManifestSource>,
    defaults: &BTreeMap<String, String>,
    buildpack: &str,
) -> Result<ManifestSource, String> {
    let mut source = match pushed {
        Some(s) if s.file == "quarry.yml" => s.clone(),
        Some(s) => {
            let have: Vec<&str> = s
                .text
                .lines()
                .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim()))
                .collect();
            let missing: Vec<String> = defaults
                .iter()
                .filter(|(n, _)| !have.contains(&n.as_str()))
                .map(|(n, c)| format!("{n}: {c}\n"))
                .collect();
            if missing.is_empty() {
                s.clone()
            } else {
                let mut text = s.text.clone();
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&format!(
                    "# default process types of the {buildpack} buildpack\n"
                ));
                text.extend(missing);
                ManifestSource {
                    file: format!("Procfile (+ the {buildpack} buildpack's defaults)"),
                    text,
                    buildpack: None,
                }
            }
        }
        None => {
            if defaults.is_empty() {
                return Err(format!(
                    "the {buildpack} buildpack gives no default process type and the app has no Procfile: add a Procfile with a line such as `web: COMMAND`"
                ));
            }
            let mut text = format!("# default process types of the {buildpack} buildpack\n");
            text.extend(defaults.iter().map(|(n, c)| format!("{n}: {c}\n")));
            ManifestSource {
                file: format!("Procfile (from the {buildpack} buildpack)"),
                text,
                buildpack: None,
            }
        }
    };
    source.buildpack = Some(buildpack.to_string());
    Ok(source)
}

/// Buildpack images start processes through the stack's entrypoint, which
/// sources `.profile.d` (PATH of the venv, node_modules/.bin, …).
pub fn through_entrypoint(manifest: &mut Manifest) {
    let wrap = |c: &mut Option<Command>| {
        if let Some(cmd) = c.take() {
            let mut argv = vec![ENTRYPOINT.to_string()];
            match cmd {
                Command::Shell(s) => argv.extend(["/bin/sh".into(), "-c".into(), s]),
                Command::Exec(a) => argv.extend(a),
            }
            *c = Some(Command::Exec(argv));
        }
    };
    for node in manifest.nodes.values_mut() {
        wrap(&mut node.command);
    }
    wrap(&mut manifest.release);
}

/// The app image's context: the compiled BUILD dir as `build/`, and a Dockerfile.
async fn image_context(stack: &str, build: &Path, web: Option<&str>) -> io::Result<Vec<u8>> {
    let mut dockerfile = format!(
        "FROM {stack}\nCOPY --chown=app build /app\nUSER app\nWORKDIR /app\nENTRYPOINT [\"{ENTRYPOINT}\"]\n"
    );
    if let Some(web) = web {
        let cmd = serde_json::to_string(&["/bin/sh", "-c", web]).map_err(io::Error::other)?;
        dockerfile.push_str(&format!("CMD {cmd}\n"));
    }
    let build = build.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut b = tar::Builder::new(Vec::new());
        b.follow_symlinks(false);
        let mut h = tar::Header::new_gnu();
        h.set_size(dockerfile.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "Dockerfile", dockerfile.as_bytes())?;
        b.append_dir_all("build", &build)?;
        b.into_inner()
    })
    .await
    .map_err(io::Error::other)?
}

/// `chown -R 1000:1000`, not following symlinks.
fn chown_tree(dir: &Path) -> io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(APP_UID), Some(APP_UID))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            chown_tree(&path)?;
        } else {
            std::os::unix::fs::lchown(&path, Some(APP_UID), Some(APP_UID))?;
        }
    }
    Ok(())
}

/// Copy a directory tree (files, dirs, symlinks as links), keeping modes.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else if kind.is_file() {
            fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!(
            Source::parse("python").unwrap(),
            Source::Builtin("python".into())
        );
        assert_eq!(
            Source::parse("https://example.com/bp.git#v2").unwrap(),
            Source::Git {
                url: "https://example.com/bp.git".into(),
                reference: Some("v2".into())
            }
        );
        assert_eq!(
            Source::parse("/srv/bp").unwrap(),
            Source::Local("/srv/bp".into())
        );
        assert_eq!(Source::parse("./bp/").unwrap(), Source::InRepo("bp".into()));
        for bad in [
            "",
            "--upload-pack=x",
            "ext::sh -c x",
            "ext::sh",
            "ssh://h/x",
            "a b",
            "../up",
            "/a/../b",
            "https://h/x#--force",
            "host:path",
        ] {
            assert!(Source::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn release_yaml() {
        let t = process_types("node", "---\ndefault_process_types:\n  web: npm start\n").unwrap();
        assert_eq!(t["web"], "npm start");
        assert!(
            process_types("p", "---\ndefault_process_types: {}\n")
                .unwrap()
                .is_empty()
        );
        assert!(process_types("p", "").unwrap().is_empty());
        let e = process_types("x", "default_process_types: [1, 2\n").unwrap_err();
        assert!(
            e.starts_with("the x buildpack's bin/release printed invalid YAML"),
            "{e}"
        );
        let e = process_types("x", "default_process_types:\n  Web!: a\n").unwrap_err();
        assert!(e.contains("process type"), "{e}");
    }

    #[test]
    fn a_procfile_wins_over_defaults_and_gets_the_missing_ones() {
        let defaults = BTreeMap::from([
            ("web".to_string(), "python app.py".to_string()),
            ("clock".to_string(), "python clock.py".to_string()),
        ]);
        let procfile = ManifestSource {
            file: "Procfile".into(),
            text: "web: gunicorn app:app\n".into(),
            buildpack: None,
        };
        let s = manifest_source(Some(&procfile), &defaults, "python").unwrap();
        assert_eq!(s.file, "Procfile (+ the python buildpack's defaults)");
        assert_eq!(
            s.text,
            "web: gunicorn app:app\n# default process types of the python buildpack\nclock: python clock.py\n"
        );
        assert_eq!(s.buildpack.as_deref(), Some("python"));
        let s = manifest_source(None, &defaults, "python").unwrap();
        assert_eq!(s.file, "Procfile (from the python buildpack)");
        let m = crate::stack::from_source(s).unwrap().manifest;
        assert_eq!(
            m.nodes["web"].command,
            Some(Command::Exec(vec![
                ENTRYPOINT.into(),
                "/bin/sh".into(),
                "-c".into(),
                "python app.py".into()
            ]))
        );
        let e = manifest_source(None, &BTreeMap::new(), "procfile").unwrap_err();
        assert!(e.contains("add a Procfile"), "{e}");
    }

    fn release(number: u32, status: crate::store::ReleaseStatus, created: &str) -> Release {
        Release {
            number,
            commit: "c".repeat(40),
            image: format!("quarry/a:v{number}"),
            env: BTreeMap::new(),
            global_env: BTreeMap::new(),
            manifest: None,
            created: created.into(),
            by: "k".into(),
            fingerprint: "f".into(),
            description: "push".into(),
            status,
            reason: None,
        }
    }

    #[test]
    fn downloads_older_than_the_kept_releases_go() {
        use crate::store::ReleaseStatus::*;
        let all = vec![
            release(1, Superseded, "2026-01-01T00:00:00Z"),
            release(2, Failed, "2026-01-02T00:00:00Z"),
            release(3, Superseded, "2026-01-03T00:00:00Z"),
            release(4, Live, "2026-01-04T00:00:00Z"),
            release(5, Deploying, "2026-01-05T00:00:00Z"),
        ];
        let at = |day: u64| {
            std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600 + (day - 1) * 86_400)
        };
        // keep 3: v5, v4, v3 stay; what is older than v3 goes.
        assert_eq!(download_cutoff(&all, &all[4], 3), Some(at(3)));
        assert_eq!(download_cutoff(&all, &all[4], 1), Some(at(5)));
        // keep 4 or more: v1 is still kept, nothing is older.
        assert_eq!(download_cutoff(&all, &all[4], 4), None);
        assert_eq!(download_cutoff(&all, &all[4], 5), None);

        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("a/old.whl"), dir.path().join("new.whl"));
        fs::create_dir_all(dir.path().join("a")).unwrap();
        fs::write(&old, "12345").unwrap();
        fs::write(&new, "1").unwrap();
        fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(at(1))
            .unwrap();
        assert_eq!(remove_older(dir.path(), at(3)), 5);
        assert!(!old.exists() && new.exists());
    }

    #[test]
    fn dockerfile_wins_unless_a_buildpack_is_asked_for() {
        let mut stack = Stack {
            source: None,
            manifest: crate::manifest::default_manifest(),
            dockerfile: true,
        };
        let env = BTreeMap::new();
        assert_eq!(choose(&stack, &env).unwrap(), Choice::Dockerfile);
        let with_url = BTreeMap::from([(BUILDPACK_URL.to_string(), "/srv/bp".to_string())]);
        assert_eq!(
            choose(&stack, &with_url).unwrap(),
            Choice::Buildpack(Some(Source::Local("/srv/bp".into())))
        );
        stack.manifest.build.buildpack = Some("node".into());
        assert_eq!(
            choose(&stack, &with_url).unwrap(),
            Choice::Buildpack(Some(Source::Builtin("node".into())))
        );
        stack.dockerfile = false;
        stack.manifest.build.buildpack = None;
        assert_eq!(choose(&stack, &env).unwrap(), Choice::Buildpack(None));
    }
}
