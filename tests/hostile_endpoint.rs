//! The SSH endpoint against the internet and against keys that lose their
//! rights: idle and flooding connections without a key, removed keys with
//! open sessions, changed roles and grants, secrets in the log, modes of the
//! data dir. All on the real `quarry serve`, OpenSSH client and git.

mod common;

use std::fs;
use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Key, Repo, Server, new_key, stderr, stdout, wait_for};

/// `n` TCP connections that never send a byte.
fn idle_connections(server: &Server, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", server.ssh_port)).unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect()
}

/// How many of `conns` the daemon has closed (EOF or reset seen).
fn closed_count(conns: &mut [TcpStream]) -> usize {
    let mut buf = [0u8; 256];
    conns
        .iter()
        .filter(|s| {
            loop {
                let mut s: &TcpStream = s;
                match s.read(&mut buf) {
                    Ok(0) => break true,
                    Ok(_) => continue, // the server's version line
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                    Err(_) => break true,
                }
            }
        })
        .count()
}

/// `ssh` with `key`, from source address `from`, with extra options.
fn ssh_from(server: &Server, key: &Key, from: &str, extra: &[&str], command: &str) -> Command {
    let mut c = server.ssh_base(key);
    c.args(["-o", &format!("BindAddress={from}")])
        .args(extra)
        .arg("git@127.0.0.1")
        .arg(command);
    c
}

#[test]
fn idle_connections_past_the_descriptor_limit_are_closed_at_the_auth_deadline_and_push_works_after()
{
    // Caps above the descriptor limit, so the flood reaches EMFILE at accept.
    let server = Server::start_limited(
        &[
            ("QUARRY_AUTH_TIMEOUT", "2"),
            ("QUARRY_MAX_UNAUTHENTICATED", "1000"),
            ("QUARRY_MAX_UNAUTHENTICATED_PER_ADDRESS", "1000"),
        ],
        Some((256, 256)),
    );
    let started = Instant::now();
    let mut conns = idle_connections(&server, 300);
    let rss = fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let rss = rss
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or("")
        .to_string();
    eprintln!("daemon during the flood: {rss}");
    wait_for(
        "the daemon to close all 300 idle connections",
        Duration::from_secs(60),
        || (closed_count(&mut conns) == conns.len()).then_some(()),
    );
    let took = started.elapsed();
    eprintln!("300 idle connections closed after {took:?}");
    assert!(
        server.log().contains("accept failed"),
        "the flood never reached the descriptor limit:\n{}",
        server.log()
    );
    drop(conns);

    let app = common::unique_app("after-flood");
    let repo = Repo::fixture("hello");
    server.push_ok(repo.path(), &app);
    assert!(server.admin("apps").contains(&app));

    // The deadline is for the handshake only: an authenticated session
    // outlives it several times over.
    let mut follower = follow_logs(&server, &server.admin, &app);
    let following = format!("logs {app} -f");
    wait_for("the follower to start", Duration::from_secs(20), || {
        server.log().contains(&following).then_some(())
    });
    let held = Instant::now();
    while held.elapsed() < Duration::from_secs(5) {
        assert!(
            follower.try_wait().unwrap().is_none(),
            "an authenticated session was closed at the auth deadline"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = follower.kill();
    let _ = follower.wait();
}

#[test]
fn the_hook_socket_answers_an_oversized_or_silent_request_and_keeps_serving() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    let server = Server::start();
    let socket = server.data.join("quarry.sock");
    let silent = UnixStream::connect(&socket).unwrap();
    let mut big = UnixStream::connect(&socket).unwrap();
    // The daemon stops reading at its cap, so the write may fail part way.
    let _ = big.write_all(&vec![b'x'; 200 * 1024]);
    let mut reply = String::new();
    BufReader::new(&big).read_line(&mut reply).unwrap();
    assert!(
        reply.contains("bad hook request: longer than 65536 bytes"),
        "{reply}"
    );
    let started = Instant::now();
    let mut reply = String::new();
    BufReader::new(&silent).read_line(&mut reply).unwrap();
    assert!(reply.contains("no complete line within 10s"), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(15));
    let app = common::unique_app("hook-after");
    let repo = Repo::fixture("hello");
    server.push_ok(repo.path(), &app);
}

#[test]
fn the_soft_descriptor_limit_is_raised_to_the_hard_one_at_start() {
    let server = Server::start_limited(&[], Some((256, 4096)));
    let limits = fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["4096", "4096"], "{line}");
}

#[test]
fn a_flood_from_one_address_is_cut_at_its_cap_and_other_addresses_still_get_in() {
    // A deadline long enough for the checks below on a loaded machine.
    let deadline = Duration::from_secs(20);
    let server = Server::start_with_env(&[("QUARRY_AUTH_TIMEOUT", "20")]);
    let started = Instant::now();
    let mut conns = idle_connections(&server, 300);
    // Everything above the per-address cap (10) is closed at accept, long
    // before the deadline.
    wait_for(
        "the connections over the cap to be closed",
        deadline / 2,
        || (closed_count(&mut conns) >= 290).then_some(()),
    );
    assert_eq!(closed_count(&mut conns), 290);
    // The flood's own address is full; another one is not.
    let out = ssh_from(&server, &server.admin, "127.0.0.2", &[], "apps")
        .output()
        .unwrap();
    assert!(out.status.success(), "from 127.0.0.2: {}", stderr(&out));
    let out = ssh_from(&server, &server.admin, "127.0.0.1", &[], "apps")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a full address got in: {}",
        stdout(&out)
    );
    assert!(
        started.elapsed() < deadline,
        "the checks ran past the deadline"
    );
    // Those ten end at the deadline; then the address gets in again.
    wait_for(
        "the ten held connections to reach the deadline",
        deadline * 2,
        || (closed_count(&mut conns) == 300).then_some(()),
    );
    server.admin("apps");
    // Refusals are logged at a bounded rate, not once each.
    let refusals = server.log().matches("closed at accept").count();
    assert!(
        (1..=10).contains(&refusals),
        "{refusals} refusal lines for 290 refusals"
    );
}

/// `ssh … logs APP -f` with `key`, running.
fn follow_logs(server: &Server, key: &Key, app: &str) -> Child {
    ssh_from(server, key, "127.0.0.1", &[], &format!("logs {app} -f"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_exit(child: &mut Child, what: &str, limit: Duration) -> String {
    wait_for(what, limit, || child.try_wait().unwrap());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

#[test]
fn a_removed_key_loses_its_open_sessions_over_ssh_and_from_the_host_cli() {
    let server = Server::start();
    let app = common::unique_app("revoke");
    let repo = Repo::fixture("hello");
    server.push_ok(repo.path(), &app);
    let gone_by_ssh = new_key(server.dir.path(), "by-ssh", "ed25519");
    let gone_by_cli = new_key(server.dir.path(), "by-cli", "ed25519");
    server.add_key(&gone_by_ssh, &format!("--role deployer --apps {app}"));
    server.add_key(&gone_by_cli, &format!("--role deployer --apps {app}"));

    let mut by_ssh = follow_logs(&server, &gone_by_ssh, &app);
    let mut by_cli = follow_logs(&server, &gone_by_cli, &app);
    let following = format!("logs {app} -f");
    wait_for("both followers to start", Duration::from_secs(20), || {
        (server.log().matches(&following).count() >= 2).then_some(())
    });
    assert!(by_ssh.try_wait().unwrap().is_none());

    server.admin("keys:remove by-ssh");
    let err = wait_exit(
        &mut by_ssh,
        "the removed key's logs -f to be closed",
        Duration::from_secs(10),
    );
    assert!(err.contains("key by-ssh was removed"), "{err}");
    assert!(
        by_cli.try_wait().unwrap().is_none(),
        "another key's session was closed"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args(["keys", "remove", "by-cli", "--data"])
        .arg(&server.data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = wait_exit(
        &mut by_cli,
        "the session of a key removed on the host to be closed",
        Duration::from_secs(10),
    );
    assert!(err.contains("key by-cli was removed"), "{err}");

    let out = server.ssh(&gone_by_ssh, "apps");
    assert_eq!(out.status.code(), Some(255), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
}

/// An OpenSSH master connection for `key`; commands through `socket` reuse it.
fn master(server: &Server, key: &Key, socket: &Path) -> Child {
    let control = format!("ControlPath={}", socket.display());
    let child = ssh_from(
        server,
        key,
        "127.0.0.1",
        &["-N", "-o", "ControlMaster=yes", "-o", &control],
        "",
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    wait_for("the master connection", Duration::from_secs(20), || {
        socket.exists().then_some(())
    });
    child
}

fn through(server: &Server, key: &Key, socket: &Path, command: &str) -> std::process::Output {
    let control = format!("ControlPath={}", socket.display());
    ssh_from(
        server,
        key,
        "127.0.0.1",
        &["-o", "ControlMaster=no", "-o", &control],
        command,
    )
    .output()
    .unwrap()
}

#[test]
fn a_role_change_applies_to_the_next_command_on_an_open_multiplexed_connection() {
    let server = Server::start();
    let ops = new_key(server.dir.path(), "ops", "ed25519");
    server.add_key(&ops, "--role admin");
    let socket = server.dir.path().join("ops.mux");
    let mut m = master(&server, &ops, &socket);
    let out = through(&server, &ops, &socket, "keys");
    assert!(out.status.success(), "{}", stderr(&out));

    // The operator demotes the key by editing its file on the host.
    let path = server.data.join("keys/ops.json");
    let mut record: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    record["role"] = "deployer".into();
    fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();

    let out = through(&server, &ops, &socket, "keys");
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
    assert!(m.try_wait().unwrap().is_none(), "the connection stays open");
    let _ = m.kill();
    let _ = m.wait();
}

#[test]
fn destroying_an_app_takes_it_from_its_deployers_and_the_new_app_of_that_name_is_not_theirs() {
    let server = Server::start();
    let app = common::unique_app("regrant");
    let repo = Repo::fixture("hello");
    server.push_ok(repo.path(), &app);
    let dev = new_key(server.dir.path(), "dev", "ed25519");
    server.add_key(&dev, &format!("--role deployer --apps {app}"));
    let socket = server.dir.path().join("dev.mux");
    let mut m = master(&server, &dev, &socket);
    let out = through(&server, &dev, &socket, &format!("config {app}"));
    assert!(out.status.success(), "{}", stderr(&out));

    server.admin(&format!("apps:destroy {app} {app}"));
    server.push_ok(repo.path(), &app);
    let keys: serde_json::Value = serde_json::from_str(&server.admin("keys --json")).unwrap();
    let dev_apps = &keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "dev")
        .unwrap()["apps"];
    assert_eq!(dev_apps, &serde_json::json!([]), "{keys}");

    // Not on the connection it already had, nor on a new one.
    let out = through(&server, &dev, &socket, &format!("config:set {app} X=1"));
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
    repo.write("www/index.html", "taken over\n");
    repo.commit("take over");
    let out = server.push_as(&dev, repo.path(), &app, "main");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
    assert_ne!(server.body(&app), "taken over\n");
    let _ = m.kill();
    let _ = m.wait();
}

#[test]
fn config_values_never_reach_the_daemon_log() {
    let server = Server::start();
    let app = common::unique_app("secret");
    let repo = Repo::fixture("hello");
    server.push_ok(repo.path(), &app);
    let secret = format!("s3cr3t{:08x}", rand::random::<u32>());
    let spaced = format!("two words {:08x}", rand::random::<u32>());
    server.admin(&format!(
        "config:set {app} SECRET={secret} 'OTHER={spaced}'"
    ));
    assert!(server.admin(&format!("config {app}")).contains(&secret));
    let log = server.log();
    assert!(!log.contains(&secret), "the value is in the log:\n{log}");
    assert!(!log.contains(&spaced), "the value is in the log:\n{log}");
    assert!(log.contains("SECRET=<redacted>"), "{log}");
}

#[test]
fn the_data_dir_and_app_dirs_are_closed_to_other_users_even_when_made_open_before() {
    let mut server = Server::start();
    let app = common::unique_app("modes");
    let repo = Repo::fixture("hello");
    server.push_ok(repo.path(), &app);
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    let app_dir = server.data.join("stacks").join(&app);
    assert_eq!(
        mode(&server.data) & 0o077,
        0o011,
        "data dir lists to others"
    );
    for dir in ["stacks", "keys", "env", "servers", "log"] {
        assert_eq!(mode(&server.data.join(dir)), 0o700, "{dir}");
    }
    assert_eq!(mode(&app_dir), 0o700);

    // An instance from before: opened up, then restarted.
    server.stop();
    for p in [&server.data, &app_dir] {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    server.restart();
    assert_eq!(mode(&server.data) & 0o077, 0o011);
    assert_eq!(mode(&app_dir), 0o700);
    server.body(&app);
}

#[test]
fn a_deployer_key_holds_at_most_its_cap_of_connections() {
    let server = Server::start_with_env(&[("QUARRY_MAX_SESSIONS_PER_KEY", "2")]);
    let dev = new_key(server.dir.path(), "dev", "ed25519");
    server.add_key(&dev, "--role deployer");
    let mut masters: Vec<Child> = (0..2)
        .map(|i| {
            master(
                &server,
                &dev,
                &server.dir.path().join(format!("dev{i}.mux")),
            )
        })
        .collect();
    let out = server.ssh(&dev, "apps");
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("key dev has 2 connections open already"),
        "{}",
        stderr(&out)
    );
    // Admins are not capped.
    for _ in 0..3 {
        server.admin("apps");
    }
    let mut one = masters.pop().unwrap();
    let _ = one.kill();
    let _ = one.wait();
    wait_for("a freed slot", Duration::from_secs(20), || {
        server.ssh(&dev, "apps").status.success().then_some(())
    });
    for mut m in masters {
        let _ = m.kill();
        let _ = m.wait();
    }
}
