//! The network lockdown on real parts: an HQ (this machine, 10.214.0.1 on
//! the test network) and hosts in network namespaces with their own
//! dockerd; the rules are loaded by Quarry on server 12 through its Docker
//! engine (the `quarry-base/nft` container). The HQ's own rules are only
//! rendered here (`QUARRY_TEST_LOCKDOWN_HQ=skip`): the HQ is the machine
//! the tests run on, and it is checked to stay unlocked.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::hosts::{NsHost, NsNet};
use common::{BASE_IMAGE, Server, stderr, stdout, wait_for};

/// Whether a TCP connection to `addr` opens from inside namespace `netns`
/// (or from this machine's own namespace with `None`). A dropped SYN is a
/// connect timeout; a refused one is an answer too.
fn connects(netns: Option<&str>, addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().unwrap();
    let netns = netns.map(str::to_string);
    std::thread::spawn(move || {
        if let Some(path) = netns {
            use std::os::fd::AsRawFd;
            let f = std::fs::File::open(&path).unwrap();
            // Only this thread moves into the namespace.
            let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}");
        }
        TcpStream::connect_timeout(&addr, Duration::from_secs(3)).is_ok()
    })
    .join()
    .unwrap()
}

/// Poll until `addr` answers from `netns`.
fn answers(netns: Option<&str>, addr: &str, what: &str) {
    wait_for(what, Duration::from_secs(30), || {
        connects(netns, addr).then_some(())
    });
}

/// A TCP listener on port 22 inside the namespace (busybox httpd), stopped
/// by PID on drop.
struct Port22(Child);

impl Port22 {
    fn start(host: &NsHost) -> Port22 {
        let root = host.dir.join("www22");
        std::fs::create_dir_all(&root).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", host.netns()))
            .args(["/bin/busybox", "httpd", "-f", "-p", "22", "-h"])
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Port22(child)
    }
}

impl Drop for Port22 {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The base image on a namespaced engine (no registry: save and load).
fn load_base_image(host: &NsHost) {
    let mut save = Command::new("docker")
        .args(["save", BASE_IMAGE])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Command::new("docker")
        .args(["-H", &host.endpoint(), "load"])
        .stdin(save.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(save.wait().unwrap().success(), "docker save {BASE_IMAGE}");
    assert!(out.status.success(), "{}", stderr(&out));
}

fn network_json(server: &Server) -> serde_json::Value {
    serde_json::from_str(&server.admin("network --json")).unwrap()
}

fn state_of(view: &serde_json::Value, name: &str) -> String {
    view["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["server"] == name)
        .map(|s| s["state"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no server {name} in {view}"))
}

fn table_on(host: &NsHost) -> bool {
    Command::new("nsenter")
        .arg(format!("--net={}", host.netns()))
        .args(["nft", "list", "table", "inet", "quarry"])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn only_the_fleet_reaches_a_locked_server() {
    let mut server = Server::start_with_env(&[("QUARRY_TEST_LOCKDOWN_HQ", "skip")]);
    let net = NsNet::new();
    let (s12, outside, s14) = std::thread::scope(|s| {
        let a = s.spawn(|| NsHost::start_with(&net, 12, &["-H", "tcp://10.214.0.12:2375"]));
        let b = s.spawn(|| NsHost::start(&net, 13));
        let c = s.spawn(|| NsHost::start(&net, 14));
        (a.join().unwrap(), b.join().unwrap(), c.join().unwrap())
    });
    load_base_image(&s12);
    // A port Docker publishes on 12 (DNAT'ed in its prerouting).
    let out = s12.docker(&[
        "run",
        "-d",
        "--name",
        "lockdown-web",
        "-p",
        "10.214.0.12:7100:7100",
        BASE_IMAGE,
        "httpd",
        "-f",
        "-p",
        "7100",
        "-h",
        "/",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let _port22 = Port22::start(&s12);
    let (web, engine, ssh) = ("10.214.0.12:7100", "10.214.0.12:2375", "10.214.0.12:22");
    let ns13 = outside.netns();
    let ns14 = s14.netns();
    // Open before the lockdown: the setup itself works.
    answers(
        Some(&ns13),
        web,
        "the published port from outside, before the lockdown",
    );
    answers(
        Some(&ns13),
        engine,
        "the TCP Docker port from outside, before the lockdown",
    );
    answers(Some(&ns13), ssh, "port 22 from outside");

    std::fs::write(
        server.data.join("config.yml"),
        "network: { lockdown: true }\n",
    )
    .unwrap();
    let out = server.ssh(
        &server.admin,
        &format!(
            "servers:add s12 --docker {} --address {} --memory 1024",
            s12.endpoint(),
            s12.address()
        ),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Network lockdown: rules loaded on 1 server(s)"),
        "{}",
        stderr(&out)
    );
    let view = network_json(&server);
    assert_eq!(view["lockdown"], true, "{view}");
    assert_eq!(state_of(&view, "s12"), "applied", "{view}");
    assert_eq!(state_of(&view, "local"), "skipped", "{view}");
    assert!(table_on(&s12), "table inet quarry on s12");
    // The HQ (this machine) is never locked by the tests.
    let host_table = Command::new("nft")
        .args(["list", "table", "inet", "quarry"])
        .output()
        .unwrap();
    assert!(
        !host_table.status.success(),
        "the test machine has no quarry table"
    );

    // From outside the fleet: the service and the engine are gone, 22 answers.
    assert!(
        !connects(Some(&ns13), web),
        "the published port is closed to 13"
    );
    assert!(
        !connects(Some(&ns13), engine),
        "the Docker port is closed to 13"
    );
    answers(Some(&ns13), ssh, "port 22 from outside, locked");
    // From the HQ the service answers.
    answers(None, web, "the published port from the HQ");
    // 14 is not in the fleet yet.
    assert!(
        !connects(Some(&ns14), web),
        "the published port is closed to 14"
    );

    let out = server.ssh(
        &server.admin,
        &format!(
            "servers:add s14 --docker {} --address {} --memory 1024",
            s14.endpoint(),
            s14.address()
        ),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    answers(Some(&ns14), web, "the published port from 14, a server now");
    assert!(!connects(Some(&ns13), web), "13 is still outside");
    assert!(table_on(&s14), "14 is locked too");

    let out = server.ssh(&server.admin, "servers:remove s14");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !connects(Some(&ns14), web),
        "14 left the fleet: closed again"
    );
    assert!(!table_on(&s14), "the server that left has no quarry table");

    let text = server.admin("network");
    assert!(text.starts_with("lockdown: on"), "{text}");
    assert!(text.contains("s12") && text.contains("applied"), "{text}");

    let out = server.ssh(&server.admin, "network:unlock");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("unlocked:"), "{}", stdout(&out));
    assert!(!table_on(&s12), "unlock removes the table");
    answers(
        Some(&ns13),
        web,
        "the published port from outside, unlocked",
    );
    assert_eq!(state_of(&network_json(&server), "s12"), "removed");
    // Unlocked stays unlocked when servers change; network:lock loads again.
    let out = server.ssh(&server.admin, "network:lock");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(table_on(&s12), "network:lock loads the rules again");
    assert!(!connects(Some(&ns13), web), "locked again");

    // lockdown: false takes the tables away when the daemon starts.
    std::fs::write(
        server.data.join("config.yml"),
        "network: { lockdown: false }\n",
    )
    .unwrap();
    server.stop();
    server.restart();
    wait_for("the table to go from s12", Duration::from_secs(60), || {
        (!table_on(&s12)).then_some(())
    });
    answers(
        Some(&ns13),
        web,
        "the published port from outside, lockdown off",
    );
}
