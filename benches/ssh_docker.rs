//! The added latency of one Docker API call over SSH: 200 × `GET /_ping`
//! on the local engine's socket, then the same through Quarry's SSH bridge
//! (`quarry::remote`: the HQ key, a pinned host key, one channel per
//! connection: `direct-streamlocal` to the engine's socket, else `docker
//! system dial-stdio`) to a private OpenSSH sshd on a free loopback port
//! whose sessions reach the same local engine. Both clients are bollard, as
//! the fleet uses them; bollard's unix transport keeps no idle connection,
//! so every call is a new connection (through the bridge, a new channel).
//! Plus one round of new clients (connect, version negotiation, ping).
//!
//! Needs root (sshd) and a running Docker engine. Prints `BENCH` lines
//! (`bench/run.sh` reads them) and a small table. Every process it starts is
//! stopped by PID.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CALLS: usize = 200;
const FRESH: usize = 30;

struct Sshd(Child);

impl Drop for Sshd {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn median(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (us(v[v.len() / 2]), us(v[0]), us(v[v.len() - 1]))
}

async fn pings(docker: &bollard::Docker, n: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        docker.ping().await.expect("ping");
        times.push(t.elapsed());
    }
    times
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hq = Arc::new(quarry::remote::hq_key(d).unwrap());
    std::fs::write(
        d.join("authorized_keys"),
        quarry::remote::hq_public_line(&hq),
    )
    .unwrap();
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(d.join("host_key"))
        .status()
        .unwrap();
    assert!(keygen.success());
    let port = free_port();
    let local = std::env::var("DOCKER_HOST").unwrap_or("unix:///var/run/docker.sock".into());
    std::fs::write(
        d.join("sshd_config"),
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {p}/host_key\nPidFile {p}/sshd.pid\nAuthorizedKeysFile {p}/authorized_keys\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nSetEnv DOCKER_HOST={local} SHLVL=1\n",
            p = d.display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(d.join("sshd_config"))
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
        .spawn()
        .expect("sshd (openssh-server) is needed");
    let _sshd = Sshd(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sshd did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let target = quarry::remote::SshTarget {
            user: "root".into(),
            host: "127.0.0.1".into(),
            port,
            host_key: None,
        };
        let (link, _) = quarry::remote::Link::first_contact("bench", &target, hq)
            .await
            .expect("ssh");
        let link = Arc::new(link);
        let socket = d.join("servers/bench/docker.sock");
        let _bridge = quarry::remote::bridge::start(link, &socket).unwrap();
        let direct = quarry::fleet::connect(&local, None).await.unwrap();
        let over_ssh = quarry::fleet::connect(&format!("unix://{}", socket.display()), None)
            .await
            .unwrap();
        // Warm both pools, then interleave rounds of 20 so both see the same load.
        pings(&direct, 10).await;
        pings(&over_ssh, 10).await;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..CALLS / 20 {
            a.extend(pings(&direct, 20).await);
            b.extend(pings(&over_ssh, 20).await);
        }
        // Fresh connections: a new client each time (a new channel over SSH).
        let mut fresh = Vec::new();
        for _ in 0..FRESH {
            let t = Instant::now();
            let c = quarry::fleet::connect(&format!("unix://{}", socket.display()), None)
                .await
                .unwrap();
            c.ping().await.unwrap();
            fresh.push(t.elapsed());
        }
        let (la, la_min, la_max) = median(a);
        let (sb, sb_min, sb_max) = median(b);
        let (fr, fr_min, fr_max) = median(fresh);
        println!(
            "BENCH ssh_docker_ping_local median_us={la:.0} min_us={la_min:.0} max_us={la_max:.0} runs={CALLS}"
        );
        println!(
            "BENCH ssh_docker_ping_ssh median_us={sb:.0} min_us={sb_min:.0} max_us={sb_max:.0} runs={CALLS}"
        );
        println!(
            "BENCH ssh_docker_connect_ping_ssh median_us={fr:.0} min_us={fr_min:.0} max_us={fr_max:.0} runs={FRESH}"
        );
        println!();
        println!("| Docker API call (GET /_ping) | median µs | min | max | runs |");
        println!("|---|---|---|---|---|");
        println!("| local socket (a connection per call) | {la:.0} | {la_min:.0} | {la_max:.0} | {CALLS} |");
        println!("| over SSH (Quarry's bridge, a channel per call) | {sb:.0} | {sb_min:.0} | {sb_max:.0} | {CALLS} |");
        println!("| over SSH, new connection each (connect + negotiate + ping) | {fr:.0} | {fr_min:.0} | {fr_max:.0} | {FRESH} |");
        println!(
            "\nadded per call over SSH: {:.0} µs ({:.1}×)",
            sb - la,
            sb / la.max(1.0)
        );
    });
}
