//! Stack images: the Debian root file system every buildpack build runs on
//! and every buildpack app image starts `FROM`.
//!
//! `quarry stack build` and a push that needs a missing stack both come here.
//! Without a base image the stack is made by `stack/build.sh` (embedded):
//! `debootstrap` from Debian's mirror, then `docker import`, so no registry is
//! needed. With a base image (`--from IMAGE`, or `QUARRY_STACK_FROM` for the
//! daemon's first-need build) it is a small Dockerfile build on top of it.
//! Concurrent first builds wait for one another. May touch: the Docker engine,
//! `bash` and `debootstrap` children.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::ListImagesOptionsBuilder;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::progress::Progress;

mod error;
pub use error::StackImageError;

/// The stack buildpack builds use unless told otherwise.
pub const DEFAULT_STACK: &str = "quarry-stack/bookworm:latest";

/// The daemon's environment may name another stack for buildpack builds.
pub const STACK_ENV: &str = "QUARRY_STACK";

/// The stack buildpack builds run on: `QUARRY_STACK` if it is a valid stack
/// name, else [`DEFAULT_STACK`].
pub fn configured() -> String {
    std::env::var(STACK_ENV)
        .ok()
        .map(|s| full_name(&s))
        .filter(|s| validate_name(s).is_ok())
        .unwrap_or_else(|| DEFAULT_STACK.to_string())
}

/// Stack images live under this repository prefix.
pub const PREFIX: &str = "quarry-stack/";

/// The stack of a Debian suite: `quarry-stack/<suite>:latest`.
pub fn suite_stack(suite: &str) -> String {
    format!("{PREFIX}{suite}:latest")
}

/// The Debian suite a stack name stands for (`quarry-stack/trixie:latest` →
/// trixie), if its repository is one of [`crate::runtime::SUITES`].
pub fn suite_of(name: &str) -> Option<&'static crate::runtime::Suite> {
    let repo = name.strip_prefix(PREFIX)?;
    crate::runtime::suite(repo.split(':').next().unwrap_or(repo))
}

/// build.sh's suite arguments for the stack `name`: `--suite S --extra "…"`
/// for a suite's stack, nothing (bookworm) for any other name.
fn suite_args(name: &str) -> Vec<String> {
    match suite_of(name) {
        Some(suite) => vec![
            "--suite".into(),
            suite.name.into(),
            "--extra".into(),
            suite.extra_packages.join(" "),
        ],
        None => Vec::new(),
    }
}

/// The daemon builds a missing stack `FROM` this image when it is set and
/// the image is on the engine (instead of debootstrap).
pub const FROM_ENV: &str = "QUARRY_STACK_FROM";

/// `stack/build.sh`: debootstrap + chroot apt-get + docker import.
const BUILD_SH: &str = include_str!("../stack/build.sh");

/// The entrypoint the stack puts at /usr/local/bin (same as build.sh's).
/// Where the stack image keeps the entrypoint buildpack images run through.
pub const ENTRYPOINT: &str = "/usr/local/bin/quarry-entrypoint";

const ENTRYPOINT_SH: &str = "#!/bin/sh\n# quarry-entrypoint: source every /app/.profile.d/*.sh a buildpack left, then run the command.\nfor f in /app/.profile.d/*.sh; do\n  [ -r \"$f\" ] && . \"$f\"\ndone\nexec \"$@\"\n";

/// A stack build runs at most this long.
const BUILD_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// One stack build at a time per daemon (and per `quarry stack build`).
static BUILDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Check a stack image name: `quarry-stack/<name>[:<tag>]`, plain characters.
pub fn validate_name(name: &str) -> Result<(), StackImageError> {
    let rest = name.strip_prefix(PREFIX).unwrap_or("");
    let (repo, tag) = rest.split_once(':').unwrap_or((rest, "latest"));
    let word = |s: &str, upper: bool| {
        !s.is_empty()
            && s.len() <= 128
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b"._-".contains(&b)
                    || upper && b.is_ascii_uppercase()
            })
    };
    if word(repo, false) && word(tag, true) {
        Ok(())
    } else {
        Err(StackImageError::Name(name.to_string()))
    }
}

/// A name as given on the command line: `bookworm` means `quarry-stack/bookworm:latest`.
pub fn full_name(name: &str) -> String {
    let name = if name.starts_with(PREFIX) {
        name.to_string()
    } else {
        format!("{PREFIX}{name}")
    };
    if name
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'))
    {
        name
    } else {
        format!("{name}:latest")
    }
}

/// Whether `image` is on the engine.
pub async fn exists(docker: &Docker, image: &str) -> bool {
    docker.inspect_image(image).await.is_ok()
}

/// Make sure `name` exists, building it on first need with progress to `p`.
pub async fn ensure(docker: &Docker, name: &str, p: &Progress) -> Result<(), StackImageError> {
    if exists(docker, name).await {
        return Ok(());
    }
    let _guard = BUILDING.lock().await;
    let _machine = machine_lock().await?;
    // Another push may have built it while this one waited.
    if exists(docker, name).await {
        return Ok(());
    }
    let from = std::env::var(FROM_ENV).ok().filter(|s| !s.is_empty());
    match from {
        Some(base) if exists(docker, &base).await => {
            p.step(format!(
                "Building the stack image {name} from {base} (first use)"
            ));
            build_from(docker, name, &base, p).await
        }
        _ => {
            p.step(format!(
                "Building the stack image {name} (first use, ~2-4 min)"
            ));
            build_debootstrap(name, false, p).await
        }
    }
}

/// `quarry stack build`: build `name` (again with `force`), by debootstrap or
/// `FROM base`.
pub async fn build(
    docker: &Docker,
    name: &str,
    force: bool,
    base: Option<&str>,
    p: &Progress,
) -> Result<(), StackImageError> {
    validate_name(name)?;
    let _guard = BUILDING.lock().await;
    let _machine = machine_lock().await?;
    if !force && exists(docker, name).await {
        p.step(format!(
            "Stack image {name} already exists (use --force to rebuild)"
        ));
        return Ok(());
    }
    match base {
        Some(base) => {
            let plain = !base.is_empty()
                && base.len() <= 255
                && base.as_bytes()[0].is_ascii_alphanumeric()
                && base
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b));
            if !plain {
                return Err(StackImageError::Base(base.to_string()));
            }
            if !exists(docker, base).await {
                return Err(StackImageError::NoBase(base.to_string()));
            }
            build_from(docker, name, base, p).await
        }
        None => build_debootstrap(name, force, p).await,
    }
}

/// Daemons of other data dirs and `quarry stack build` share the engine:
/// one stack build per machine at a time (held until dropped).
async fn machine_lock() -> Result<std::fs::File, StackImageError> {
    let path = std::env::temp_dir().join("quarry-stack-build.lock");
    let at = path.clone();
    let locked = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    locked.map_err(|source| StackImageError::Lock { path: at, source })
}

/// Run the embedded `stack/build.sh` with bash, streaming its lines.
async fn build_debootstrap(name: &str, force: bool, p: &Progress) -> Result<(), StackImageError> {
    validate_name(name)?;
    let started = Instant::now();
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(BUILD_SH).arg("quarry-stack-build");
    if force {
        cmd.arg("--force");
    }
    cmd.args(suite_args(name));
    cmd.arg(name)
        .env(
            "PATH",
            format!(
                "{}:/usr/sbin:/sbin",
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(StackImageError::Bash)?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let tail = std::sync::Mutex::new(Vec::<String>::new());
    let pump = |r: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
        let tail = &tail;
        async move {
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                pass_through(p, &line);
                if let Ok(mut t) = tail.lock() {
                    if t.len() == 10 {
                        t.remove(0);
                    }
                    t.push(line);
                }
            }
        }
    };
    let work = async {
        tokio::join!(pump(Box::new(stdout)), pump(Box::new(stderr)));
        child.wait().await
    };
    let status = tokio::time::timeout(BUILD_DEADLINE, work)
        .await
        .map_err(|_| StackImageError::Deadline {
            name: name.to_string(),
            limit: BUILD_DEADLINE,
        })?
        .map_err(|source| StackImageError::Wait {
            name: name.to_string(),
            source,
        })?;
    if !status.success() {
        let last = tail.lock().map(|t| t.join(" | ")).unwrap_or_default();
        return Err(StackImageError::Failed {
            name: name.to_string(),
            status: status.to_string(),
            last,
        });
    }
    tracing::info!(
        stack = name,
        seconds = started.elapsed().as_secs(),
        "built the stack image"
    );
    Ok(())
}

/// A stack on top of an existing Debian-based image: install what the
/// buildpacks need unless it is there, add the user `app` and the entrypoint.
async fn build_from(
    docker: &Docker,
    name: &str,
    base: &str,
    p: &Progress,
) -> Result<(), StackImageError> {
    validate_name(name)?;
    let dockerfile = from_dockerfile(base);
    let mut ctx = tar::Builder::new(Vec::new());
    let context = |source| StackImageError::Context {
        name: name.to_string(),
        source,
    };
    let mut add = |path: &str, body: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        ctx.append_data(&mut h, path, body).map_err(context)
    };
    add("Dockerfile", dockerfile.as_bytes(), 0o644)?;
    add("quarry-entrypoint", ENTRYPOINT_SH.as_bytes(), 0o755)?;
    // The host's own CAs (a TLS-inspecting proxy), as build.sh does.
    let mut certs = 0;
    if let Ok(dir) = std::fs::read_dir("/usr/local/share/ca-certificates") {
        for e in dir.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            if file.ends_with(".crt")
                && let Ok(body) = std::fs::read(e.path())
            {
                add(&format!("certs/{file}"), &body, 0o644)?;
                certs += 1;
            }
        }
    }
    if certs == 0 {
        add("certs/.keep", b"", 0o644)?;
    }
    let ctx = ctx.into_inner().map_err(context)?;
    crate::build::build_dockerfile(
        docker,
        "the stack",
        crate::build::Context::Bytes(ctx),
        name,
        HashMap::new(),
        p,
        BUILD_DEADLINE,
    )
    .await
    .map_err(|e| StackImageError::Build(Box::new(e)))?;
    Ok(())
}

fn from_dockerfile(base: &str) -> String {
    format!(
        "FROM {base}\n\
         USER root\n\
         RUN set -e; if ! command -v python3 >/dev/null || ! command -v npm >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then \
         apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv python3-pip nodejs npm ca-certificates && rm -rf /var/lib/apt/lists/*; fi; \
         id -u app >/dev/null 2>&1 || useradd --uid 65000 --user-group --home-dir /app --create-home --shell /bin/bash app\n\
         COPY certs/ /usr/local/share/ca-certificates/\n\
         RUN (command -v update-ca-certificates >/dev/null && update-ca-certificates >/dev/null 2>&1) || true\n\
         COPY quarry-entrypoint /usr/local/bin/quarry-entrypoint\n\
         ENV LANG=C.UTF-8\n\
         USER app\n\
         WORKDIR /app\n"
    )
}

/// `-----> step` and indented lines of a script, as the pusher sees them.
pub fn pass_through(p: &Progress, line: &str) {
    if let Some(step) = line.strip_prefix("-----> ") {
        p.step(step);
    } else {
        p.detail(line.strip_prefix("       ").unwrap_or(line));
    }
}

/// A stack image on the engine.
#[derive(Debug, Clone, Serialize)]
pub struct StackImage {
    pub name: String,
    pub id: String,
    /// Bytes.
    pub size: i64,
    /// Seconds since the epoch.
    pub created: i64,
}

/// Every image under `quarry-stack/`, by name.
pub async fn list(docker: &Docker) -> Result<Vec<StackImage>, StackImageError> {
    let filters = HashMap::from([("reference".to_string(), vec![format!("{PREFIX}*")])]);
    let options = ListImagesOptionsBuilder::default()
        .filters(&filters)
        .build();
    let images = docker
        .list_images(Some(options))
        .await
        .map_err(|e| StackImageError::List(crate::launch::docker_message(&e)))?;
    let mut out = Vec::new();
    for i in images {
        for tag in &i.repo_tags {
            if tag.starts_with(PREFIX) {
                out.push(StackImage {
                    name: tag.clone(),
                    id: i
                        .id
                        .trim_start_matches("sha256:")
                        .chars()
                        .take(12)
                        .collect(),
                    size: i.size,
                    created: i.created,
                });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(full_name("bookworm"), "quarry-stack/bookworm:latest");
        assert_eq!(full_name("quarry-stack/x:1"), "quarry-stack/x:1");
        assert!(validate_name(DEFAULT_STACK).is_ok());
        assert!(validate_name("quarry-stack/a b").is_err());
        assert!(validate_name("other/bookworm:latest").is_err());
        assert!(validate_name("quarry-stack/-x").is_err());
    }

    #[test]
    fn a_suite_stack_builds_that_suite_with_its_extra_pythons() {
        assert_eq!(suite_stack("forky"), "quarry-stack/forky:latest");
        assert_eq!(
            suite_args("quarry-stack/forky:latest"),
            ["--suite", "forky", "--extra", "python3.15 python3.15-venv"]
        );
        assert_eq!(
            suite_args("quarry-stack/trixie:latest"),
            ["--suite", "trixie", "--extra", ""]
        );
        assert!(suite_args("quarry-stack/custom:1").is_empty());
        assert!(suite_of(DEFAULT_STACK).is_some_and(|s| s.name == "bookworm"));
    }

    #[test]
    fn from_dockerfile_keeps_the_contract() {
        let d = from_dockerfile("debian:bookworm");
        assert!(d.starts_with("FROM debian:bookworm\n"), "{d}");
        assert!(d.contains("useradd --uid 65000"), "{d}");
        assert!(d.contains("/usr/local/bin/quarry-entrypoint"), "{d}");
    }
}
