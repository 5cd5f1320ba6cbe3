//! The app's build cache (`stacks/<app>/build/cache`): kept across pushes,
//! its download caches pruned with the releases no longer kept. Its contents
//! are the build's: pruning never follows a link in it. May touch: that
//! directory.

use std::path::{Path, PathBuf};

use crate::daemon::Daemon;
use crate::progress::Progress;
use crate::store::Release;

/// The app's build cache, kept across pushes (removed with the app).
pub fn cache_dir(d: &Daemon, app: &str) -> PathBuf {
    d.store.app_dir(app).join("build").join("cache")
}

/// The built-ins' download caches inside CACHE (the restored venv and
/// node_modules hold only the current dependency key already).
const DOWNLOAD_CACHES: &[&str] = &["pip", "npm"];

/// Drop cached downloads older than the oldest release still kept
/// (`releases.keep`, counting this one): the cache shrinks with the releases.
pub(super) fn prune_downloads(d: &Daemon, app: &str, release: &Release, keep: u32, p: &Progress) {
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
pub(super) fn download_cutoff(
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
    crate::clock::parse_system_time(&oldest_kept.created)
}

/// Remove files under `dir` last modified before `cutoff`; returns the bytes
/// freed. The build wrote this folder: links are removed as links, never
/// walked through (see [`crate::confined`]).
pub(super) fn remove_older(dir: &Path, cutoff: std::time::SystemTime) -> u64 {
    crate::confined::remove_older(dir, cutoff)
}
