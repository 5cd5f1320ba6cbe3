//! A buildpack build's scratch dirs (`stacks/<app>/build/work`): the pushed
//! tree, the env dir, the output, the layers split off the compiled app, and
//! the app's build cache lent to the build for its duration. May touch: the
//! app's `build/` dir only (renames within it, removal of `work/`).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A build's scratch dirs; removed when dropped.
///
/// `tree/build` (BUILD) and `tree/cache` (CACHE) share one mount in the build
/// container, so a buildpack restores its cached dependencies by a rename or
/// hard links instead of a copy.
pub(super) struct Work {
    root: PathBuf,
}

impl Work {
    pub(super) fn new(root: PathBuf) -> io::Result<Work> {
        let _ = fs::remove_dir_all(&root);
        for sub in ["tree/build", "env", "out", "layers"] {
            fs::create_dir_all(root.join(sub))?;
        }
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700))?;
        Ok(Work { root })
    }
    /// BUILD: the pushed tree, compiled in place.
    pub(super) fn src(&self) -> PathBuf {
        self.root.join("tree").join("build")
    }
    /// What the build container mounts: BUILD and CACHE inside.
    pub(super) fn tree(&self) -> PathBuf {
        self.root.join("tree")
    }
    /// CACHE while the build runs (see [`CacheLoan`]).
    pub(super) fn cache(&self) -> PathBuf {
        self.root.join("tree").join("cache")
    }
    pub(super) fn env(&self) -> PathBuf {
        self.root.join("env")
    }
    pub(super) fn out(&self) -> PathBuf {
        self.root.join("out")
    }
    /// Dependency dirs moved out of BUILD to become their own image layers.
    pub(super) fn layers(&self) -> PathBuf {
        self.root.join("layers")
    }
    pub(super) fn fetched(&self) -> PathBuf {
        self.root.join("buildpack")
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// The app's cache moved into the build's tree for one build, moved back when
/// dropped (before the [`Work`] that holds it goes). Renames only: nothing in
/// the cache is read or followed.
pub(super) struct CacheLoan {
    home: PathBuf,
    lent: PathBuf,
}

impl CacheLoan {
    pub(super) fn new(home: PathBuf, lent: PathBuf) -> io::Result<CacheLoan> {
        fs::create_dir_all(&home)?;
        fs::rename(&home, &lent)?;
        Ok(CacheLoan { home, lent })
    }
}

impl Drop for CacheLoan {
    fn drop(&mut self) {
        if let Err(e) = fs::rename(&self.lent, &self.home) {
            tracing::warn!(cache = %self.home.display(), "cannot put the build cache back: {e}");
        }
    }
}

/// After a crash: the cache still lent to `work` goes back to `home`.
pub(super) fn reclaim(work: &Path, home: &Path) {
    let lent = work.join("tree").join("cache");
    if !home.exists() && fs::symlink_metadata(&lent).is_ok_and(|m| m.is_dir()) {
        let _ = fs::rename(&lent, home);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_lent_and_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("cache");
        fs::create_dir_all(home.join("pip")).unwrap();
        let work = Work::new(dir.path().join("work")).unwrap();
        {
            let _loan = CacheLoan::new(home.clone(), work.cache()).unwrap();
            assert!(!home.exists());
            assert!(work.cache().join("pip").is_dir());
            // One file system: a hard link from the cache into BUILD works.
            fs::write(work.cache().join("pip/x"), "x").unwrap();
            fs::hard_link(work.cache().join("pip/x"), work.src().join("x")).unwrap();
        }
        assert!(home.join("pip/x").is_file());
        drop(work);
        assert!(!dir.path().join("work").exists());
        // A loan a crash interrupted is reclaimed.
        let work = Work::new(dir.path().join("work")).unwrap();
        let loan = CacheLoan::new(home.clone(), work.cache()).unwrap();
        std::mem::forget(loan);
        reclaim(&dir.path().join("work"), &home);
        assert!(home.join("pip/x").is_file());
    }
}
