//! Buildpack builds (Heroku's classic API) for apps without a Dockerfile.
//!
//! The build stage of a push: a Dockerfile in the repo root is built as it
//! always was, unless quarry.yml `build.buildpack` or the `BUILDPACK_URL`
//! config var names a buildpack; without a Dockerfile the built-in buildpacks
//! are asked in order (`bin/detect`). The chosen buildpack's `bin/detect`,
//! `bin/compile BUILD CACHE ENV` and `bin/release BUILD` run in one throwaway
//! container from the stack image, as uid 65000 (no host account); the
//! compiled BUILD dir becomes the app image (`/app`), `FROM` the app's
//! dependency image (the stack plus `.venv` / `node_modules`, made once per
//! dependency change, see [`deps`]). The cache dir is the app's own
//! (`stacks/<app>/build/cache`), kept across pushes. May touch: the app's
//! `build/` dir, `<data>/buildpacks`, the Docker engine (one build container
//! and one or two image builds per push), `git clone`.

mod builtin;
mod cache;
mod container;
mod deps;
mod error;
mod image;
mod release;
mod source;
mod work;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::build;
use crate::daemon::Daemon;
use crate::launch;
use crate::progress::Progress;
use crate::stack::{self, Stack};
use crate::stackimage;
use crate::store::Release;

pub use crate::stack::through_entrypoint;
pub use crate::stackimage::ENTRYPOINT;
pub use builtin::{BUILTIN, builtin_dir, builtin_names, install};
pub use cache::cache_dir;
pub use deps::remove_images as remove_deps_images;
pub use error::BuildpackError;
pub use release::{manifest_source, process_types};
pub use source::Source;

#[cfg(test)]
use image::image_dockerfile;
use image::{image_context, split_layers};
use work::{CacheLoan, Work};

/// The config var that names a buildpack (Heroku's).
pub const BUILDPACK_URL: &str = "BUILDPACK_URL";

/// The uid and gid builds and buildpack apps run as, given explicitly to
/// the engine so the stack image's own user does not matter. No host
/// account: above `useradd`'s range (login.defs UID_MAX 60000) and below the
/// subordinate ranges (100000 and up), never 1000, the first real user.
pub const BUILD_UID: u32 = 65_000;

/// Largest Dockerfile read to check its base images.
const MAX_DOCKERFILE: u64 = 1024 * 1024;

/// Largest `bin/release` output read back.
const MAX_RELEASE_YML: u64 = 64 * 1024;

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
        // A cache lent to a build that never finished comes home first.
        work::reclaim(&work_dir(d, &app), &cache_dir(d, &app));
        let _ = fs::remove_dir_all(work_dir(d, &app));
    }
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
pub fn choose(stack: &Stack, env: &BTreeMap<String, String>) -> Result<Choice, BuildpackError> {
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
    key: &crate::store::KeyRecord,
    release: &mut Release,
    tree: crate::receive::Tree,
    stack: Stack,
    p: &Progress,
) -> Result<Stack, BuildpackError> {
    let deadline = build::deadline(stack.manifest.build.timeout);
    // One label only: the classic builder adds a build step per label.
    // The tag names the app; the label scopes cleanup to this instance.
    let labels = HashMap::from([(launch::LABEL_INSTANCE.to_string(), d.instance.clone())]);
    match choose(&stack, &release.env)? {
        Choice::Dockerfile => {
            let dockerfile = tree
                .open()
                .and_then(|f| {
                    crate::receive::file_in_tar(io::BufReader::new(f), "Dockerfile", MAX_DOCKERFILE)
                })
                .map_err(BuildpackError::io("Dockerfile"))?
                .unwrap_or_default();
            build::images::check_dockerfile(
                app,
                "Dockerfile",
                &String::from_utf8_lossy(&dockerfile),
            )?;
            p.step(format!("Building {} from the Dockerfile", release.image));
            let context = build::Context::File(
                tree.open()
                    .map_err(BuildpackError::io("cannot read the pushed tree"))?,
            );
            let _building = d.builds.building().await;
            build::build_dockerfile(&d.docker, app, context, &release.image, labels, p, deadline)
                .await?;
            Ok(stack)
        }
        Choice::Buildpack(asked) => {
            let work = Work::new(work_dir(d, app)).map_err(BuildpackError::io(format!(
                "cannot make the build dir of {app}"
            )))?;
            // Only an admin's push may read a buildpack from the server's disk.
            let trusted = key.role == crate::store::Role::Admin;
            let stack = buildpack_build(
                d,
                app,
                release,
                &tree,
                &stack,
                (asked, trusted, deadline),
                &work,
                p,
            )
            .await;
            drop(work);
            let stack = stack?;
            cache::prune_downloads(d, app, release, stack.manifest.releases.keep, p);
            release.manifest = stack.source.clone();
            d.store
                .write_release(app, release)
                .map_err(BuildpackError::io(format!(
                    "cannot record release v{} of {app}",
                    release.number
                )))?;
            Ok(stack)
        }
    }
}

fn work_dir(d: &Daemon, app: &str) -> PathBuf {
    d.store.app_dir(app).join("build").join("work")
}

#[allow(clippy::too_many_arguments)]
async fn buildpack_build(
    d: &Daemon,
    app: &str,
    release: &Release,
    tree: &crate::receive::Tree,
    stack: &Stack,
    (asked, trusted, deadline): (Option<Source>, bool, std::time::Duration),
    work: &Work,
    p: &Progress,
) -> Result<Stack, BuildpackError> {
    let src = work.src();
    {
        let reader = tree
            .open()
            .map_err(BuildpackError::io("cannot read the pushed tree"))?;
        let mut archive = tar::Archive::new(io::BufReader::new(reader));
        archive.set_preserve_permissions(true);
        archive
            .unpack(&src)
            .map_err(BuildpackError::io("cannot unpack the pushed tree"))?;
    }
    // Which buildpack, and the directory mounted as /buildpack.
    let (name, dir) = source::resolve(d, asked, trusted, &src, &work.fetched(), p).await?;

    // The runtime asked for picks the stack: refused here, before any download.
    let (stack_image, runtime_env) = source::runtime_stack(&name, &src, p)?;
    let stack_image = &stack_image;
    stackimage::ensure(&d.docker, stack_image, p).await?;
    let started = Instant::now();

    // ENV_DIR: the app's config vars over the global ones, one file each.
    let mut vars = release.global_env.clone();
    vars.extend(release.env.clone());
    for (key, value) in &vars {
        let path = work.env().join(key);
        fs::write(&path, value).map_err(BuildpackError::io("cannot write the env dir"))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(
            BuildpackError::io(format!("cannot restrict {}", path.display())),
        )?;
    }
    // The cache joins the build dir in one mount for the build (moved, not
    // copied), so the buildpack can move and hard-link between the two.
    let _loan = CacheLoan::new(cache_dir(d, app), work.cache()).map_err(BuildpackError::io(
        "cannot lend the build cache to the build",
    ))?;
    let cache = work.cache();
    let owned = [src.clone(), work.env(), work.out()];
    tokio::task::spawn_blocking(move || -> Result<(), crate::confined::ConfinedError> {
        for dir in &owned {
            crate::confined::chown_tree(dir, BUILD_UID)?;
        }
        // A cache left by an older uid (1000) is handed over once, as a whole.
        use std::os::unix::fs::MetadataExt;
        let owner = fs::symlink_metadata(&cache).map(|m| m.uid()).ok();
        if owner != Some(BUILD_UID) {
            crate::confined::chown_tree(&cache, BUILD_UID)?;
        }
        Ok(())
    })
    .await?
    .map_err(|source| BuildpackError::Confined {
        what: format!("cannot hand the build dirs to uid {BUILD_UID}"),
        source,
    })?;

    p.step(format!(
        "Building {} with the {name} buildpack on {stack_image}",
        release.image
    ));
    let compiled = Instant::now();
    let started_build = Instant::now();
    container::run_build_container(
        d,
        app,
        release,
        (&name, &dir),
        work,
        (stack_image, runtime_env),
        deadline,
        p,
    )
    .await?;
    p.detail(format!(
        "compiled in {:.1}s",
        compiled.elapsed().as_secs_f64()
    ));

    // The build wrote out/: no link is followed, no FIFO waited on.
    let release_yml = crate::confined::read_file(&work.out(), "release.yml", MAX_RELEASE_YML)
        .map_err(|source| BuildpackError::Confined {
            what: format!("the {name} buildpack's bin/release output"),
            source,
        })?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let defaults = process_types(&name, &release_yml)?;
    let source = manifest_source(stack.source.as_ref(), &defaults, &name)?;
    let stack = stack::from_source(source)?;

    // The dependency dirs become the dependency image (made once per
    // dependency change); the app image is that plus the app's own files.
    let layers = work.layers();
    let names = {
        let (src, layers) = (src.clone(), layers.clone());
        tokio::task::spawn_blocking(move || split_layers(&src, &layers))
            .await?
            .map_err(BuildpackError::io("cannot split off the dependency dirs"))?
    };
    let left = deadline.saturating_sub(started_build.elapsed());
    let deps = deps::ensure(d, app, stack_image, &layers, names, left, p).await?;
    let base = deps.as_deref().unwrap_or(stack_image);

    p.step(format!("Making the app image {}", release.image));
    // Kept so another server can build the same image on its own copy of
    // the stack instead of receiving the whole image (see `remote_build`).
    let kept = context_paths(d, app, &release.image).0;
    let packing = Instant::now();
    image_context(base, &src, defaults.get("web").map(String::as_str), &kept)
        .await
        .map_err(BuildpackError::io("cannot pack the compiled app"))?;
    keep_context(d, app, &release.image, stack_image, deps.as_deref())
        .map_err(BuildpackError::io("cannot keep the compiled app"))?;
    let context =
        fs::File::open(&kept).map_err(BuildpackError::io("cannot read the compiled app"))?;
    let context_mb = context.metadata().map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    let (packed, building) = (packing.elapsed(), Instant::now());
    build_kept(
        d,
        &d.docker,
        app,
        context,
        &release.image,
        deadline.saturating_sub(started_build.elapsed()),
    )
    .await?;
    // Where a build's time goes, for whoever wonders why a push took long.
    p.detail(format!(
        "context packed ({context_mb:.1} MB) in {:.1}s, image built by the engine in {:.1}s",
        packed.as_secs_f64(),
        building.elapsed().as_secs_f64()
    ));
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

/// `stacks/<app>/build/images/<tag>.tar` (the app image's build context)
/// and `<tag>.stack` (the stack it builds on), for release image `image`;
/// `<tag>.deps` names its dependency image, when it has one.
fn context_paths(d: &Daemon, app: &str, image: &str) -> (PathBuf, PathBuf) {
    let tag = image.rsplit(':').next().unwrap_or(image);
    let dir = d.store.app_dir(app).join("build").join("images");
    (
        dir.join(format!("{tag}.tar")),
        dir.join(format!("{tag}.stack")),
    )
}

fn deps_file(stack_file: &Path) -> PathBuf {
    stack_file.with_extension("deps")
}

fn keep_context(
    d: &Daemon,
    app: &str,
    image: &str,
    stack: &str,
    deps: Option<&str>,
) -> io::Result<()> {
    let (_, stack_file) = context_paths(d, app, image);
    match deps {
        Some(deps) => crate::store::write_atomic(&deps_file(&stack_file), deps.as_bytes(), 0o644)?,
        None => match fs::remove_file(deps_file(&stack_file)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        },
    }
    crate::store::write_atomic(&stack_file, stack.as_bytes(), 0o644)
}

/// Forget the kept build context of `image` (pruned with its release).
pub fn drop_context(d: &Daemon, app: &str, image: &str) {
    let (tar, stack) = context_paths(d, app, image);
    let _ = fs::remove_file(tar);
    let _ = fs::remove_file(deps_file(&stack));
    let _ = fs::remove_file(stack);
}

/// After pruning the releases of `app`: remove its dependency images no kept
/// release is built on, on each of `engines`, and their kept contexts.
/// Build a kept context (a tar of the compiled app or its dependencies) into
/// `image` on `docker`: labelled as this instance's, under the build gate,
/// its output not shown, within `deadline`.
pub(super) async fn build_kept(
    d: &Daemon,
    docker: &bollard::Docker,
    app: &str,
    context: fs::File,
    image: &str,
    deadline: std::time::Duration,
) -> Result<(), BuildpackError> {
    let labels = HashMap::from([(launch::LABEL_INSTANCE.to_string(), d.instance.clone())]);
    let _building = d.builds.building().await;
    build::build_dockerfile(
        docker,
        app,
        build::Context::File(context),
        image,
        labels,
        &Progress::silent(),
        deadline,
    )
    .await?;
    Ok(())
}

pub async fn prune_deps(d: &Daemon, app: &str, engines: &[(String, bollard::Docker)]) {
    let used = deps::in_use(d, app);
    for (_, docker) in engines {
        deps::remove_images(docker, app, &used).await;
    }
}

/// Make release image `image` of a buildpack app on another server's engine
/// from its kept build context: the stack goes there once (docker save →
/// load), then each release sends only the compiled app (tens of MB, not the
/// whole image). Returns `None` when `image` was not built by a buildpack
/// (no context kept): the caller copies the image itself.
pub async fn remote_build(
    d: &Daemon,
    app: &str,
    image: &str,
    target: &bollard::Docker,
    server: &str,
    p: &Progress,
) -> Result<Option<String>, BuildpackError> {
    let (tar, stack_file) = context_paths(d, app, image);
    let (Ok(context), Ok(stack)) = (fs::File::open(&tar), fs::read_to_string(&stack_file)) else {
        return Ok(None);
    };
    let deps = fs::read_to_string(deps_file(&stack_file))
        .ok()
        .map(|s| s.trim().to_string());
    let mut said = Vec::new();
    if target.inspect_image(&stack).await.is_err() {
        p.detail(format!(
            "copying the stack image {stack} to server {server} (once per server)"
        ));
        crate::fleet::ensure_image(&d.docker, target, &stack).await?;
        said.push(format!("copied {stack}"));
    }
    if let Some(deps) = &deps
        && let Some(done) = deps::ensure_on(d, app, deps, target).await?
    {
        said.push(done);
    }
    let size = context.metadata().map(|m| m.len()).unwrap_or(0);
    build_kept(d, target, app, context, image, build::max_build()).await?;
    said.push(format!(
        "built {image} there from the compiled app ({:.1} MB)",
        size as f64 / 1e6
    ));
    Ok(Some(said.join(", ")))
}

#[cfg(test)]
mod tests;
