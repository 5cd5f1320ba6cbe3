//! Test bed: the real `quarry serve` binary on free loopback ports with a
//! temporary data dir, driven by the real `git`, `ssh` and `ssh-keygen`
//! against the real Docker engine and nginx. No mocks.
//!
//! Each test starts its own server (own data dir, nginx, instance label) and
//! uses app names with a random suffix, so tests run in parallel on one
//! Docker engine. Dropping a [`Server`] stops it by PID and removes the
//! containers and images of its instance.

#![allow(dead_code)]

pub mod hosts;
pub mod https;
pub mod pebble;
pub mod sshd;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BASE_IMAGE: &str = "quarry-base/busybox:latest";

/// Poll `f` every 100 ms until it returns `Some`, or panic after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `quarry stack build` of the default stack: debootstrap once per machine
/// (2-4 min), "already exists" after that; concurrent callers wait for one
/// another.
pub fn ensure_stack() {
    stack_build(&[]);
}

/// [`ensure_stack`] for the stack of Debian suite `suite`.
pub fn ensure_suite(suite: &str) {
    stack_build(&["--suite", suite]);
}

fn stack_build(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args(["stack", "build"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "quarry stack build {}: {}{}",
        args.join(" "),
        stdout(&out),
        stderr(&out)
    );
}

/// `docker build` of the test base image (FROM scratch + static busybox),
/// once per machine; concurrent callers serialise on a lock file.
pub fn ensure_base_image() {
    let lock_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("base-image.lock");
    let lock = fs::File::create(&lock_path).unwrap();
    lock.lock().unwrap();
    let present = Command::new("docker")
        .args(["image", "inspect", BASE_IMAGE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    if !present {
        let dir = tempfile::tempdir().unwrap();
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("busybox-static is not installed (apt-get install busybox-static)");
        fs::copy(busybox, dir.path().join("busybox")).unwrap();
        fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD [\"/bin/sh\"]\n",
        )
        .unwrap();
        let out = Command::new("docker")
            .args(["build", "-q", "-t", BASE_IMAGE])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "building {BASE_IMAGE}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drop(lock);
}

/// An app name unique to this test run.
pub fn unique_app(prefix: &str) -> String {
    let n: u32 = rand::random_range(0..0xffffff);
    format!("{prefix}-{n:06x}")
}

/// A key pair made with ssh-keygen.
pub struct Key {
    pub name: String,
    pub private: PathBuf,
    pub public: PathBuf,
}

pub fn new_key(dir: &Path, name: &str, kind: &str) -> Key {
    let private = dir.join(format!("{name}_key"));
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", name, "-f"])
        .arg(&private)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Key {
        name: name.to_string(),
        public: private.with_extension("pub"),
        private,
    }
}

pub struct Server {
    /// Environment for `quarry serve` (kept across restarts).
    env: Vec<(String, String)>,
    /// RLIMIT_NOFILE (soft, hard) for `quarry serve`, when a test sets one.
    nofile: Option<(u64, u64)>,
    /// More arguments for `quarry serve` (kept across restarts).
    args: Vec<String>,
    /// A command `quarry serve` runs under (its argv, then quarry's).
    wrap: Vec<String>,
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub admin: Key,
    child: Option<Child>,
    pub ssh_port: u16,
    pub http_port: u16,
    /// nginx's HTTPS port (kept across restarts).
    pub https_port: u16,
    pub instance: String,
}

fn quarry_bin() -> &'static str {
    env!("CARGO_BIN_EXE_quarry")
}

impl Server {
    /// A fresh server with one admin key.
    pub fn start() -> Server {
        Server::start_with_env(&[])
    }

    /// [`Server::start`] with more environment for `quarry serve`.
    pub fn start_with_env(env: &[(&str, &str)]) -> Server {
        Server::start_full(env, &[], None)
    }

    /// [`Server::start_with_env`], with `quarry serve`'s descriptor limit
    /// (soft, hard) set before it runs.
    pub fn start_limited(env: &[(&str, &str)], nofile: Option<(u64, u64)>) -> Server {
        Server::start_full(env, &[], nofile)
    }

    /// [`Server::start`] with more environment and arguments for `quarry serve`.
    pub fn start_with(env: &[(&str, &str)], args: &[&str]) -> Server {
        Server::start_full(env, args, None)
    }

    /// [`Server::start_with_env`], `quarry serve` run as the last argument
    /// of `wrap` (e.g. `unshare -m … sh script`).
    pub fn start_wrapped(wrap: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_inner(env, &[], None, wrap)
    }

    fn start_full(env: &[(&str, &str)], args: &[&str], nofile: Option<(u64, u64)>) -> Server {
        Server::start_inner(env, args, nofile, &[])
    }

    fn start_inner(
        env: &[(&str, &str)],
        args: &[&str],
        nofile: Option<(u64, u64)>,
        wrap: &[&str],
    ) -> Server {
        ensure_base_image();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let admin = new_key(dir.path(), "admin", "ed25519");
        let out = Command::new(quarry_bin())
            .args(["keys", "add", "admin", "--role", "admin", "--data"])
            .arg(&data)
            .stdin(fs::File::open(&admin.public).unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "keys add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut s = Server {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            nofile,
            args: args.iter().map(|a| a.to_string()).collect(),
            wrap: wrap.iter().map(|a| a.to_string()).collect(),
            dir,
            data,
            admin,
            child: None,
            ssh_port: 0,
            http_port: 0,
            https_port: 0,
            instance: String::new(),
        };
        s.spawn(None);
        s
    }

    /// Start `quarry serve` (on the given ports, or free ones). Ports are in
    /// the ephemeral range: another process's outgoing connection may hold
    /// one for a moment (the last run's, or one the daemon picked for nginx
    /// before nginx bound it); a start refused for that is tried again for
    /// up to 30 s.
    fn spawn(&mut self, ports: Option<(u16, u16)>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let before = self.log().len();
            match self.try_spawn(ports) {
                Ok(()) => return,
                Err(status) => {
                    let log = self.log();
                    let this_run = log.get(before..).unwrap_or_default();
                    if this_run.contains("Address already in use") && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                    panic!("quarry serve exited ({status}): {log}");
                }
            }
        }
    }

    /// One start; `Err` with the exit status when it exits before it listens.
    fn try_spawn(&mut self, ports: Option<(u16, u16)>) -> Result<(), std::process::ExitStatus> {
        let _ = fs::remove_file(self.data.join("serve.json"));
        let (ssh, http) = ports.unwrap_or((0, 0));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("serve.log"))
            .unwrap();
        let mut command = match self.wrap.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(quarry_bin());
                c
            }
            None => Command::new(quarry_bin()),
        };
        if let Some((soft, hard)) = self.nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: soft,
                        rlim_max: hard,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command
            .arg("serve")
            .arg("--data")
            .arg(&self.data)
            .arg("--ssh")
            .arg(format!("127.0.0.1:{ssh}"))
            .arg("--http")
            .arg(format!("127.0.0.1:{http}"))
            .arg("--https")
            .arg(format!("127.0.0.1:{}", self.https_port))
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let serve_json = self.data.join("serve.json");
        let running: serde_json::Value =
            match wait_for("quarry serve to listen", Duration::from_secs(60), || {
                if let Some(c) = self.child.as_mut()
                    && let Ok(Some(status)) = c.try_wait()
                {
                    return Some(Err(status));
                }
                fs::read(&serve_json)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .map(Ok)
            }) {
                Ok(running) => running,
                Err(status) => {
                    self.child = None;
                    return Err(status);
                }
            };
        let port = |k: &str| {
            running[k]
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        self.ssh_port = port("ssh");
        self.http_port = port("http");
        self.https_port = port("https");
        self.instance = fs::read_to_string(self.data.join("instance"))
            .unwrap()
            .trim()
            .to_string();
        Ok(())
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM and wait: a clean stop.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if c.try_wait().unwrap().is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    panic!("quarry serve did not stop on SIGTERM within 30s");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// SIGKILL: a crash. Its nginx is left behind, as after a real crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same ports and data dir.
    pub fn restart(&mut self) {
        let ports = (self.ssh_port, self.http_port);
        self.spawn(Some(ports));
    }

    /// Register `key` with the admin's key over SSH (`keys:add NAME FLAGS`).
    pub fn add_key(&self, key: &Key, flags: &str) {
        let out = self.ssh_with_input(
            &self.admin,
            &format!("keys:add {} {flags}", key.name),
            &fs::read(&key.public).unwrap(),
        );
        assert!(
            out.status.success(),
            "keys:add {}: {}",
            key.name,
            stderr(&out)
        );
    }

    pub fn ssh_base(&self, key: &Key) -> Command {
        let mut c = Command::new("ssh");
        c.arg("-i")
            .arg(&key.private)
            .args(["-p", &self.ssh_port.to_string()])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ConnectTimeout=20",
            ])
            .stdin(Stdio::null());
        c
    }

    /// `ssh -p PORT git@127.0.0.1 <command>` with `key`.
    pub fn ssh(&self, key: &Key, command: &str) -> Output {
        self.ssh_base(key)
            .arg("git@127.0.0.1")
            .arg(command)
            .output()
            .unwrap()
    }

    /// The same with `stdin` fed to the command.
    pub fn ssh_with_input(&self, key: &Key, command: &str, stdin: &[u8]) -> Output {
        let mut child = self
            .ssh_base(key)
            .arg("git@127.0.0.1")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    /// `ssh … <command>` as the admin; asserts success, returns stdout.
    pub fn admin(&self, command: &str) -> String {
        let out = self.ssh(&self.admin, command);
        assert!(
            out.status.success(),
            "ssh {command}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    /// The `GIT_SSH_COMMAND` for `key`.
    pub fn git_ssh(&self, key: &Key) -> String {
        format!(
            "ssh -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes -o IdentitiesOnly=yes",
            key.private.display()
        )
    }

    pub fn remote(&self, path: &str) -> String {
        format!("ssh://git@127.0.0.1:{}/{path}", self.ssh_port)
    }

    /// `git push <remote> <refspec>` from `repo` with `key`.
    pub fn push_as(&self, key: &Key, repo: &Path, path: &str, refspec: &str) -> Output {
        Command::new("git")
            .current_dir(repo)
            .env("GIT_SSH_COMMAND", self.git_ssh(key))
            .args(["push", &self.remote(path), refspec])
            .output()
            .unwrap()
    }

    /// Start `git push` without waiting; stderr is piped for [`wait_line`].
    pub fn push_spawn(&self, key: &Key, repo: &Path, app: &str) -> Child {
        Command::new("git")
            .current_dir(repo)
            .env("GIT_SSH_COMMAND", self.git_ssh(key))
            .args(["push", &self.remote(app), "main"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `git clone` of the app's repo (an empty temp dir is a valid target).
    pub fn clone_app(&self, app: &str) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("git")
            .env("GIT_SSH_COMMAND", self.git_ssh(&self.admin))
            .args(["clone", "-q", &self.remote(app)])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "clone: {}", stderr(&out));
        Repo { dir }
    }

    pub fn push(&self, repo: &Path, app: &str) -> Output {
        self.push_as(&self.admin, repo, app, "main")
    }

    /// Push and assert it was accepted.
    pub fn push_ok(&self, repo: &Path, app: &str) -> String {
        let out = self.push(repo, app);
        assert!(
            out.status.success(),
            "push of {app} was rejected:\n{}\n--- server log:\n{}",
            stderr(&out),
            self.log()
        );
        stderr(&out)
    }

    /// GET through Quarry's nginx with `Host: <host>`: (status, body).
    pub fn get(&self, host: &str, path: &str) -> (u16, String) {
        http_get(("127.0.0.1", self.http_port), host, path).unwrap_or((0, String::new()))
    }

    /// The app's body at `<app>.localhost`, asserting 200.
    pub fn body(&self, app: &str) -> String {
        let (status, body) = self.get(&format!("{app}.localhost"), "/");
        assert_eq!(status, 200, "GET {app}.localhost: {body}");
        body
    }

    /// Containers of this instance (of `app` when given): (name, state, release label).
    pub fn containers(&self, app: Option<&str>) -> Vec<(String, String, String)> {
        let mut args = vec![
            "ps".to_string(),
            "-a".into(),
            "--filter".into(),
            format!("label=quarry.instance={}", self.instance),
            "--format".into(),
            "{{.Names}}\t{{.State}}\t{{.Label \"quarry.release\"}}".into(),
        ];
        if let Some(app) = app {
            args.extend(["--filter".into(), format!("label=quarry.app={app}")]);
        }
        let out = Command::new("docker").args(&args).output().unwrap();
        let mut v: Vec<_> = stdout(&out)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let mut p = l.split('\t');
                (
                    p.next().unwrap().to_string(),
                    p.next().unwrap_or("").to_string(),
                    p.next().unwrap_or("").to_string(),
                )
            })
            .collect();
        v.sort();
        v
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // An nginx left by a kill -9 test: end it by its pid file.
        if let Ok(pid) = fs::read_to_string(self.data.join("nginx/nginx.pid"))
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&*self.data.to_string_lossy()) {
                unsafe { libc::kill(pid, libc::SIGQUIT) };
            }
        }
        if self.instance.is_empty() {
            return;
        }
        let filter = format!("label=quarry.instance={}", self.instance);
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
            .unwrap();
        let ids: Vec<String> = stdout(&ids)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&ids)
                .output();
        }
        let networks = Command::new("docker")
            .args(["network", "ls", "-q", "--filter", &filter])
            .output()
            .unwrap();
        let networks: Vec<String> = stdout(&networks)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !networks.is_empty() {
            let _ = Command::new("docker")
                .args(["network", "rm"])
                .args(&networks)
                .output();
        }
        let volumes = Command::new("docker")
            .args(["volume", "ls", "-q", "--filter", &filter])
            .output()
            .unwrap();
        let volumes: Vec<String> = stdout(&volumes)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !volumes.is_empty() {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f"])
                .args(&volumes)
                .output();
        }
        let images = Command::new("docker")
            .args(["images", "-q", "--filter", &filter])
            .output()
            .unwrap();
        let images: Vec<String> = stdout(&images)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !images.is_empty() {
            let _ = Command::new("docker")
                .args(["rmi", "-f"])
                .args(&images)
                .output();
        }
    }
}

/// A plain HTTP/1.0 GET.
pub fn http_get(addr: (&str, u16), host: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A git repo made from `tests/apps/<name>`, committed on `main`.
pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    pub fn fixture(name: &str) -> Repo {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/apps")
            .join(name);
        assert!(src.is_dir(), "no fixture app {}", src.display());
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&src, dir.path());
        let repo = Repo { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.commit("first");
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn git(&self, args: &[&str]) -> Output {
        let out = Command::new("git")
            .current_dir(self.path())
            .args([
                "-c",
                "user.email=test@quarry.invalid",
                "-c",
                "user.name=test",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
        out
    }

    pub fn write(&self, path: &str, content: &str) {
        let p = self.path().join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    pub fn commit(&self, message: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
    }

    /// Replace the tree with another fixture's files (history kept).
    pub fn replace_with(&self, name: &str) {
        for entry in fs::read_dir(self.path()).unwrap() {
            let p = entry.unwrap().path();
            if p.file_name().unwrap() != ".git" {
                if p.is_dir() {
                    fs::remove_dir_all(&p).unwrap()
                } else {
                    fs::remove_file(&p).unwrap()
                }
            }
        }
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/apps")
                .join(name),
            self.path(),
        );
        self.commit(&format!("switch to {name}"));
    }
}

fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for entry in fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            fs::copy(entry.path(), &to).unwrap();
        }
    }
}

/// Read `child`'s stderr until a line contains `needle`; returns what was
/// read. The rest of stderr goes on being collected by the returned handle.
pub fn wait_line(child: &mut Child, needle: &str) -> (String, std::thread::JoinHandle<String>) {
    use std::io::BufRead;
    let stderr = child.stderr.take().expect("stderr piped");
    let mut reader = std::io::BufReader::new(stderr);
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "stream ended before {needle:?}:\n{seen}");
        seen.push_str(&line);
        if line.contains(needle) {
            break;
        }
    }
    let rest = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = reader.read_to_string(&mut s);
        s
    });
    (seen, rest)
}
