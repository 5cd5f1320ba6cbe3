//! Confined file access for folders a tenant controls: a build's cache, work
//! and output folders, and the checked-out pushed tree.
//!
//! The daemon runs as root, and what lies in these folders was written by a
//! build or a push, so every path is walked one component at a time with
//! `openat(O_NOFOLLOW)` from a folder the daemon made: a symlink anywhere on
//! the way is an error (or, inside a walk, an entry kept as a link), never a
//! door out of the folder. Reads open with `O_NONBLOCK` and take only
//! size-capped regular files, so a FIFO or a device is a clear error, not a
//! hang. May touch: the folder it is given, nothing outside it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, OFlags, Uid};

/// Deeper trees than this are not walked (each level holds one descriptor).
const MAX_DEPTH: usize = 64;

/// What went wrong with a confined path; `path` is relative to the folder.
#[derive(Debug, thiserror::Error)]
pub enum ConfinedError {
    #[error("{path} is a symlink, which is not followed")]
    Symlink { path: String },
    #[error("{path} is not a regular file (a {kind})")]
    NotRegular { path: String, kind: &'static str },
    #[error("{path} is not a directory")]
    NotDir { path: String },
    #[error("{path} is larger than {limit} bytes")]
    TooLarge { path: String, limit: u64 },
    #[error("{path} leaves its folder (absolute or ..)")]
    Escapes { path: String },
    #[error("{path} is nested more than {MAX_DEPTH} folders deep")]
    TooDeep { path: String },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

fn io_err(path: &str, e: impl Into<io::Error>) -> ConfinedError {
    ConfinedError::Io {
        path: if path.is_empty() {
            ".".into()
        } else {
            path.into()
        },
        source: e.into(),
    }
}

fn kind_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Unknown => "special file",
    }
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Open `name` in `dir` as a directory without following a symlink.
fn open_subdir(dir: BorrowedFd<'_>, name: &str, shown: &str) -> Result<OwnedFd, ConfinedError> {
    match rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(rustix::io::Errno::LOOP) => Err(ConfinedError::Symlink { path: shown.into() }),
        Err(rustix::io::Errno::NOTDIR) => {
            // O_NOFOLLOW|O_DIRECTORY on a symlink may say ENOTDIR: tell which.
            match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                    Err(ConfinedError::Symlink { path: shown.into() })
                }
                _ => Err(ConfinedError::NotDir { path: shown.into() }),
            }
        }
        Err(e) => Err(io_err(shown, e)),
    }
}

/// The plain components of `rel`; `..` and absolute paths are refused.
fn components(rel: &str) -> Result<Vec<&str>, ConfinedError> {
    let mut out = Vec::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(s) => out.push(
                s.to_str()
                    .ok_or_else(|| ConfinedError::Escapes { path: rel.into() })?,
            ),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(ConfinedError::Escapes { path: rel.into() });
            }
        }
    }
    Ok(out)
}

/// Open folder `rel` under `root`; no component (nor `root` itself) may be a symlink.
pub fn open_dir(root: &Path, rel: &str) -> Result<OwnedFd, ConfinedError> {
    let mut fd = rustix::fs::openat(CWD, root, DIR_FLAGS, Mode::empty()).map_err(|e| match e {
        rustix::io::Errno::LOOP => ConfinedError::Symlink {
            path: root.display().to_string(),
        },
        e => io_err(&root.display().to_string(), e),
    })?;
    let mut shown = String::new();
    for part in components(rel)? {
        if !shown.is_empty() {
            shown.push('/');
        }
        shown.push_str(part);
        fd = open_subdir(fd.as_fd(), part, &shown)?;
    }
    Ok(fd)
}

/// Open `name` in `dir` for reading as a regular file of at most `limit` bytes.
fn open_regular(
    dir: BorrowedFd<'_>,
    name: &str,
    shown: &str,
    limit: u64,
) -> Result<Option<(File, u64)>, ConfinedError> {
    // O_NONBLOCK: opening a FIFO with no writer returns at once (then fstat refuses it).
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
    let fd = match rustix::fs::openat(dir, name, flags | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(rustix::io::Errno::LOOP) => return Err(ConfinedError::Symlink { path: shown.into() }),
        Err(e) => return Err(io_err(shown, e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| io_err(shown, e))?;
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::RegularFile {
        return Err(ConfinedError::NotRegular {
            path: shown.into(),
            kind: kind_name(kind),
        });
    }
    let size = st.st_size.max(0) as u64;
    if size > limit {
        return Err(ConfinedError::TooLarge {
            path: shown.into(),
            limit,
        });
    }
    Ok(Some((File::from(fd), size)))
}

/// Read file `rel` under `root`, a regular file of at most `limit` bytes
/// reached through no symlink; `None` when it does not exist.
pub fn read_file(root: &Path, rel: &str, limit: u64) -> Result<Option<Vec<u8>>, ConfinedError> {
    let parts = components(rel)?;
    let Some((name, parents)) = parts.split_last() else {
        return Err(ConfinedError::NotRegular {
            path: rel.into(),
            kind: "directory",
        });
    };
    let dir = match open_dir(root, &parents.join("/")) {
        Ok(fd) => fd,
        Err(ConfinedError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let Some((file, _)) = open_regular(dir.as_fd(), name, rel, limit)? else {
        return Ok(None);
    };
    let mut buf = Vec::new();
    // The file may grow after fstat: never read past the limit.
    file.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io_err(rel, e))?;
    if buf.len() as u64 > limit {
        return Err(ConfinedError::TooLarge {
            path: rel.into(),
            limit,
        });
    }
    Ok(Some(buf))
}

/// The type of `rel` under `root` as `lstat` sees it, reached through no symlink.
fn kind(root: &Path, rel: &str) -> Option<FileType> {
    let parts = components(rel).ok()?;
    let (name, parents) = parts.split_last()?;
    let dir = open_dir(root, &parents.join("/")).ok()?;
    let st = rustix::fs::statat(&dir, *name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    Some(FileType::from_raw_mode(st.st_mode))
}

/// Whether `rel` under `root` is a regular file (not a link to one).
pub fn is_file(root: &Path, rel: &str) -> bool {
    kind(root, rel) == Some(FileType::RegularFile)
}

/// Whether `rel` under `root` is a folder (not a link to one).
pub fn is_dir(root: &Path, rel: &str) -> bool {
    kind(root, rel) == Some(FileType::Directory)
}

/// The entries of an open folder (without `.` and `..`), with their type as
/// `lstat` sees it.
fn entries(dir: BorrowedFd<'_>, shown: &str) -> Result<Vec<(String, FileType)>, ConfinedError> {
    let mut out = Vec::new();
    let list = rustix::fs::Dir::read_from(dir).map_err(|e| io_err(shown, e))?;
    for entry in list {
        let entry = entry.map_err(|e| io_err(shown, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "." || name == ".." {
            continue;
        }
        let st = rustix::fs::statat(dir, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(&join(shown, &name), e))?;
        out.push((name, FileType::from_raw_mode(st.st_mode)));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}/{b}")
    }
}

/// Remove files under `root` last modified before `cutoff`, never leaving
/// `root` (a symlink is removed as a link, and `root` being one removes
/// nothing). Returns the bytes freed.
pub fn remove_older(root: &Path, cutoff: SystemTime) -> u64 {
    let Ok(fd) = open_dir(root, "") else {
        return 0;
    };
    remove_older_in(fd.as_fd(), cutoff, 0)
}

fn remove_older_in(dir: BorrowedFd<'_>, cutoff: SystemTime, depth: usize) -> u64 {
    if depth > MAX_DEPTH {
        return 0;
    }
    let Ok(list) = entries(dir, "") else {
        return 0;
    };
    let mut freed = 0;
    for (name, kind) in list {
        if kind == FileType::Directory {
            if let Ok(sub) = open_subdir(dir, &name, &name) {
                freed += remove_older_in(sub.as_fd(), cutoff, depth + 1);
            }
            continue;
        }
        let Ok(st) = rustix::fs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        let mtime = UNIX_EPOCH + Duration::from_secs(st.st_mtime.max(0) as u64);
        if mtime < cutoff && rustix::fs::unlinkat(dir, name.as_str(), AtFlags::empty()).is_ok() {
            freed += st.st_size.max(0) as u64;
        }
    }
    freed
}

/// `chown -R uid:uid root`, changing links themselves and never leaving `root`.
pub fn chown_tree(root: &Path, uid: u32) -> Result<(), ConfinedError> {
    let fd = open_dir(root, "")?;
    let (u, g) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(uid)));
    rustix::fs::fchown(&fd, u, g).map_err(|e| io_err("", e))?;
    chown_in(fd.as_fd(), "", (u, g), 0)
}

fn chown_in(
    dir: BorrowedFd<'_>,
    shown: &str,
    ids: (Option<Uid>, Option<Gid>),
    depth: usize,
) -> Result<(), ConfinedError> {
    if depth > MAX_DEPTH {
        return Err(ConfinedError::TooDeep { path: shown.into() });
    }
    for (name, kind) in entries(dir, shown)? {
        let path = join(shown, &name);
        rustix::fs::chownat(dir, name.as_str(), ids.0, ids.1, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(&path, e))?;
        if kind == FileType::Directory {
            let sub = open_subdir(dir, &name, &path)?;
            chown_in(sub.as_fd(), &path, ids, depth + 1)?;
        }
    }
    Ok(())
}

/// Write folder `rel` under `root` as a tar (its contents at the top) to
/// `out`: directories, regular files and symlinks (as links, never
/// followed); at most `limit` bytes of file content. Returns the bytes of
/// content written.
pub fn tar_dir<W: Write>(root: &Path, rel: &str, out: W, limit: u64) -> Result<u64, ConfinedError> {
    let mut builder = tar::Builder::new(out);
    let total = append_dir(&mut builder, root, rel, "", limit)?;
    builder.finish().map_err(|e| io_err(rel, e))?;
    Ok(total)
}

/// Like [`tar_dir`], into an existing tar, under `prefix` (a folder entry
/// of its own when not empty).
pub fn append_dir<W: Write>(
    builder: &mut tar::Builder<W>,
    root: &Path,
    rel: &str,
    prefix: &str,
    limit: u64,
) -> Result<u64, ConfinedError> {
    let fd = open_dir(root, rel)?;
    if !prefix.is_empty() {
        let st = rustix::fs::fstat(&fd).map_err(|e| io_err(rel, e))?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(st.st_mode & 0o7777);
        h.set_size(0);
        builder
            .append_data(&mut h, format!("{prefix}/"), io::empty())
            .map_err(|e| io_err(rel, e))?;
    }
    let mut total = 0;
    tar_in(builder, fd.as_fd(), prefix, limit, &mut total, 0)?;
    Ok(total)
}

fn tar_in<W: Write>(
    b: &mut tar::Builder<W>,
    dir: BorrowedFd<'_>,
    shown: &str,
    limit: u64,
    total: &mut u64,
    depth: usize,
) -> Result<(), ConfinedError> {
    if depth > MAX_DEPTH {
        return Err(ConfinedError::TooDeep { path: shown.into() });
    }
    for (name, kind) in entries(dir, shown)? {
        let path = join(shown, &name);
        let mut h = tar::Header::new_gnu();
        match kind {
            FileType::Directory => {
                let sub = open_subdir(dir, &name, &path)?;
                let st = rustix::fs::fstat(&sub).map_err(|e| io_err(&path, e))?;
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(st.st_mode & 0o7777);
                h.set_size(0);
                b.append_data(&mut h, format!("{path}/"), io::empty())
                    .map_err(|e| io_err(&path, e))?;
                tar_in(b, sub.as_fd(), &path, limit, total, depth + 1)?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, name.as_str(), Vec::new())
                    .map_err(|e| io_err(&path, e))?;
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, &path, target.to_string_lossy().as_ref())
                    .map_err(|e| io_err(&path, e))?;
            }
            FileType::RegularFile => {
                let Some((file, size)) = open_regular(dir, &name, &path, u64::MAX)? else {
                    continue;
                };
                let st = rustix::fs::fstat(&file).map_err(|e| io_err(&path, e))?;
                *total += size;
                if *total > limit {
                    return Err(ConfinedError::TooLarge {
                        path: "the folder".into(),
                        limit,
                    });
                }
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(st.st_mode & 0o7777);
                h.set_size(size);
                // Exactly `size` bytes, even if the file changed since fstat.
                let body = file.take(size).chain(io::repeat(0)).take(size);
                b.append_data(&mut h, &path, body)
                    .map_err(|e| io_err(&path, e))?;
            }
            other => {
                return Err(ConfinedError::NotRegular {
                    path,
                    kind: kind_name(other),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
