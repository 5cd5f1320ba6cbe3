//! Push to live, end to end: real git and ssh clients, the real daemon, the
//! real Docker engine and nginx.

mod common;

use std::fs;

use common::{Repo, Server, new_key, stderr, stdout};

#[test]
fn first_push_serves_and_a_second_push_replaces_it() {
    let server = Server::start();
    let app = common::unique_app("hello");
    let repo = Repo::fixture("hello");

    let log = server.push_ok(repo.path(), &app);
    assert!(
        log.contains("-----> Building"),
        "no build progress in:\n{log}"
    );
    assert!(
        log.contains(&format!("Released v1: http://{app}.localhost")),
        "{log}"
    );
    assert_eq!(server.body(&app), "hello from v1\n");
    let first = server.containers(Some(&app));
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].0, format!("{app}.web.1"));
    assert_eq!(first[0].2, "1");

    repo.write("www/index.html", "hello from v2\n");
    repo.commit("v2");
    server.push_ok(repo.path(), &app);
    assert_eq!(server.body(&app), "hello from v2\n");
    let second = server.containers(Some(&app));
    assert_eq!(
        second.len(),
        1,
        "the v1 container should be gone: {second:?}"
    );
    assert_eq!(second[0].0, format!("{app}.web.1"));
    assert_eq!(second[0].2, "2");

    let releases = server.admin(&format!("releases {app}"));
    let lines: Vec<&str> = releases.lines().collect();
    assert!(
        lines[1].starts_with("v2") && lines[1].contains("live") && lines[1].contains("admin"),
        "{releases}"
    );
    assert!(
        lines[2].starts_with("v1") && lines[2].contains("superseded"),
        "{releases}"
    );
    // The release record is on disk, readable, with the commit.
    let v2: serde_json::Value = serde_json::from_slice(
        &fs::read(server.data.join(format!("stacks/{app}/releases/v2.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(v2["status"], "live");
    assert_eq!(v2["image"], format!("quarry/{app}:v2"));
    let head = stdout(&repo.git(&["rev-parse", "HEAD"]));
    assert_eq!(v2["commit"].as_str().unwrap(), head.trim());
    // The checkout of the last push.
    assert_eq!(
        fs::read_to_string(server.data.join(format!("stacks/{app}/src/www/index.html"))).unwrap(),
        "hello from v2\n"
    );
}

fn assert_rejected_and_still_serving(
    server: &Server,
    repo: &Repo,
    app: &str,
    fixture: &str,
    reason: &str,
) {
    repo.replace_with(fixture);
    let out = server.push(repo.path(), app);
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "push of {fixture} should be rejected:\n{err}"
    );
    assert!(err.contains("[remote rejected] main -> main"), "{err}");
    assert!(err.contains(reason), "expected {reason:?} in:\n{err}");
    assert!(err.contains("v1 is still serving"), "{err}");
    assert_eq!(
        server.body(app),
        "hello from v1\n",
        "the old release must keep serving"
    );
    let containers = server.containers(Some(app));
    assert_eq!(
        containers.len(),
        1,
        "the failed attempt must leave nothing behind: {containers:?}"
    );
    assert_eq!(containers[0].2, "1");
}

#[test]
fn failed_pushes_are_rejected_and_the_old_release_keeps_serving() {
    let server = Server::start();
    let app = common::unique_app("fail");
    let repo = Repo::fixture("hello");
    server.push_ok(repo.path(), &app);

    assert_rejected_and_still_serving(&server, &repo, &app, "broken-dockerfile", "build of");
    assert_rejected_and_still_serving(&server, &repo, &app, "crash-at-start", "exited with code 3");
    // The container's own last words reach the pusher.
    let out = server.push(repo.path(), &app);
    assert!(
        stderr(&out).contains("fatal: cannot open database"),
        "{}",
        stderr(&out)
    );
    assert_rejected_and_still_serving(
        &server,
        &repo,
        &app,
        "missing-base",
        "quarry-test-nonexistent/base",
    );
    assert_rejected_and_still_serving(
        &server,
        &repo,
        &app,
        "no-dockerfile",
        "no buildpack detected this app",
    );
    assert_rejected_and_still_serving(
        &server,
        &repo,
        &app,
        "unhealthy",
        "health check failed: GET /health on 127.0.0.1:",
    );
    let out = server.push(repo.path(), &app);
    assert!(
        stderr(&out).contains("→ 404 after 3 attempts"),
        "{}",
        stderr(&out)
    );

    // The failures are on the books, with their reasons.
    let json = server.admin(&format!("releases {app} --json"));
    let list: serde_json::Value = serde_json::from_str(&json).unwrap();
    let statuses: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert!(
        statuses.iter().filter(|s| **s == "failed").count() >= 3,
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&"live"));
    // The branch on the server still points at the served commit.
    let served = server.admin(&format!("releases:info {app} v1 --json"));
    let served: serde_json::Value = serde_json::from_str(&served).unwrap();
    let remote_head = std::process::Command::new("git")
        .args(["--git-dir"])
        .arg(server.data.join(format!("stacks/{app}/repo.git")))
        .args(["rev-parse", "refs/heads/main"])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&remote_head).trim(),
        served["commit"].as_str().unwrap()
    );
}

#[test]
fn master_branch_dot_git_suffix_and_a_named_remote_work() {
    let server = Server::start();
    let app = common::unique_app("remote");
    let repo = Repo::fixture("hello");
    repo.git(&["branch", "-m", "main", "master"]);
    repo.git(&[
        "remote",
        "add",
        "quarry",
        &server.remote(&format!("{app}.git")),
    ]);
    let out = std::process::Command::new("git")
        .current_dir(repo.path())
        .env("GIT_SSH_COMMAND", server.git_ssh(&server.admin))
        .args(["push", "quarry", "master"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.body(&app), "hello from v1\n");

    // Only main or master deploy.
    let out = server.push_as(&server.admin, repo.path(), &app, "master:feature");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("only main or master deploy"),
        "{}",
        stderr(&out)
    );

    // The app's repo can be cloned back (git-upload-pack).
    let clone = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("git")
        .env("GIT_SSH_COMMAND", server.git_ssh(&server.admin))
        .args(["clone", "-q", &server.remote(&app)])
        .arg(clone.path().join("c"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fs::read_to_string(clone.path().join("c/www/index.html")).unwrap(),
        "hello from v1\n"
    );
}

#[test]
fn unknown_keys_and_bad_app_names_are_refused_and_create_nothing() {
    let server = Server::start();
    let repo = Repo::fixture("hello");
    let stranger = new_key(server.dir.path(), "stranger", "ed25519");

    let out = server.push_as(&stranger, repo.path(), "sneaky", "main");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    let out = server.ssh(&stranger, "apps");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );

    for bad in ["../x", "a;b", "UPPER", "a$(id)", "-x"] {
        let out = server.push(repo.path(), bad);
        assert!(!out.status.success(), "push to {bad:?} was accepted");
        assert!(
            stderr(&out).contains("invalid app name"),
            "{bad}: {}",
            stderr(&out)
        );
    }
    let stacks: Vec<_> = fs::read_dir(server.data.join("stacks")).unwrap().collect();
    assert!(stacks.is_empty(), "nothing may be created: {stacks:?}");
    assert_eq!(
        server.admin("apps").trim(),
        "no apps yet: push one with git push ssh://git@HOST:PORT/APP main"
    );
}

#[test]
fn rsa_and_ecdsa_keys_work_too() {
    let server = Server::start();
    for kind in ["rsa", "ecdsa"] {
        let key = new_key(server.dir.path(), kind, kind);
        let out = server.ssh_with_input(
            &server.admin,
            &format!("keys:add {kind}-key --role admin"),
            &fs::read(&key.public).unwrap(),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let out = server.ssh(&key, "apps");
        assert!(out.status.success(), "{kind}: {}", stderr(&out));
    }
}

#[test]
fn daemon_restart_keeps_apps_served_and_shutdown_stops_nginx() {
    let mut server = Server::start();
    let app = common::unique_app("restart");
    let repo = Repo::fixture("hello");
    server.push_ok(repo.path(), &app);

    let nginx_pid: i32 = fs::read_to_string(server.data.join("nginx/nginx.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    server.stop();
    assert!(
        !std::path::Path::new(&format!("/proc/{nginx_pid}")).exists()
            || common::wait_for("nginx to exit", std::time::Duration::from_secs(10), || {
                (!std::path::Path::new(&format!("/proc/{nginx_pid}")).exists()).then_some(true)
            })
    );
    assert!(!server.data.join("serve.json").exists());
    assert_eq!(
        server.get(&format!("{app}.localhost"), "/").0,
        0,
        "nothing listens after shutdown"
    );

    server.restart();
    assert_eq!(server.body(&app), "hello from v1\n");
    // The same SSH host key is used after a restart.
    let key1 = fs::read(server.data.join("ssh_host_ed25519_key")).unwrap();
    assert!(!key1.is_empty());
    repo.write("www/index.html", "after restart\n");
    repo.commit("after restart");
    server.push_ok(repo.path(), &app);
    assert_eq!(server.body(&app), "after restart\n");
}

#[test]
fn a_container_quarry_does_not_own_is_never_touched() {
    let server = Server::start();
    let app = common::unique_app("foreign");
    let name = format!("{app}.web.1");
    let run = std::process::Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &name,
            common::BASE_IMAGE,
            "sleep",
            "300",
        ])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    let id = stdout(&run).trim().to_string();

    let repo = Repo::fixture("hello");
    let out = server.push(repo.path(), &app);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Quarry did not create it"),
        "{}",
        stderr(&out)
    );
    let still = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.Id}} {{.State.Running}}", &name])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&still).trim(),
        format!("{id} true"),
        "the foreign container is untouched"
    );

    let _ = std::process::Command::new("docker")
        .args(["rm", "-f", &id])
        .output();
    server.push_ok(repo.path(), &app);
    assert_eq!(server.body(&app), "hello from v1\n");
}

/// A pack far larger than the SSH input queue streams through to git (the
/// queue slows the sender instead of growing), and the hook still answers.
#[test]
fn a_large_push_streams_through_and_is_judged_by_the_hook() {
    use std::io::Read;
    let server = Server::start();
    let app = common::unique_app("big");
    let repo = Repo::fixture("hello");
    let mut noise = vec![0u8; 24 * 1024 * 1024];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut noise)
        .unwrap();
    std::fs::write(repo.path().join("noise.bin"), &noise).unwrap();
    repo.commit("24 MiB that does not compress");
    let out = server.push_as(&server.admin, repo.path(), &app, "main:feature");
    let err = common::stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("only main or master deploy"),
        "the whole pack arrived and the hook judged it: {err}"
    );
    // The daemon serves the next connection (admin() asserts success).
    server.admin("apps");
}
