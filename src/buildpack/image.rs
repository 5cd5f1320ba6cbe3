//! The app image's build context: a Dockerfile `FROM` the app's dependency
//! image (see [`super::deps`]; the stack itself when the app has no
//! dependency dirs) and the compiled app without its dependency dirs, so a
//! code-only push sends the engine only the app's own files. The image's
//! settings come before its one `COPY`: they are build-cache hits on every
//! redeploy. The compiled dir is walked without following links
//! ([`crate::confined`]). May touch: the build's work dir (renames within
//! it) and the context file it writes.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{BUILD_UID, ENTRYPOINT};

/// Dependency dirs of the compiled app that become layers of their own.
pub const LAYER_DIRS: &[&str] = &[".venv", "node_modules"];

/// The app image's Dockerfile. The compiled dir travels as `build/app`,
/// copied onto `/`: that way `/app` itself (which an older stack made for
/// uid 1000) is handed to [`BUILD_UID`] too.
pub(super) fn image_dockerfile(base: &str, web: Option<&str>) -> io::Result<String> {
    let mut dockerfile = format!(
        "FROM {base}\nUSER {BUILD_UID}:{BUILD_UID}\nWORKDIR /app\nENTRYPOINT [\"{ENTRYPOINT}\"]\n"
    );
    if let Some(web) = web {
        let cmd = serde_json::to_string(&["/bin/sh", "-c", web]).map_err(io::Error::other)?;
        dockerfile.push_str(&format!("CMD {cmd}\n"));
    }
    dockerfile.push_str(&format!("COPY --chown={BUILD_UID}:{BUILD_UID} build /\n"));
    Ok(dockerfile)
}

/// Move the dependency dirs (real dirs only, never a link) out of `build`
/// into `layers`; returns their names in [`LAYER_DIRS`] order.
pub(super) fn split_layers(build: &Path, layers: &Path) -> io::Result<Vec<&'static str>> {
    let mut moved = Vec::new();
    for name in LAYER_DIRS {
        let from = build.join(name);
        if fs::symlink_metadata(&from).is_ok_and(|m| m.is_dir()) {
            fs::rename(&from, layers.join(name))?;
            moved.push(*name);
        }
    }
    Ok(moved)
}

/// Write the app image's context (a Dockerfile `FROM base` and the compiled
/// BUILD dir, walked without following links) to `dest`, atomically, on disk.
pub(super) async fn image_context(
    base: &str,
    build: &Path,
    web: Option<&str>,
    dest: &Path,
) -> io::Result<()> {
    let (base, web) = (base.to_string(), web.map(str::to_string));
    let (build, dest) = (build.to_path_buf(), dest.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let dockerfile = image_dockerfile(&base, web.as_deref())?;
        let dir = dest.parent().expect("images dir");
        fs::create_dir_all(dir)?;
        let tmp = tempfile::NamedTempFile::new_in(dir)?;
        let mut b = tar::Builder::new(io::BufWriter::new(tmp.reopen()?));
        let mut h = tar::Header::new_gnu();
        h.set_size(dockerfile.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "Dockerfile", dockerfile.as_bytes())?;
        crate::confined::append_dir(
            &mut b,
            &build,
            "",
            "build/app",
            crate::receive::max_tree_bytes(),
        )
        .map_err(io::Error::other)?;
        b.into_inner()?
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()?;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o600))?;
        tmp.persist(&dest).map_err(|e| e.error)?;
        Ok(())
    })
    .await
    .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_dirs_are_layers_of_their_own_and_links_stay_behind() {
        assert_eq!(
            image_dockerfile("quarry/shop:deps-0123456789abcdef0123", None).unwrap(),
            "FROM quarry/shop:deps-0123456789abcdef0123\n\
             USER 65000:65000\n\
             WORKDIR /app\n\
             ENTRYPOINT [\"/usr/local/bin/quarry-entrypoint\"]\n\
             COPY --chown=65000:65000 build /\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let (build, layers) = (dir.path().join("build"), dir.path().join("layers"));
        fs::create_dir_all(build.join(".venv/bin")).unwrap();
        fs::create_dir_all(&layers).unwrap();
        std::os::unix::fs::symlink("/usr", build.join("node_modules")).unwrap();
        assert_eq!(split_layers(&build, &layers).unwrap(), [".venv"]);
        assert!(layers.join(".venv/bin").is_dir());
        assert!(build.join("node_modules").is_symlink());
        assert!(!layers.join("node_modules").exists());
    }
}
