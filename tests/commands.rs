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
