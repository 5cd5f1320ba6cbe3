//! Access control, audit, concurrency and hostile input, end to end.

mod common;

use std::fs;

use common::{Key, Repo, Server, new_key, stderr, wait_line};

#[test]
fn permission_matrix() {
    let server = Server::start();
    let shared = common::unique_app("shared");
    let repo = Repo::fixture("hello");
    server.push_ok(repo.path(), &shared);

    let granted = new_key(server.dir.path(), "granted", "ed25519");
    let outsider = new_key(server.dir.path(), "outsider", "ed25519");
    server.add_key(&granted, &format!("--role deployer --apps {shared}"));
    server.add_key(&outsider, "--role deployer");
    let spare = new_key(server.dir.path(), "spare", "ed25519");

    // (who, action, allowed)
    let cases: Vec<(&Key, &str, bool)> = vec![
        (&granted, "push", true),
        (&granted, "config:set", true),
        (&granted, "ps:scale", true),
        (&granted, "keys:add", false),
        (&granted, "apps:destroy", false),
        (&outsider, "push", false),
        (&outsider, "config:set", false),
        (&outsider, "ps:scale", false),
        (&outsider, "keys:add", false),
        (&outsider, "apps:destroy", false),
        (&server.admin, "push", true),
        (&server.admin, "config:set", true),
        (&server.admin, "ps:scale", true),
        (&server.admin, "keys:add", true),
    ];
    for (key, action, allowed) in cases {
        let out = match action {
            "push" => {
                repo.write("www/index.html", &format!("pushed by {}\n", key.name));
                repo.commit(&format!("by {}", key.name));
                server.push_as(key, repo.path(), &shared, "main")
            }
            "config:set" => server.ssh(key, &format!("config:set {shared} WHO={}", key.name)),
            "ps:scale" => server.ssh(key, &format!("ps:scale {shared} web=1")),
            "keys:add" => {
                let _ = server.ssh(&server.admin, "keys:remove spare");
                server.ssh_with_input(
                    key,
                    "keys:add spare --role deployer",
                    &fs::read(&spare.public).unwrap(),
                )
            }
            "apps:destroy" => server.ssh(key, &format!("apps:destroy {shared} --force")),
            _ => unreachable!(),
        };
        let err = stderr(&out);
        assert_eq!(
            out.status.success(),
            allowed,
            "{} {action}: {err}",
            key.name
        );
        if !allowed {
            assert!(
                err.contains("permission denied"),
                "{} {action}: {err}",
                key.name
            );
            assert!(err.contains(&key.name), "the refusal names the key: {err}");
            if action != "push" {
                assert_eq!(out.status.code(), Some(4), "{action}: {err}");
            }
        }
        if action == "push" && allowed {
            assert_eq!(server.body(&shared), format!("pushed by {}\n", key.name));
        }
    }
    // The outsider cannot even see the app.
    let out = server.ssh(&outsider, "apps");
    assert!(out.status.success());
    assert!(!common::stdout(&out).contains(&shared));

    // Who did what is on the release and in the audit log.
    let releases = server.admin(&format!("releases {shared} --json"));
    let releases: serde_json::Value = serde_json::from_str(&releases).unwrap();
    assert!(
        releases
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["by"] == "granted"),
        "{releases}"
    );
    let events = server.admin(&format!("events {shared} --json"));
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    let actions: Vec<(String, String)> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["key"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        actions.contains(&("granted".into(), "config:set".into())),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("granted".into(), "push".into())),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("admin".into(), "ps:scale".into())),
        "{actions:?}"
    );
    // Values of config vars never reach the log.
    let log =
        fs::read_to_string(server.data.join(format!("stacks/{shared}/log/audit.log"))).unwrap();
    assert!(log.contains("WHO") && !log.contains("WHO=granted"), "{log}");
}

#[test]
fn deployers_create_apps_only_when_allowed() {
    let server = Server::start();
    let repo = Repo::fixture("hello");
    let maker = new_key(server.dir.path(), "maker", "ed25519");
    let plain = new_key(server.dir.path(), "plain", "ed25519");
    server.add_key(&maker, "--role deployer --create");
    server.add_key(&plain, "--role deployer");

    let app = common::unique_app("made");
    let out = server.push_as(&plain, repo.path(), &app, "main");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
    assert!(!server.data.join(format!("stacks/{app}")).exists());

    let out = server.push_as(&maker, repo.path(), &app, "main");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.body(&app), "hello from v1\n");
    // The creator manages what it created; the other deployer still cannot.
    let out = server.ssh(&maker, &format!("ps {app}"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!server.ssh(&plain, &format!("ps {app}")).status.success());
}

#[test]
fn deploys_of_one_app_serialise_and_different_apps_run_at_once() {
    let server = Server::start();
    let app = common::unique_app("serial");
    let repo = Repo::fixture("slow");
    repo.write("nonce", &app);
    repo.commit("nonce");
    server.push_ok(repo.path(), &app);

    // A config change during a push waits for it, says so, then applies.
    repo.write("nonce", &format!("{app}-2"));
    repo.write("www/index.html", "slow v2\n");
    repo.commit("v2");
    let mut push = server.push_spawn(&server.admin, repo.path(), &app);
    let (_, rest) = wait_line(&mut push, "-----> Building");
    let out = server.ssh(&server.admin, &format!("config:set {app} AFTER=1"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Waiting for another deploy"),
        "{}",
        stderr(&out)
    );
    assert!(push.wait().unwrap().success(), "{}", rest.join().unwrap());
    assert_eq!(server.body(&app), "slow v2\n");
    assert_eq!(server.admin(&format!("config:get {app} AFTER")), "1\n");

    // A second push that started from the same old commit is refused once the
    // first has moved the branch, instead of half-succeeding.
    let b = server.clone_app(&app);
    repo.write("nonce", &format!("{app}-3"));
    repo.write("www/index.html", "from a\n");
    repo.commit("a");
    b.write("www/index.html", "from b\n");
    b.commit("b");
    let mut first = server.push_spawn(&server.admin, repo.path(), &app);
    let (_, first_rest) = wait_line(&mut first, "-----> Building");
    let second = server.push_as(&server.admin, b.path(), &app, "main");
    assert!(
        first.wait().unwrap().success(),
        "{}",
        first_rest.join().unwrap()
    );
    assert!(!second.status.success());
    assert!(
        stderr(&second).contains("moved while this push waited"),
        "{}",
        stderr(&second)
    );
    assert_eq!(server.body(&app), "from a\n");

    // Two different apps deploy at the same time.
    let (x, y) = (common::unique_app("par-x"), common::unique_app("par-y"));
    let rx = Repo::fixture("slow");
    rx.write("nonce", &x);
    rx.commit("x");
    let ry = Repo::fixture("slow");
    ry.write("nonce", &y);
    ry.commit("y");
    let mut px = server.push_spawn(&server.admin, rx.path(), &x);
    let mut py = server.push_spawn(&server.admin, ry.path(), &y);
    // Both are building before either has finished.
    let (_, rest_x) = wait_line(&mut px, "-----> Building");
    let (_, rest_y) = wait_line(&mut py, "-----> Building");
    assert!(px.wait().unwrap().success(), "{}", rest_x.join().unwrap());
    assert!(py.wait().unwrap().success(), "{}", rest_y.join().unwrap());
    assert_eq!(server.body(&x), "slow v1\n");
    assert_eq!(server.body(&y), "slow v1\n");
}

#[test]
fn hostile_input_is_refused_and_creates_nothing() {
    let server = Server::start();
    let app = common::unique_app("safe");
    let repo = Repo::fixture("hello");
    server.push_ok(repo.path(), &app);
    let before = server.admin("apps --json");

    let cases: Vec<(String, &str)> = vec![
        ("ps ../etc".into(), "invalid app name"),
        ("ps 'a;b'".into(), "invalid app name"),
        ("apps:create 'x$(reboot)'".into(), "invalid app name"),
        (format!("ps:scale {app} ../web=1"), "invalid node name"),
        (format!("config:set {app} 'A B=1'"), "invalid env key"),
        (
            format!("domains:add {app} 'evil.com; }} server {{ listen 80'"),
            "invalid domain",
        ),
        (format!("domains:add {app} '$host'"), "invalid domain"),
        (format!("rollback {app} v../1"), "invalid release"),
        (
            "keys:add ../../etc/passwd --role admin".into(),
            "invalid key name",
        ),
        (
            "keys:add ok --role root".into(),
            "--role is admin or deployer",
        ),
        (format!("logs {app} -n 999999999"), "-n takes a number"),
        (
            format!("ps {}", "a".repeat(20_000)),
            "command line is longer than",
        ),
    ];
    for (cmd, want) in cases {
        let out = server.ssh(&server.admin, &cmd);
        let err = stderr(&out);
        assert!(!out.status.success(), "{cmd:.80} was accepted");
        assert!(err.contains(want), "{cmd:.80}: expected {want:?} in {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    assert_eq!(server.admin("apps --json"), before, "nothing changed");
    assert!(!server.data.join("keys/ok.json").exists());
    // One route, the app's: a vhost (reload mode) or a table entry (the
    // dynamic table), nothing else.
    let routes: Vec<_> = ["nginx/sites", "nginx/table"]
        .iter()
        .filter_map(|d| fs::read_dir(server.data.join(d)).ok())
        .flatten()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(server.body(&app), "hello from v1\n");
}
