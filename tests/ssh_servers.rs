//! Servers over SSH, end to end: hosts in network namespaces, each with a
//! real OpenSSH sshd (the HQ's key authorized) and a real dockerd on a unix
//! socket only. Quarry reaches the engine through its own SSH session; a
//! push places containers there and the app answers through nginx; host
//! keys are pinned and a changed one is refused; provisioners run, record
//! their sha1, and a failing one keeps the server unknown with its log; the
//! hosts block is written on the servers, and again when the daemon starts.
//! A provider's machine reached over SSH (tests/providers/sshpool.py) runs
//! config.yml's provisioners before it takes containers.

mod common;

use std::time::Duration;

use common::hosts::{NsHost, NsNet};
use common::sshd::Sshd;
use common::{Repo, Server, stderr, stdout, wait_for};

fn hq_key(server: &Server) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args(["keys", "hq", "--data"])
        .arg(&server.data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out);
    assert!(line.starts_with("ssh-ed25519 "), "{line}");
    line
}

/// `SHA256:…` of an OpenSSH public key line.
fn fingerprint(key: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.pub");
    std::fs::write(&path, format!("{key}\n")).unwrap();
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&path)
        .output()
        .unwrap();
    stdout(&out).split_whitespace().nth(1).unwrap().to_string()
}

fn info(server: &Server, name: &str) -> serde_json::Value {
    serde_json::from_str(&server.admin(&format!("servers:info {name} --json"))).unwrap()
}

fn provisioner(server: &Server, name: &str, script: &str) {
    let out = server.ssh_with_input(
        &server.admin,
        &format!("provisioners:add {name}"),
        script.as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_server_added_over_ssh_runs_pushed_containers_and_refuses_a_changed_host_key() {
    let hq_hosts = tempfile::tempdir().unwrap();
    let hq_file = hq_hosts.path().join("hosts");
    std::fs::write(&hq_file, "127.0.0.1\tlocalhost\n").unwrap();
    let mut server = Server::start_with_env(&[("QUARRY_HOSTS_FILE", hq_file.to_str().unwrap())]);
    let net = NsNet::new();
    let host = NsHost::start(&net, 10);
    let mut sshd = Sshd::start(&host, &hq_key(&server));
    let first_key = sshd.host_key();

    provisioner(
        &server,
        "setup",
        "echo provisioning on $(hostname)\ntouch \"$(dirname \"$QUARRY_HOSTS_FILE\")/provisioned\"\necho setup done\n",
    );
    let out = server.ssh(
        &server.admin,
        "servers:add ssh1 --ssh root@10.214.0.10 --memory 1024 --label role=ssh --provision setup",
    );
    assert!(out.status.success(), "{}\n{}", stderr(&out), sshd.log());
    // The host key was pinned on first contact and shown.
    assert!(
        stdout(&out).contains(&format!(
            "over SSH to root@10.214.0.10:22 (host key {})",
            fingerprint(&first_key)
        )),
        "{}",
        stdout(&out)
    );
    // The provisioner ran there; its output reached the caller.
    assert!(stderr(&out).contains("setup done"), "{}", stderr(&out));
    assert!(host.dir.join("provisioned").exists());
    let settings: serde_json::Value = serde_json::from_slice(
        &std::fs::read(server.data.join("servers/ssh1/settings.json")).unwrap(),
    )
    .unwrap();
    let pinned = settings["ssh"]["host_key"].as_str().unwrap().to_string();
    assert_eq!(
        pinned.split_whitespace().take(2).collect::<Vec<_>>(),
        first_key.split_whitespace().take(2).collect::<Vec<_>>()
    );
    let v = info(&server, "ssh1");
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["transport"], "ssh", "{v}");
    let sha1 = v["ssh"]["provisioned"]["setup"]["sha1"].as_str().unwrap();
    let list: serde_json::Value =
        serde_json::from_str(&server.admin("provisioners --json")).unwrap();
    assert_eq!(list[0]["name"], "setup", "{list}");
    assert_eq!(list[0]["sha1"], sha1, "{list}");
    assert_eq!(list[0]["servers"], serde_json::json!(["ssh1"]), "{list}");

    // The hosts block, on the server (its file) and on the HQ (allowed here).
    let remote = std::fs::read_to_string(sshd.hosts_file()).unwrap();
    assert!(
        remote.contains("# quarry hosts begin\n10.214.0.10\tssh1\n# quarry hosts end\n"),
        "{remote}"
    );
    let local = std::fs::read_to_string(&hq_file).unwrap();
    assert!(
        local.starts_with("127.0.0.1\tlocalhost\n# quarry hosts begin\n10.214.0.10\tssh1\n"),
        "{local}"
    );
    assert!(server.admin("hosts").contains("ssh1"));

    // No Docker port on the server: the engine answers on its unix socket only.
    for port in [2375, 2376] {
        assert!(
            std::net::TcpStream::connect_timeout(
                &format!("10.214.0.10:{port}").parse().unwrap(),
                Duration::from_secs(2)
            )
            .is_err()
        );
    }

    // A push places its container on the SSH server (the image is shipped
    // over the session) and the app answers through nginx.
    let app = common::unique_app("sshapp");
    let repo = Repo::fixture("hostname-echo");
    repo.write(
        "quarry.yml",
        "nodes:\n  web:\n    scale: 1\n    memory: 128\n    placement: {labels: {role: ssh}}\n",
    );
    repo.commit("on the ssh server");
    let out = server.push(repo.path(), &app);
    assert!(
        out.status.success(),
        "{}\n{}\n{}",
        stderr(&out),
        server.log(),
        sshd.log()
    );
    let log = stderr(&out);
    assert!(
        log.contains(&format!("copied quarry/{app}:v1 to server ssh1")),
        "{log}"
    );
    let on_host = stdout(&host.docker(&["ps", "--format", "{{.ID}} {{.Names}}"]));
    assert!(
        on_host.contains(&format!("{app}.web.1")),
        "{on_host}\n{log}"
    );
    // The container's host name is its name: the one on the SSH server answered.
    let body = server.body(&app);
    assert_eq!(
        body.trim(),
        format!("{app}.web.1").replace('.', "-"),
        "{on_host}"
    );

    // A restarted daemon reaches the server again through a new session.
    server.stop();
    server.restart();
    wait_for(
        "the server to answer after a restart",
        Duration::from_secs(60),
        || (info(&server, "ssh1")["containers"] == 1).then_some(()),
    );
    // nginx answers once the restarted daemon has routed the app again.
    let expected = format!("{app}.web.1").replace('.', "-");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let answer = loop {
        let got = server.get(&format!("{app}.localhost"), "/");
        if got.0 == 200 || std::time::Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(answer, (200, format!("{expected}\n")), "{}", server.log());

    // The server's sshd comes back with another host key: the daemon refuses
    // it, and the server goes unknown.
    sshd.new_host_key();
    sshd.restart();
    let second_key = sshd.host_key();
    let v = wait_for("the server to go unknown", Duration::from_secs(60), || {
        let v = info(&server, "ssh1");
        (v["state"] == "unknown").then_some(v)
    });
    let expected_line = format!(
        "expected {}, offered {}",
        fingerprint(&first_key),
        fingerprint(&second_key)
    );
    let error = wait_for("the refusal to be shown", Duration::from_secs(30), || {
        let v = info(&server, "ssh1");
        v["ssh"]["error"]
            .as_str()
            .filter(|e| e.contains("host key"))
            .map(str::to_string)
    });
    assert!(
        error.contains("server ssh1: the host key of root@10.214.0.10:22 changed")
            && error.contains(&expected_line),
        "{error}\n{v}"
    );
    assert!(
        server.log().contains(&expected_line),
        "the daemon's log names both keys"
    );

    // The same sshd under another name is refused.
    let out = server.ssh(
        &server.admin,
        "servers:add ssh2 --ssh 10.214.0.10 --memory 512",
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("quarry: 10.214.0.10:22 is server ssh1 already"),
        "{}",
        stderr(&out)
    );
    drop(sshd);
}

#[test]
fn a_failing_provisioner_keeps_the_server_unknown_with_its_log_until_it_is_fixed() {
    let server = Server::start();
    let net = NsNet::new();
    let host = NsHost::start(&net, 11);
    let sshd = Sshd::start(&host, &hq_key(&server));
    provisioner(&server, "base", "echo about to fail\nexit 3\n");
    // A wrong --host-key up front is refused, naming both keys.
    let wrong_dir = tempfile::tempdir().unwrap();
    let wrong = wrong_dir.path().join("k");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&wrong)
        .status()
        .unwrap();
    assert!(made.success());
    let wrong_key = std::fs::read_to_string(wrong.with_extension("pub")).unwrap();
    let out = server.ssh(
        &server.admin,
        &format!(
            "servers:add ssh-b --ssh root@10.214.0.11 --memory 512 --host-key '{}'",
            wrong_key.trim()
        ),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "quarry: server ssh-b: the host key of root@10.214.0.11:22 changed: expected {}, offered {}",
            fingerprint(wrong_key.trim()),
            fingerprint(&sshd.host_key())
        )),
        "{}",
        stderr(&out)
    );
    assert!(!server.data.join("servers/ssh-b").exists());
    // Given up front, the right host key is accepted.
    let out = server.ssh(
        &server.admin,
        &format!(
            "servers:add ssh-b --ssh root@10.214.0.11:22 --memory 512 --host-key '{}' --provision base",
            sshd.host_key()
        ),
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("about to fail"), "{err}");
    assert!(
        err.contains("quarry: provisioner base failed on server ssh-b (exit status 3); the server stays unknown"),
        "{err}"
    );
    let log =
        std::fs::read_to_string(server.data.join("servers/ssh-b/provision/base.log")).unwrap();
    assert!(
        log.contains("about to fail") && log.contains("exit status 3"),
        "{log}"
    );
    let v = info(&server, "ssh-b");
    assert_eq!(v["state"], "unknown", "{v}");
    assert_eq!(v["ssh"]["provisioned"]["base"]["ok"], false, "{v}");
    // It stays unknown: pings do not bring it back while the script failed.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(info(&server, "ssh-b")["state"], "unknown");

    // Fixed, the changed script runs again by default, and the server takes containers.
    provisioner(&server, "base", "echo fixed now\n");
    let out = server.ssh(&server.admin, "servers:provision ssh-b");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("fixed now"), "{}", stderr(&out));
    let v = info(&server, "ssh-b");
    assert_eq!(v["state"], "running", "{v}");
    let list: serde_json::Value =
        serde_json::from_str(&server.admin("provisioners --json")).unwrap();
    assert_eq!(
        v["ssh"]["provisioned"]["base"]["sha1"], list[0]["sha1"],
        "{v}\n{list}"
    );
    // Nothing changed since: nothing runs.
    let out = server.ssh(&server.admin, "servers:provision ssh-b");
    assert!(
        stdout(&out).contains("ssh-b: every provisioner is up to date"),
        "{}",
        stdout(&out)
    );
    let block = std::fs::read_to_string(sshd.hosts_file()).unwrap();
    assert!(block.contains("10.214.0.11\tssh-b\n"), "{block}");

    // A server that leaves keeps an empty block.
    let out = server.ssh(&server.admin, "servers:remove ssh-b");
    assert!(out.status.success(), "{}", stderr(&out));
    let block = std::fs::read_to_string(sshd.hosts_file()).unwrap();
    assert_eq!(block, "# quarry hosts begin\n# quarry hosts end\n");
    drop(sshd);
}

/// The exec provider "rents" a namespace host whose `add` answer names its
/// sshd: Quarry reaches it as `servers:add --ssh` does (the answer's host
/// key checked) and runs config.yml's provisioners there before it takes
/// containers; a failing one gives the machine back and fails the push with
/// the script's last line, its log kept. The hosts block, edited away on the
/// server, is written again when the daemon starts.
#[test]
fn a_provider_server_over_ssh_is_provisioned_before_it_takes_containers() {
    let mut server = Server::start();
    let net = NsNet::new();
    let host = NsHost::start(&net, 15);
    let sshd = Sshd::start(&host, &hq_key(&server));
    let pool = tempfile::tempdir().unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/providers/sshpool.py");
    let config = |provision: &str| {
        format!(
            "grid:\n  autosize: true\n  min: 1\n  max: 2\n  idle: 600\nprovider:\n  kind: exec\n  command: {}\n  args: [\"{}\", \"15\"]\n  provision: [{provision}]\n",
            script.display(),
            pool.path().display()
        )
    };
    provisioner(
        &server,
        "broken",
        "echo checking the disk\necho disk too small for quarry\nexit 4\n",
    );
    provisioner(
        &server,
        "base",
        "echo preparing the server\ntouch \"$(dirname \"$QUARRY_HOSTS_FILE\")/based\"\necho base ready\n",
    );
    let app = common::unique_app("rented");
    let repo = Repo::fixture("hostname-echo");
    repo.write(
        "quarry.yml",
        "nodes:\n  web:\n    scale: 1\n    memory: 128\n    placement: {labels: {provider: sshpool}}\n",
    );
    repo.commit("on a rented server");

    // A provisioner that is not stored: refused before a machine is rented.
    std::fs::write(server.data.join("config.yml"), config("nosuch")).unwrap();
    let out = server.push(repo.path(), &app);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("config.yml: provider.provision: no provisioner named nosuch"),
        "{}",
        stderr(&out)
    );
    assert!(std::fs::read_dir(pool.path()).unwrap().next().is_none());

    // A provisioner fails: the machine goes back, the push fails in the
    // script's last words, and its log is kept.
    std::fs::write(server.data.join("config.yml"), config("broken")).unwrap();
    let out = server.push(repo.path(), &app);
    let log = stderr(&out);
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains("Provisioning auto-1 with broken") && log.contains("checking the disk"),
        "the script's output is in the push's progress: {log}"
    );
    assert!(
        log.contains(
            "provisioner broken failed on server auto-1 (exit status 4): disk too small for quarry; machine ns-15 was given back"
        ),
        "{log}"
    );
    assert_eq!(
        std::fs::read_to_string(pool.path().join("removed")).unwrap(),
        "ns-15\n"
    );
    assert!(!server.admin("servers").contains("auto-1"));
    let kept =
        std::fs::read_to_string(server.data.join("servers/auto-1/provision/broken.log")).unwrap();
    assert!(
        kept.contains("disk too small for quarry") && kept.contains("exit status 4"),
        "{kept}"
    );
    let on_host = stdout(&host.docker(&["ps", "-a", "--format", "{{.Names}}"]));
    assert!(!on_host.contains(&app), "{on_host}");

    // It succeeds: provisioned first, then the container runs there.
    std::fs::write(server.data.join("config.yml"), config("base")).unwrap();
    let log = server.push_ok(repo.path(), &app);
    let lines: Vec<&str> = log.lines().collect();
    let at = |what: &dyn Fn(&str) -> bool| {
        lines
            .iter()
            .position(|l| what(l))
            .unwrap_or_else(|| panic!("{log}"))
    };
    let ready = at(&|l| l.contains("base ready"));
    let copied =
        at(&|l| l.contains(&format!("copied quarry/{app}:")) && l.contains("to server auto-1"));
    assert!(
        ready < copied,
        "provisioned before it took containers: {log}"
    );
    assert!(host.dir.join("based").exists());
    let v = info(&server, "auto-1");
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["transport"], "ssh", "{v}");
    assert_eq!(v["origin"]["id"], "ns-15", "{v}");
    assert_eq!(v["ssh"]["provisioned"]["base"]["ok"], true, "{v}");
    let settings: serde_json::Value = serde_json::from_slice(
        &std::fs::read(server.data.join("servers/auto-1/settings.json")).unwrap(),
    )
    .unwrap();
    let pinned = settings["ssh"]["host_key"].as_str().unwrap().to_string();
    assert_eq!(
        pinned.split_whitespace().take(2).collect::<Vec<_>>(),
        sshd.host_key()
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
    );
    let on_host = stdout(&host.docker(&["ps", "--format", "{{.Names}}"]));
    assert!(on_host.contains(&format!("{app}.web.1")), "{on_host}");
    assert_eq!(
        server.body(&app).trim(),
        format!("{app}.web.1").replace('.', "-")
    );
    let block = "# quarry hosts begin\n10.214.0.15\tauto-1\n# quarry hosts end\n";
    let hosts = std::fs::read_to_string(sshd.hosts_file()).unwrap();
    assert!(hosts.contains(block), "{hosts}");

    // The block is edited away while the daemon is down: it is back after
    // the start, the operator's lines kept.
    server.stop();
    std::fs::write(sshd.hosts_file(), "127.0.0.1\tlocalhost\n").unwrap();
    server.restart();
    let expected = format!("127.0.0.1\tlocalhost\n{block}");
    wait_for(
        "the hosts block to be written at start",
        Duration::from_secs(60),
        || (std::fs::read_to_string(sshd.hosts_file()).ok()? == expected).then_some(()),
    );
    drop(sshd);
}

#[test]
fn an_sshd_that_forwards_to_no_socket_still_carries_the_docker_api() {
    // The bridge's first choice is a direct-streamlocal channel to the
    // engine's socket; this sshd refuses those, so every Docker connection
    // must fall back to `docker system dial-stdio`.
    let server = Server::start();
    let net = NsNet::new();
    let host = NsHost::start(&net, 16);
    let sshd = Sshd::start_with(&host, &hq_key(&server), "AllowStreamLocalForwarding no\n");
    let out = server.ssh(
        &server.admin,
        "servers:add ssh-nofwd --ssh root@10.214.0.16 --memory 512",
    );
    assert!(out.status.success(), "{}\n{}", stderr(&out), sshd.log());
    let v = wait_for("ssh-nofwd running", Duration::from_secs(60), || {
        let v = info(&server, "ssh-nofwd");
        (v["state"] == "running").then_some(v)
    });
    assert_eq!(v["transport"], "ssh", "{v}");
    // More than one Docker connection went through after the refusal.
    let ps = server.admin("servers");
    assert!(ps.contains("ssh-nofwd"), "{ps}");
    let again = info(&server, "ssh-nofwd");
    assert_eq!(again["state"], "running", "{again}");
    // The socket channel was asked for (and refused) first.
    assert!(
        sshd.log().contains("refused streamlocal port forward"),
        "{}",
        sshd.log()
    );
}
