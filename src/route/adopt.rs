//! The nginx process Quarry routes through: one it started (its child) or
//! one a previous daemon of the same data dir left running (adopted), so a
//! daemon restart — kill -9, `systemctl restart`, an upgrade — never takes
//! the traffic down. An nginx is adopted only when its pid file names a live
//! process whose title says it is the nginx master of this very config.
//! Here too: starting it, restarting it when it died, stopping it. Touches
//! `/proc` (read) and signals only that master.

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use tokio::process::{Child, Command};
use tracing::{info, warn};

use super::{RouteError, Router};

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

impl Router {
    pub(super) fn spawn(&self) -> Result<Child, RouteError> {
        // A socket file left by an nginx that died keeps the new one from binding.
        let _ = fs::remove_file(self.dir.join(super::stream::SOCKET));
        Command::new(&self.nginx)
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .arg("-e")
            .arg(self.dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| RouteError::Start {
                nginx: self.nginx.clone(),
                source,
            })
    }

    pub(super) async fn stop_stale(&self) {
        // Only an nginx whose command line names our config is ours to end.
        let Some(pid) = running_master(&self.dir) else {
            return;
        };
        warn!(pid, "stopping an nginx left over from an earlier run");
        stop_pid(pid).await;
    }

    /// Restart nginx if it died (called by the supervisor loop); a fresh
    /// nginx gets the route table back.
    pub async fn ensure_running(&self) {
        {
            let mut child = self.child.lock().await;
            let dead = match child.as_mut() {
                Some(c) => c.exited(&self.dir).is_some(),
                None => true,
            };
            if !dead {
                return;
            }
            warn!("nginx is not running; starting it again");
            match self.spawn() {
                Ok(c) => *child = Some(Nginx::Child(c)),
                Err(e) => {
                    warn!("{e}");
                    return;
                }
            }
        }
        let generation = self.generation.load(Ordering::SeqCst);
        if let Err(e) = self
            .wait_generation(generation, Duration::from_secs(15))
            .await
        {
            warn!("{e}");
            return;
        }
        if let Err(e) = self.load_table().await {
            warn!("{e}");
        }
    }

    /// Graceful stop (SIGQUIT: finish in-flight requests), waiting for exit.
    /// With `QUARRY_KEEP_NGINX=1` nginx goes on serving for the next
    /// daemon to adopt (a restart or an upgrade, not a stop).
    pub async fn stop(&self) {
        let mut child = self.child.lock().await;
        if std::env::var("QUARRY_KEEP_NGINX").as_deref() == Ok("1") {
            if let Some(pid) = child.as_ref().and_then(Nginx::pid) {
                info!(pid, "leaving nginx serving for the next start to adopt");
            }
            return;
        }
        match child.take() {
            Some(Nginx::Child(mut c)) => {
                if let Some(pid) = c.id() {
                    let _ = signal(pid as i32, Signal::QUIT);
                }
                if tokio::time::timeout(Duration::from_secs(10), c.wait())
                    .await
                    .is_err()
                {
                    let _ = c.kill().await;
                }
            }
            Some(Nginx::Adopted(pid)) => stop_pid(pid).await,
            None => {}
        }
    }
}

/// SIGQUIT to an nginx master that is not our child; wait up to 10 s.
pub(super) async fn stop_pid(pid: i32) {
    // The caller checked the pid is our nginx master.
    let _ = signal(pid, Signal::QUIT);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && Path::new(&format!("/proc/{pid}")).exists() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Send `sig` to the nginx master `pid` (never to a group: `pid` is > 0).
pub(super) fn signal(pid: i32, sig: Signal) -> std::io::Result<()> {
    let pid = Some(pid)
        .filter(|p| *p > 0)
        .and_then(Pid::from_raw)
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    rustix::process::kill_process(pid, sig).map_err(std::io::Error::from)
}

/// PIDs of `master`'s workers that still accept connections (their title is
/// exactly "nginx: worker process"; a retiring one says "is shutting down").
pub(super) fn accepting_workers(master: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The fields after the parenthesised command name: state, ppid, …
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid != Some(master) {
            continue;
        }
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let title = String::from_utf8_lossy(&cmdline);
        if title.trim_end_matches(['\0', ' ']) == "nginx: worker process" {
            out.push(pid);
        }
    }
    out
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
