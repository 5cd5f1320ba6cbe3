//! Where a buildpack comes from: a built-in, a directory of the repository,
//! a path on the server or a git URL; and fetching it for one build
//! (`git clone --depth 1` with plain transports only, or a copy). Detection
//! over the built-ins runs here too, on the host, and so does the choice of
//! the stack from the runtime a python or node app asks for. May touch: the
//! build's work dir, `git`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::{BUILTIN, BuildpackError, builtin_dir, builtin_names};
use crate::daemon::Daemon;
use crate::progress::Progress;
use crate::runtime;
use crate::stackimage;

/// A `git clone` of a buildpack runs at most this long.
const CLONE_DEADLINE: Duration = Duration::from_secs(180);

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
    pub fn parse(value: &str) -> Result<Source, BuildpackError> {
        let bad = |why: &str| {
            Err(BuildpackError::BadSource {
                value: value.to_string(),
                why: why.to_string(),
            })
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

/// Which buildpack `asked` means (the first built-in that detects the app
/// when nothing is asked for): its name, and the directory to mount as
/// /buildpack (`fetched` for one copied or cloned here). A path on the
/// server (or a `file://` URL) is read only for a push by an admin key
/// (`trusted`): a deployer must not copy files of the server into a build.
pub(super) async fn resolve(
    d: &Daemon,
    asked: Option<Source>,
    trusted: bool,
    src: &Path,
    fetched: &Path,
    p: &Progress,
) -> Result<(String, PathBuf), BuildpackError> {
    Ok(match asked {
        None => {
            let root = builtin_dir(d.store.root());
            let found = builtin_names().into_iter().find(|name| detects(name, src));
            let Some(name) = found else {
                return Err(BuildpackError::NotDetected);
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
                .ok_or_else(|| unusable(&path, "no such directory in the repository"))?;
            if !from.join("bin").join("compile").is_file() {
                return Err(unusable(
                    &path,
                    "no bin/compile in that directory of the repository",
                ));
            }
            copy_tree(&from, fetched).map_err(|source| BuildpackError::Copy {
                buildpack: path.clone(),
                source,
            })?;
            (path, fetched.to_path_buf())
        }
        Some(Source::Local(path)) => {
            let shown = path.display().to_string();
            admin_only(trusted, &shown)?;
            outside_data_dir(d, &path)?;
            if path.join(".git").exists() || path.join("HEAD").is_file() {
                let url = format!("file://{shown}");
                clone(&url, None, fetched, p).await?;
            } else if path.join("bin").join("compile").is_file() {
                copy_tree(&path, fetched).map_err(|source| BuildpackError::Copy {
                    buildpack: shown.clone(),
                    source,
                })?;
            } else {
                return Err(unusable(
                    &shown,
                    "neither a git repository nor a directory with bin/compile",
                ));
            }
            (shown, fetched.to_path_buf())
        }
        Some(Source::Git { url, reference }) => {
            if let Some(path) = url.strip_prefix("file://") {
                admin_only(trusted, &url)?;
                outside_data_dir(d, Path::new(path))?;
            }
            clone(&url, reference.as_deref(), fetched, p).await?;
            let shown = match &reference {
                Some(r) => format!("{url}#{r}"),
                None => url,
            };
            (shown, fetched.to_path_buf())
        }
    })
}

fn unusable(buildpack: &str, why: &str) -> BuildpackError {
    BuildpackError::Unusable {
        buildpack: buildpack.to_string(),
        why: why.to_string(),
    }
}

fn admin_only(trusted: bool, shown: &str) -> Result<(), BuildpackError> {
    if trusted {
        Ok(())
    } else {
        Err(unusable(
            shown,
            "a path on the server is used only for a push by an admin key; use a built-in, a directory of the repository or a git URL",
        ))
    }
}

/// A buildpack on this server may be anywhere but in Quarry's data dir,
/// which holds other apps' repositories and config.
fn outside_data_dir(d: &Daemon, path: &Path) -> Result<(), BuildpackError> {
    let root = d.store.root();
    let data = root.canonicalize().map_err(BuildpackError::io(format!(
        "cannot resolve the data directory {}",
        root.display()
    )))?;
    match path.canonicalize() {
        Ok(p) if p.starts_with(&data) => Err(unusable(
            &path.display().to_string(),
            "a path inside Quarry's data directory is not allowed",
        )),
        _ => Ok(()),
    }
}

/// What a built-in's `bin/detect` looks for, decided here instead of
/// running the script on the host: the pushed tree is the tenant's, and a
/// shell's `[ -f ]` follows a symlink out of it. Only regular files and
/// folders that are no links count (the scripts apply the same rules in the
/// build container).
pub(super) fn detects(builtin: &str, src: &Path) -> bool {
    let file = |name: &str| crate::confined::is_file(src, name);
    let dir = |name: &str| crate::confined::is_dir(src, name);
    match builtin {
        "python" => file("requirements.txt") || file("pyproject.toml") || file("Pipfile"),
        "node" => file("package.json"),
        "static" => dir("public") || file("index.html"),
        "procfile" => file("Procfile"),
        _ => false,
    }
}

/// `git clone --depth 1 [--branch REF] -- URL DIR`, with only plain transports allowed.
async fn clone(
    url: &str,
    reference: Option<&str>,
    to: &Path,
    p: &Progress,
) -> Result<(), BuildpackError> {
    let fetch = |why: String| BuildpackError::Fetch {
        url: url.to_string(),
        why,
    };
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
            fetch(format!(
                "git clone took longer than {}s",
                CLONE_DEADLINE.as_secs()
            ))
        })?
        .map_err(|e| fetch(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        let why = why.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(fetch(format!("git clone failed: {}", why.trim())));
    }
    if !to.join("bin").join("compile").is_file() {
        return Err(BuildpackError::NotABuildpack {
            url: url.to_string(),
        });
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

/// The stack a build of buildpack `name` runs on, with the build
/// container's runtime variables: for the built-in python and node, the
/// suite whose runtime the app asks for (the configured stack for the
/// default suite); any other buildpack gets the configured stack.
pub(super) fn runtime_stack(
    name: &str,
    src: &Path,
    p: &Progress,
) -> Result<(String, Vec<String>), BuildpackError> {
    let Some(language) = runtime::Language::of_buildpack(name) else {
        return Ok((stackimage::configured(), Vec::new()));
    };
    let choice = runtime::request(language, src).and_then(|r| runtime::choose(language, r))?;
    let stack = if choice.suite.name == runtime::DEFAULT_SUITE {
        stackimage::configured()
    } else {
        stackimage::suite_stack(choice.suite.name)
    };
    p.step(choice.describe(&stack));
    let env = match language {
        runtime::Language::Python => vec![format!("QUARRY_PYTHON={}", choice.binary)],
        runtime::Language::Node => Vec::new(),
    };
    Ok((stack, env))
}
