//! A real OpenSSH `sshd` inside a test host's network namespace: its own
//! config, host key and authorized_keys under the host's dir, listening on
//! 10.214.0.n:22. Sessions get `DOCKER_HOST` (the namespace's engine: the
//! hosts share this machine's filesystem, so `/var/run/docker.sock` would
//! be the HQ's) and `QUARRY_HOSTS_FILE` (a per-host file instead of the
//! machine's `/etc/hosts`). Stopped by PID on drop, with its session children.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::hosts::NsHost;
use super::wait_for;

pub struct Sshd {
    pub n: u8,
    pub dir: PathBuf,
    child: Option<Child>,
    /// More sshd_config lines (kept across restarts).
    extra: String,
}

impl Sshd {
    /// Start sshd for `host`, authorizing `authorized` (an authorized_keys
    /// line). A new host key is made unless one is there.
    pub fn start(host: &NsHost, authorized: &str) -> Sshd {
        Sshd::start_with(host, authorized, "")
    }

    /// [`Sshd::start`] with more sshd_config lines.
    pub fn start_with(host: &NsHost, authorized: &str, extra: &str) -> Sshd {
        let dir = host.dir.join("sshd");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("authorized_keys"), authorized).unwrap();
        let mut s = Sshd {
            n: host.n,
            dir,
            child: None,
            extra: extra.to_string(),
        };
        s.new_host_key();
        s.spawn();
        s
    }

    /// The host key file's public half (`ssh-ed25519 AAAA… comment`).
    pub fn host_key(&self) -> String {
        std::fs::read_to_string(self.dir.join("host_key.pub"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Replace the host key (sshd reads it when started again).
    pub fn new_host_key(&self) {
        let key = self.dir.join("host_key");
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(key.with_extension("pub"));
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn config(&self) -> String {
        let d = self.dir.display();
        let host = self.dir.parent().unwrap().display();
        format!(
            "Port 22\nListenAddress 10.214.0.{n}\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nSetEnv DOCKER_HOST=unix://{host}/docker.sock QUARRY_HOSTS_FILE={host}/hosts\nLogLevel VERBOSE\n",
            n = self.n
        )
    }

    fn spawn(&mut self) {
        std::fs::write(
            self.dir.join("sshd_config"),
            format!("{}{}", self.config(), self.extra),
        )
        .unwrap();
        // The privilege separation dir sshd insists on.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("sshd.log"))
            .unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/qtns{}", self.n))
            .arg("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(self.dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("sshd is needed (apt-get install openssh-server)");
        self.child = Some(child);
        let addr = format!("10.214.0.{}:22", self.n);
        wait_for(&format!("sshd on {addr}"), Duration::from_secs(30), || {
            std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(1))
                .ok()
                .map(|_| ())
        });
    }

    /// Stop sshd and every session it forked (a real restart drops them).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // nsenter execs sshd: the child's pid is the listener's.
            let pid = child.id();
            for c in children(pid) {
                unsafe { libc::kill(c as i32, libc::SIGKILL) };
            }
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    /// Start sshd again (with whatever host key is in place now).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// The per-host file the hosts block is written to.
    pub fn hosts_file(&self) -> PathBuf {
        self.dir.parent().unwrap().join("hosts")
    }
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(Path::new("/proc").join(p.to_string()).join("stat"))
        else {
            continue;
        };
        // pid (comm) state ppid …: comm may hold spaces, so read after ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(pid) {
            found.push(p);
        }
    }
    found
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}
