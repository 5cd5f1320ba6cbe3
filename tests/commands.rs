//! The SSH command surface, end to end over the real ssh client.

mod common;

use common::{Repo, Server, stderr, stdout};

#[test]
fn read_commands_show_what_runs() {
    let server = Server::start();
    let app = common::unique_app("cmds");
    let repo = Repo::fixture("hello");
    server.push_ok(repo.path(), &app);
    // Generate a log line through nginx.
    assert_eq!(server.body(&app), "hello from v1\n");

    let apps = server.admin("apps");
    assert!(
        apps.lines()
            .any(|l| l.starts_with(&app) && l.contains("live") && l.contains("v1")),
        "{apps}"
    );
    let json: serde_json::Value = serde_json::from_str(&server.admin("apps --json")).unwrap();
    assert_eq!(json[0]["name"], app.as_str());
    assert_eq!(json[0]["release"], 1);

    let ps = server.admin(&format!("ps {app}"));
    assert!(
        ps.contains(&format!("{app}.web.1")) && ps.contains("running") && ps.contains("127.0.0.1:"),
        "{ps}"
    );
    let ps: serde_json::Value =
        serde_json::from_str(&server.admin(&format!("ps {app} --json"))).unwrap();
    assert_eq!(ps[0]["node"], "web");
    assert_eq!(ps[0]["state"], "running");
    assert_eq!(ps[0]["release"], 1);

    let logs = common::wait_for(
        "the request to show in logs",
        std::time::Duration::from_secs(10),
        || {
            let l = server.admin(&format!("logs {app}"));
            l.contains("response:200").then_some(l)
        },
    );
    assert!(logs.lines().all(|l| l.starts_with("web.1 ")), "{logs}");
    let one = server.admin(&format!("logs {app} -n 1"));
    assert_eq!(one.lines().count(), 1, "{one}");

    let info = server.admin(&format!("releases:info {app} v1"));
    assert!(info.contains("status:      live"), "{info}");
}

#[test]
fn help_and_errors() {
    let server = Server::start();
    let help = server.admin("help");
    for c in [
        "apps:create",
        "ps:scale",
        "config:set",
        "rollback",
        "keys:add",
        "logs",
    ] {
        assert!(help.contains(c), "help lacks {c}:\n{help}");
    }
    let one = server.admin("ps --help");
    assert!(one.starts_with("Usage: ps APP [--json]"), "{one}");

    let cases = [
        ("frobnicate", 2, "unknown command \"frobnicate\""),
        ("ps", 2, "ps: missing argument"),
        ("ps nosuchapp", 3, "app nosuchapp does not exist"),
        ("ps ../etc", 2, "invalid app name"),
        (
            "domains:add x 'a.com;include /etc/passwd'",
            2,
            "invalid domain",
        ),
        ("apps:destroy x", 2, "confirm with"),
    ];
    for (cmd, code, msg) in cases {
        let out = server.ssh(&server.admin, cmd);
        assert_eq!(out.status.code(), Some(code), "{cmd}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.starts_with("quarry: ") && err.contains(msg),
            "{cmd}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(stdout(&out).is_empty());
    }
}

#[test]
fn config_set_rolls_out_a_new_release_with_the_value() {
    let server = Server::start();
    let app = common::unique_app("conf");
    let repo = Repo::fixture("env-echo");
    server.push_ok(repo.path(), &app);
    assert_eq!(server.body(&app).trim(), "GREETING=");

    let out = server.ssh(
        &server.admin,
        &format!("config:set {app} 'GREETING=hello world'"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("Released v2"), "{}", stderr(&out));
    assert_eq!(server.body(&app).trim(), "GREETING=hello world");
    assert_eq!(
        server.admin(&format!("config:get {app} GREETING")),
        "hello world\n"
    );
    let file = server.data.join(format!("stacks/{app}/env/GREETING"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "hello world");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    server.admin(&format!("config:unset {app} GREETING"));
    assert_eq!(server.body(&app).trim(), "GREETING=");
    assert!(!file.exists());

    // Rollback to v2 brings the value back, as a new release.
    let out = server.ssh(&server.admin, &format!("rollback {app} v2"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.body(&app).trim(), "GREETING=hello world");
    let info = server.admin(&format!("releases:info {app} v4"));
    assert!(info.contains("rollback to v2"), "{info}");
}

#[test]
fn app_lifecycle_commands() {
    let server = Server::start();
    let app = common::unique_app("life");

    server.admin(&format!("apps:create {app}"));
    let out = server.ssh(&server.admin, &format!("apps:create {app}"));
    assert_eq!(out.status.code(), Some(5), "conflict: {}", stderr(&out));
    let repo = Repo::fixture("hello");
    server.push_ok(repo.path(), &app);

    // ps:restart makes a new release with new containers.
    let before = server.containers(Some(&app));
    let out = server.ssh(&server.admin, &format!("ps:restart {app}"));
    assert!(out.status.success(), "{}", stderr(&out));
    let after = server.containers(Some(&app));
    assert_eq!(after.len(), 1);
    assert_ne!(before[0].2, after[0].2, "a restart runs new containers");
    assert_eq!(server.body(&app), "hello from v1\n");
    // One node: fresh containers, same release.
    let id = || {
        common::stdout(
            &std::process::Command::new("docker")
                .args(["inspect", "-f", "{{.Id}}", &format!("{app}.web.1")])
                .output()
                .unwrap(),
        )
        .trim()
        .to_string()
    };
    let (id_before, release_before) = (id(), server.containers(Some(&app))[0].2.clone());
    let out = server.ssh(&server.admin, &format!("ps:restart {app} web"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(id(), id_before);
    assert_eq!(
        server.containers(Some(&app))[0].2,
        release_before,
        "same release"
    );
    assert_eq!(server.body(&app), "hello from v1\n");
    let out = server.ssh(&server.admin, &format!("ps:restart {app} nosuch"));
    assert!(
        !out.status.success() && stderr(&out).contains("has no node nosuch"),
        "{}",
        stderr(&out)
    );

    // plan, config and domains in JSON.
    let plan: serde_json::Value =
        serde_json::from_str(&server.admin(&format!("plan {app} --json"))).unwrap();
    assert_eq!(plan, serde_json::json!([]));
    server.admin(&format!("config:set {app} A=1 B=two"));
    let config: serde_json::Value =
        serde_json::from_str(&server.admin(&format!("config {app} --json"))).unwrap();
    assert_eq!(config, serde_json::json!({"A": "1", "B": "two"}));
    let domains: serde_json::Value =
        serde_json::from_str(&server.admin(&format!("domains {app} --json"))).unwrap();
    assert_eq!(domains[0]["domain"], format!("{app}.localhost"));
    assert_eq!(domains[0]["source"], "default");

    // Servers and grid show the one local server and where containers sit.
    let servers: serde_json::Value = serde_json::from_str(&server.admin("servers --json")).unwrap();
    assert_eq!(servers[0]["name"], "local");
    assert_eq!(servers[0]["state"], "running");
    assert!(servers[0]["memory_mib"].as_u64().unwrap() > 0);
    assert!(server.admin("servers:info local").contains("engine:"));
    let grid = server.admin("grid");
    assert!(grid.contains(&format!("{app}.web.1")), "{grid}");
    assert!(server.data.join("grid/grid.json").exists());

    // Events record what was done.
    let events = server.admin("events");
    assert!(
        events.contains("config:set") && events.contains("ps:restart"),
        "{events}"
    );

    // Destroy removes containers, route, repo.
    server.admin(&format!("apps:destroy {app} {app}"));
    assert!(server.containers(Some(&app)).is_empty());
    assert_eq!(server.get(&format!("{app}.localhost"), "/").0, 404);
    assert!(!server.data.join(format!("stacks/{app}")).exists());
    let out = server.ssh(&server.admin, &format!("ps {app}"));
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn keys_commands() {
    let server = Server::start();
    let bob = common::new_key(server.dir.path(), "bob", "ed25519");
    let out = server.ssh_with_input(
        &server.admin,
        "keys:add bob --role deployer --apps a,b",
        &std::fs::read(&bob.public).unwrap(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // The same key twice, or a name twice: conflicts.
    let out = server.ssh_with_input(
        &server.admin,
        "keys:add bob2 --role deployer",
        &std::fs::read(&bob.public).unwrap(),
    );
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let out = server.ssh_with_input(
        &server.admin,
        "keys:add bob --role deployer",
        b"ssh-ed25519 garbage",
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let keys: serde_json::Value = serde_json::from_str(&server.admin("keys --json")).unwrap();
    let bob_row = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "bob")
        .unwrap();
    assert_eq!(bob_row["role"], "deployer");
    assert_eq!(bob_row["apps"], serde_json::json!(["a", "b"]));
    assert!(
        bob_row["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    // A deployer cannot list keys; the last admin cannot be removed.
    assert_eq!(server.ssh(&bob, "keys").status.code(), Some(4));
    assert_eq!(
        server.ssh(&server.admin, "keys:remove admin").status.code(),
        Some(5)
    );
    // Nor from the host's own CLI: the rule is the store's.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args(["keys", "remove", "admin", "--data"])
        .arg(&server.data)
        .output()
        .unwrap();
    assert!(
        !out.status.success()
            && stderr(&out).contains("admin is the last admin key; add another admin first"),
        "{}",
        stderr(&out)
    );
    assert!(server.ssh(&server.admin, "apps").status.success());

    server.admin("keys:remove bob");
    let out = server.ssh(&bob, "apps");
    assert!(
        !out.status.success() && stderr(&out).contains("Permission denied"),
        "a removed key is refused at once"
    );
    assert_eq!(
        server.ssh(&server.admin, "keys:remove bob").status.code(),
        Some(3)
    );
}

#[test]
fn logs_follow_across_a_redeploy_until_the_client_leaves() {
    use std::io::BufRead;
    let server = Server::start();
    let app = common::unique_app("follow");
    let repo = Repo::fixture("hello");
    server.push_ok(repo.path(), &app);

    let mut child = std::process::Command::new("ssh")
        .args(server.git_ssh(&server.admin).split_whitespace().skip(1))
        .args([
            "-p",
            &server.ssh_port.to_string(),
            "git@127.0.0.1",
            &format!("logs {app} -f"),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // A request to the first container shows up live.
    let wait_for_line = |needle: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line with {needle:?} within 20s"),
            }
        }
    };
    server.get(&format!("{app}.localhost"), "/first");
    assert!(wait_for_line("/first").starts_with("web.1 "));
    // After a redeploy, the new container's lines arrive on the same stream.
    repo.write("www/index.html", "v2\n");
    repo.commit("v2");
    server.push_ok(repo.path(), &app);
    server.get(&format!("{app}.localhost"), "/second");
    assert!(wait_for_line("/second").starts_with("web.1 "));
    // The client leaving ends the command.
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn rollback_defaults_to_the_previous_release_and_old_images_are_pruned() {
    let server = Server::start();
    let app = common::unique_app("prune");
    let repo = Repo::fixture("hello");
    repo.write("quarry.yml", "releases: { keep: 2 }\nnodes:\n  web: {}\n");
    for n in 1..=4 {
        repo.write("www/index.html", &format!("body {n}\n"));
        repo.commit(&format!("v{n}"));
        server.push_ok(repo.path(), &app);
    }
    let image_exists = |n: u32| {
        std::process::Command::new("docker")
            .args(["image", "inspect", &format!("quarry/{app}:v{n}")])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert_eq!(
        (1..=4).map(image_exists).collect::<Vec<_>>(),
        vec![false, false, true, true]
    );

    let out = server.ssh(&server.admin, &format!("rollback {app}"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.body(&app), "body 3\n");
    let info = server.admin(&format!("releases:info {app} v5"));
    assert!(
        info.contains("rollback to v3") && info.contains("status:      live"),
        "{info}"
    );

    let out = server.ssh(&server.admin, &format!("rollback {app} v1"));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("was pruned"), "{}", stderr(&out));
    assert_eq!(server.body(&app), "body 3\n");
}
