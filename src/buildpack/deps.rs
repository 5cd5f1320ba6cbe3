//! The app's dependency image (`quarry/<app>:deps-<key>`): the stack plus the
//! compiled dependency dirs (`.venv`, `node_modules`), built once per
//! dependency key. The key is the digest of the stack's image id and of the
//! dirs' tar (names, modes, contents, link targets; no times or owners), so a
//! code-only push finds the image made by an earlier push and sends the
//! engine only the app's own files. The image's build context is kept
//! (`build/deps/<key>.tar`) so another server can build the same image on its
//! own copy of the stack. Images are pruned with the releases that use them
//! and with the app. May touch: the app's `build/deps` dir, the Docker
//! engines' `quarry/<app>:deps-*` images.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{BUILD_UID, BuildpackError};
use crate::build;
use crate::daemon::Daemon;
use crate::launch;
use crate::progress::Progress;

/// Tags of dependency images start with this (release tags are `v<N>`).
pub const TAG_PREFIX: &str = "deps-";

/// Hex digits of the key in the tag.
const KEY_LEN: usize = 20;

/// The dependency image of `app` for `key`.
pub fn deps_image(app: &str, key: &str) -> String {
    format!("quarry/{app}:{TAG_PREFIX}{key}")
}

/// The key of a dependency image's tag; `None` for any other image.
pub fn key_of<'a>(app: &str, image: &'a str) -> Option<&'a str> {
    let key = image
        .strip_prefix("quarry/")?
        .strip_prefix(app)?
        .strip_prefix(':')?
        .strip_prefix(TAG_PREFIX)?;
    (key.len() == KEY_LEN && key.bytes().all(|b| b.is_ascii_hexdigit())).then_some(key)
}

/// The dependency image's Dockerfile: the stack and one layer per dir.
pub(super) fn deps_dockerfile(stack: &str, layers: &[&str]) -> String {
    let mut dockerfile = format!("FROM {stack}\n");
    for layer in layers {
        dockerfile.push_str(&format!(
            "COPY --chown={BUILD_UID}:{BUILD_UID} layers/{layer} /app/{layer}\n"
        ));
    }
    dockerfile
}

/// `stacks/<app>/build/deps`: the kept contexts of the dependency images.
fn deps_dir(d: &Daemon, app: &str) -> PathBuf {
    d.store.app_dir(app).join("build").join("deps")
}

/// The kept build context of the dependency image `image` of `app`.
pub(super) fn context_of(d: &Daemon, app: &str, image: &str) -> Option<PathBuf> {
    key_of(app, image).map(|key| deps_dir(d, app).join(format!("{key}.tar")))
}

/// A writer that only hashes.
struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Append the dirs `names` of `layers` to `b` as `layers/<name>`, walked
/// without following links, at most the pushed-tree budget in all.
fn append_layers<W: Write>(
    b: &mut tar::Builder<W>,
    layers: &Path,
    names: &[&str],
) -> io::Result<()> {
    let mut budget = crate::receive::max_tree_bytes();
    for name in names {
        let used = crate::confined::append_dir(b, layers, name, &format!("layers/{name}"), budget)
            .map_err(io::Error::other)?;
        budget = budget.saturating_sub(used);
    }
    Ok(())
}

/// The dependency key: the stack (name and image id) and the dirs' contents.
pub(super) fn key(
    stack: &str,
    stack_id: &str,
    layers: &Path,
    names: &[&str],
) -> io::Result<String> {
    let mut hash = HashWriter(Sha256::new());
    writeln!(hash, "{stack}\n{stack_id}\n{}", names.join(","))?;
    let mut b = tar::Builder::new(hash);
    append_layers(&mut b, layers, names)?;
    let hash = b.into_inner()?;
    let digest = hash.0.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(hex[..KEY_LEN].to_string())
}

/// Write the dependency image's context (Dockerfile and dirs) to `dest`, atomically.
fn write_context(stack: &str, layers: &Path, names: &[&str], dest: &Path) -> io::Result<u64> {
    let dir = dest.parent().expect("deps dir");
    fs::create_dir_all(dir)?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    let mut b = tar::Builder::new(io::BufWriter::new(tmp.reopen()?));
    let dockerfile = deps_dockerfile(stack, names);
    let mut h = tar::Header::new_gnu();
    h.set_size(dockerfile.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "Dockerfile", dockerfile.as_bytes())?;
    append_layers(&mut b, layers, names)?;
    let file = b.into_inner()?.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    let size = file.metadata()?.len();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o600))?;
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(size)
}

/// The dependency image for the dirs `names` split off into `layers`, made
/// now unless an earlier push made it: returns its name, or `None` when the
/// app has no dependency dirs (its image is made straight from the stack).
pub(super) async fn ensure(
    d: &Daemon,
    app: &str,
    stack: &str,
    layers: &Path,
    names: Vec<&'static str>,
    deadline: Duration,
    p: &Progress,
) -> Result<Option<String>, BuildpackError> {
    if names.is_empty() {
        return Ok(None);
    }
    let stack_id = d
        .docker
        .inspect_image(stack)
        .await
        .ok()
        .and_then(|i| i.id)
        .ok_or_else(|| BuildpackError::NoStack {
            stack: stack.to_string(),
        })?;
    let hashing = Instant::now();
    let key = {
        let (stack, layers, names) = (stack.to_string(), layers.to_path_buf(), names.clone());
        tokio::task::spawn_blocking(move || key(&stack, &stack_id, &layers, &names))
            .await?
            .map_err(BuildpackError::io("cannot read the compiled dependencies"))?
    };
    let image = deps_image(app, &key);
    let what = names.join(", ");
    if d.docker.inspect_image(&image).await.is_ok() {
        p.step(format!(
            "Dependencies unchanged ({what}): reusing the dependency image {image}"
        ));
        p.detail(format!(
            "dependency key checked in {:.1}s; only the app's own files go to the engine",
            hashing.elapsed().as_secs_f64()
        ));
        return Ok(Some(image));
    }
    p.step(format!("Building the dependency image {image} ({what})"));
    let started = Instant::now();
    let dest = deps_dir(d, app).join(format!("{key}.tar"));
    let size = {
        let (stack, layers, names, dest) = (
            stack.to_string(),
            layers.to_path_buf(),
            names.clone(),
            dest.clone(),
        );
        tokio::task::spawn_blocking(move || write_context(&stack, &layers, &names, &dest))
            .await?
            .map_err(BuildpackError::io("cannot pack the compiled dependencies"))?
    };
    let context = fs::File::open(&dest).map_err(BuildpackError::io(format!(
        "cannot read {}",
        dest.display()
    )))?;
    let labels = HashMap::from([(launch::LABEL_INSTANCE.to_string(), d.instance.clone())]);
    let _building = d.builds.building().await;
    build::build_dockerfile(
        &d.docker,
        app,
        build::Context::File(context),
        &image,
        labels,
        &Progress::silent(),
        deadline,
    )
    .await?;
    p.detail(format!(
        "dependency image built from {:.1} MB in {:.1}s (once per dependency change)",
        size as f64 / 1e6,
        started.elapsed().as_secs_f64()
    ));
    Ok(Some(image))
}

/// On another server: build the dependency image `image` there from its
/// kept context (the stack is there already), or copy it when no context is
/// kept. Returns what was done, `None` when it was there.
pub(super) async fn ensure_on(
    d: &Daemon,
    app: &str,
    image: &str,
    target: &bollard::Docker,
) -> Result<Option<String>, BuildpackError> {
    if target.inspect_image(image).await.is_ok() {
        return Ok(None);
    }
    let context = context_of(d, app, image).and_then(|path| fs::File::open(path).ok());
    let Some(context) = context else {
        crate::fleet::ensure_image(&d.docker, target, image).await?;
        return Ok(Some(format!("copied {image}")));
    };
    let size = context.metadata().map(|m| m.len()).unwrap_or(0);
    super::build_kept(d, target, app, context, image, build::max_build()).await?;
    Ok(Some(format!(
        "built {image} there ({:.1} MB of dependencies)",
        size as f64 / 1e6
    )))
}

/// The dependency images of `app` on `docker`.
async fn list(docker: &bollard::Docker, app: &str) -> Vec<String> {
    let filters = HashMap::from([(
        "reference".to_string(),
        vec![format!("quarry/{app}:{TAG_PREFIX}*")],
    )]);
    let options = bollard::query_parameters::ListImagesOptionsBuilder::default()
        .filters(&filters)
        .build();
    let Ok(images) = docker.list_images(Some(options)).await else {
        return Vec::new();
    };
    images
        .into_iter()
        .flat_map(|i| i.repo_tags)
        .filter(|t| key_of(app, t).is_some())
        .collect()
}

/// Remove the dependency images of `app` on `docker` but those in `keep`
/// (release images first: an image still used by one is only untagged).
pub async fn remove_images(docker: &bollard::Docker, app: &str, keep: &BTreeSet<String>) {
    for image in list(docker, app).await {
        if keep.contains(&image) {
            continue;
        }
        if let Err(e) = docker
            .remove_image(
                &image,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await
        {
            tracing::warn!(app, image, "cannot prune: {}", launch::docker_message(&e));
        }
    }
}

/// The dependency images the kept releases of `app` are built on (their
/// kept `<tag>.deps` files), and drop the kept contexts of all others.
pub(super) fn in_use(d: &Daemon, app: &str) -> BTreeSet<String> {
    let images = d.store.app_dir(app).join("build").join("images");
    let used: BTreeSet<String> = fs::read_dir(&images)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "deps"))
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| key_of(app, s).is_some())
        .collect();
    let keys: BTreeSet<String> = used
        .iter()
        .filter_map(|i| key_of(app, i))
        .map(|k| format!("{k}.tar"))
        .collect();
    for entry in fs::read_dir(deps_dir(d, app))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keys.contains(&name) {
            let _ = fs::remove_file(entry.path());
        }
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dependency_image_is_the_stack_and_one_layer_per_dir() {
        assert_eq!(
            deps_dockerfile("quarry-stack/trixie:latest", &[".venv", "node_modules"]),
            "FROM quarry-stack/trixie:latest\n\
             COPY --chown=65000:65000 layers/.venv /app/.venv\n\
             COPY --chown=65000:65000 layers/node_modules /app/node_modules\n"
        );
    }

    #[test]
    fn tags_name_the_app_and_never_a_release() {
        let image = deps_image("shop", "0123456789abcdef0123");
        assert_eq!(image, "quarry/shop:deps-0123456789abcdef0123");
        assert_eq!(key_of("shop", &image), Some("0123456789abcdef0123"));
        // Another app whose name starts the same owns none of them.
        assert_eq!(key_of("sho", &image), None);
        assert_eq!(key_of("shop-deps", &image), None);
        assert_eq!(key_of("shop", "quarry/shop:v3"), None);
        assert_eq!(key_of("shop", "quarry/shop:deps-../x"), None);
    }

    #[test]
    fn the_key_follows_contents_not_times() {
        let dir = tempfile::tempdir().unwrap();
        let venv = dir.path().join(".venv/lib");
        fs::create_dir_all(&venv).unwrap();
        fs::write(venv.join("a.py"), "a = 1\n").unwrap();
        std::os::unix::fs::symlink("/usr/bin/python3", dir.path().join(".venv/python")).unwrap();
        let k = |stack_id: &str| key("s", stack_id, dir.path(), &[".venv"]).unwrap();
        let first = k("sha256:1");
        assert_eq!(first.len(), KEY_LEN);
        // Touched again with the same bytes: the same key.
        fs::write(venv.join("a.py"), "a = 1\n").unwrap();
        assert_eq!(k("sha256:1"), first);
        // Another stack image, another key; other contents, another key.
        assert_ne!(k("sha256:2"), first);
        fs::write(venv.join("a.py"), "a = 2\n").unwrap();
        assert_ne!(k("sha256:1"), first);
        // Each dir names its layer: the same bytes under another dir differ.
        fs::rename(dir.path().join(".venv"), dir.path().join("node_modules")).unwrap();
        assert_ne!(
            key("s", "sha256:1", dir.path(), &["node_modules"]).unwrap(),
            first
        );
    }
}
