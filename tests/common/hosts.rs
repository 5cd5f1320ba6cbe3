//! Extra Docker engines on one machine, each a "server" of the fleet: its
//! own socket, data root, exec root, pidfile, bridge and address pool, and
//! `--ip 127.0.0.N` so that what it publishes lives on its own loopback
//! address. Stopping one is a host failure. Stopped by PID on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_for;

pub struct Host {
    pub n: u8,
    pub dir: PathBuf,
    child: Option<Child>,
    /// More dockerd flags (a TCP listener with TLS, say).
    extra: Vec<String>,
}

impl Host {
    /// The engine for 127.0.0.`n` (2..=9).
    pub fn start(n: u8) -> Host {
        Host::start_with(n, &[])
    }

    /// [`Host::start`] with more dockerd flags.
    pub fn start_with(n: u8, extra: &[&str]) -> Host {
        assert!((2..=9).contains(&n));
        let dir = PathBuf::from(format!("/tmp/quarry-test-host-{n}"));
        let bridge = format!("qtbr{n}");
        stop_stale_engine(&dir);
        let _ = Command::new("ip").args(["link", "del", &bridge]).output();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        remove_network_bridges(n);
        ip_ok(&["link", "add", &bridge, "type", "bridge"]);
        ip_ok(&["addr", "add", &format!("10.212.{n}.1/24"), "dev", &bridge]);
        ip_ok(&["link", "set", &bridge, "up"]);
        let mut host = Host {
            n,
            dir,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        host.start_engine();
        host
    }

    /// Start (or start again) this host's dockerd and wait until it answers.
    pub fn start_engine(&mut self) {
        let n = self.n;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dockerd.log"))
            .unwrap();
        let child = Command::new("dockerd")
            .arg("-H")
            .arg(self.endpoint())
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("exec"))
            .arg("--pidfile")
            .arg(self.dir.join("docker.pid"))
            .args([
                "--bridge",
                &format!("qtbr{n}"),
                "--ip",
                &format!("127.0.0.{n}"),
            ])
            .args(["--iptables=false", "--ip-masq=false"])
            .args([
                "--default-address-pool",
                &format!("base=10.213.{n}.0/24,size=28"),
            ])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd is not installed (apt-get install docker.io)");
        self.child = Some(child);
        wait_for(
            &format!("test engine {n} to answer"),
            Duration::from_secs(60),
            || {
                Command::new("docker")
                    .args(["-H", &self.endpoint(), "info"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .unwrap()
                    .success()
                    .then_some(())
            },
        );
    }

    /// Start the engine again on an empty data root: a server that was lost
    /// and comes back rebuilt. (dockerd 20.10 started with `--bridge` deletes
    /// the machine's docker0 when it restarts on its old data root, so these
    /// host-namespace test engines never do that.)
    pub fn start_engine_fresh(&mut self) {
        self.remove_network_bridges();
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
        let _ = std::fs::remove_dir_all(self.dir.join("exec"));
        self.start_engine();
    }

    /// Stop this host's dockerd (a host failure); its containers stop with it.
    pub fn stop_engine(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.record_bridges();
            stop_child(&mut child);
        }
    }

    /// Note the bridges of this engine's user networks (Quarry gives them
    /// subnets outside the engine's pool): a stopped engine leaves them.
    fn record_bridges(&self) {
        let out = self.docker(&["network", "ls", "-q", "--filter", "driver=bridge"]);
        let mut list = std::fs::read_to_string(self.dir.join("bridges")).unwrap_or_default();
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            list.push_str(&format!("br-{}\n", &id[..12.min(id.len())]));
        }
        let _ = std::fs::write(self.dir.join("bridges"), list);
    }

    fn remove_network_bridges(&self) {
        remove_network_bridges(self.n);
        let list = std::fs::read_to_string(self.dir.join("bridges")).unwrap_or_default();
        for dev in list.lines() {
            let _ = Command::new("ip").args(["link", "del", dev]).output();
        }
        let _ = std::fs::remove_file(self.dir.join("bridges"));
    }

    pub fn endpoint(&self) -> String {
        format!("unix://{}/docker.sock", self.dir.display())
    }

    pub fn address(&self) -> String {
        format!("127.0.0.{}", self.n)
    }

    /// `docker -H <this engine> args…`.
    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        docker_at(&self.endpoint(), args)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Its containers go with it.
            remove_containers(&self.endpoint());
            self.record_bridges();
            stop_child(&mut child);
        }
        self.remove_network_bridges();
        let _ = Command::new("ip")
            .args(["link", "del", &format!("qtbr{}", self.n)])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Delete the bridges of engine `n`'s user networks, found by their routes
/// in its address pool: an engine that stops leaves them behind, and they
/// would pile up across runs.
fn remove_network_bridges(n: u8) {
    let pool = format!("10.213.{n}.");
    let Ok(out) = Command::new("ip").args(["-o", "route", "show"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if !words.first().is_some_and(|net| net.starts_with(&pool)) {
            continue;
        }
        if let Some(dev) = words.iter().skip_while(|w| **w != "dev").nth(1)
            && dev.starts_with("br-")
        {
            let _ = Command::new("ip").args(["link", "del", dev]).output();
        }
    }
}

/// Leftovers of an earlier run that was killed: stop the engine whose pidfile
/// is in `dir`, but only if its command line names `dir` (then it is ours).
fn stop_stale_engine(dir: &std::path::Path) {
    if let Ok(pid) = std::fs::read_to_string(dir.join("docker.pid"))
        && let Ok(pid) = pid.trim().parse::<i32>()
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&*dir.to_string_lossy()))
    {
        unsafe { libc::kill(pid, libc::SIGTERM) };
        wait_for(
            "a stale test engine to stop",
            Duration::from_secs(30),
            || (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(()),
        );
    }
}

/// SIGTERM to the engine we started, up to 30 s to exit, then SIGKILL.
fn stop_child(child: &mut Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    for _ in 0..300 {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `docker -H endpoint args…`.
fn docker_at(endpoint: &str, args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(["-H", endpoint])
        .args(args)
        .output()
        .unwrap()
}

/// Remove every container of the engine at `endpoint`.
fn remove_containers(endpoint: &str) {
    let ids = docker_at(endpoint, &["ps", "-aq"]);
    let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(ids.iter().map(String::as_str));
        let _ = docker_at(endpoint, &args);
    }
}

/// A test network of hosts with real addresses: a bridge `qtnet0` with
/// 10.214.0.1/24 on this machine, and bridged traffic between its ports
/// allowed (the main engine sets FORWARD to DROP). Removed on drop.
pub struct NsNet {
    _private: (),
}

const NS_BRIDGE: &str = "qtnet0";

fn ip_ok(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn forward_rule(op: &str) -> std::process::Output {
    Command::new("iptables")
        .args([
            op, "FORWARD", "-i", NS_BRIDGE, "-o", NS_BRIDGE, "-j", "ACCEPT",
        ])
        .output()
        .expect("iptables is not installed")
}

impl NsNet {
    pub fn new() -> NsNet {
        let _ = Command::new("ip").args(["link", "del", NS_BRIDGE]).output();
        ip_ok(&["link", "add", NS_BRIDGE, "type", "bridge"]);
        ip_ok(&["addr", "add", "10.214.0.1/24", "dev", NS_BRIDGE]);
        ip_ok(&["link", "set", NS_BRIDGE, "up"]);
        while forward_rule("-D").status.success() {}
        let out = forward_rule("-I");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        NsNet { _private: () }
    }
}

impl Drop for NsNet {
    fn drop(&mut self) {
        while forward_rule("-D").status.success() {}
        let _ = Command::new("ip").args(["link", "del", NS_BRIDGE]).output();
    }
}

/// A host in its own network namespace `qtns<n>` with address 10.214.0.n on
/// the test network, running its own dockerd (started with `nsenter --net`,
/// since `ip netns exec` remounts /sys and dockerd then fails). Its
/// containers reach the other hosts' published ports; stopped on drop.
pub struct NsHost {
    pub n: u8,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl NsHost {
    pub fn start(_net: &NsNet, n: u8) -> NsHost {
        assert!((2..=20).contains(&n));
        let ns = format!("qtns{n}");
        let dir = PathBuf::from(format!("/tmp/quarry-test-ns-{n}"));
        stop_stale_engine(&dir);
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (outside, inside) = (format!("qtv{n}h"), format!("qtv{n}c"));
        let _ = Command::new("ip").args(["link", "del", &outside]).output();
        ip_ok(&["netns", "add", &ns]);
        ip_ok(&[
            "link", "add", &outside, "type", "veth", "peer", "name", &inside,
        ]);
        ip_ok(&["link", "set", &inside, "netns", &ns]);
        ip_ok(&["link", "set", &outside, "master", NS_BRIDGE, "up"]);
        ip_ok(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("10.214.0.{n}/24"),
            "dev",
            &inside,
        ]);
        ip_ok(&["-n", &ns, "link", "set", &inside, "up"]);
        ip_ok(&["-n", &ns, "link", "set", "lo", "up"]);
        ip_ok(&["-n", &ns, "route", "add", "default", "via", "10.214.0.1"]);
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .arg("dockerd")
            .arg("-H")
            .arg(format!("unix://{}/docker.sock", dir.display()))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("nsenter and dockerd are needed");
        let host = NsHost {
            n,
            dir,
            child: Some(child),
        };
        wait_for(
            &format!("namespaced test engine {n} to answer"),
            Duration::from_secs(60),
            || host.docker(&["info"]).status.success().then_some(()),
        );
        host
    }

    pub fn endpoint(&self) -> String {
        format!("unix://{}/docker.sock", self.dir.display())
    }

    pub fn address(&self) -> String {
        format!("10.214.0.{}", self.n)
    }

    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        docker_at(&self.endpoint(), args)
    }
}

impl Drop for NsHost {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            remove_containers(&self.endpoint());
            // nsenter execs dockerd: the child's pid is the engine's.
            stop_child(&mut child);
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &format!("qtns{}", self.n)])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &format!("qtv{}h", self.n)])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
