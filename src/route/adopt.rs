//! The nginx process Quarry routes through: one it started (its child) or
//! one a previous daemon of the same data dir left running (adopted), so a
//! daemon restart — kill -9, `systemctl restart`, an upgrade — never takes
//! the traffic down. An nginx is adopted only when its pid file names a live
//! process whose title says it is the nginx master of this very config.
//! Touches `/proc` (read) and signals only that pid.

use std::fs;
use std::path::Path;

use tokio::process::Child;

/// The nginx master, supervised.
pub(super) enum Nginx {
    /// Started by this daemon.
    Child(Child),
    /// Left by an earlier daemon; watched through `/proc`.
    Adopted(i32),
}

impl Nginx {
    pub(super) fn pid(&self) -> Option<i32> {
        match self {
            Nginx::Child(c) => c.id().map(|p| p as i32),
            Nginx::Adopted(p) => Some(*p),
        }
    }

    /// `Some(why)` once the master is gone.
    pub(super) fn exited(&mut self, dir: &Path) -> Option<String> {
        match self {
            Nginx::Child(c) => match c.try_wait() {
                Ok(Some(status)) => Some(status.to_string()),
                Ok(None) => None,
                Err(e) => Some(e.to_string()),
            },
            Nginx::Adopted(p) => (master_of(dir, *p).is_none()).then(|| "gone".to_string()),
        }
    }
}

/// The pid of a running nginx master of `<dir>/nginx.conf`, from its pid file.
pub(super) fn running_master(dir: &Path) -> Option<i32> {
    let pid = fs::read_to_string(dir.join("nginx.pid")).ok()?;
    master_of(dir, pid.trim().parse().ok()?)
}

/// `pid` when it is a live nginx master started on `<dir>/nginx.conf`.
fn master_of(dir: &Path, pid: i32) -> Option<i32> {
    if pid <= 1 {
        return None;
    }
    // A zombie (our own exited child not yet reaped) is not serving.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let title = String::from_utf8_lossy(&cmdline);
    let conf = dir.join("nginx.conf");
    (title.starts_with("nginx: master process") && title.contains(&*conf.to_string_lossy()))
        .then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_naming_another_process_is_not_adopted() {
        let dir = tempfile::tempdir().unwrap();
        // Our own test process is alive but is no nginx master.
        fs::write(dir.path().join("nginx.pid"), std::process::id().to_string()).unwrap();
        assert_eq!(running_master(dir.path()), None);
        fs::write(dir.path().join("nginx.pid"), "1").unwrap();
        assert_eq!(running_master(dir.path()), None);
        fs::write(dir.path().join("nginx.pid"), "garbage").unwrap();
        assert_eq!(running_master(dir.path()), None);
    }
}
