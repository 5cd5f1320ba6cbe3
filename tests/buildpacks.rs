//! Apps without a Dockerfile, end to end: the stack image, the built-in
//! buildpacks (python, node, static, procfile) through the real daemon, git,
//! ssh, Docker and nginx; the build cache on a second push; an app nothing
//! detects; a third-party buildpack from a local git repository.
//!
//! The python and node builds download one package each from PyPI / npm.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Repo, Server, ensure_stack, stderr, stdout, wait_for};

const STACK: &str = "quarry-stack/bookworm:latest";

/// Push and time it; asserts acceptance.
fn timed_push(server: &Server, repo: &Repo, app: &str) -> (String, Duration) {
    let started = Instant::now();
    let log = server.push_ok(repo.path(), app);
    (log, started.elapsed())
}

/// The body at `<app>.localhost`, once it is `want` (nginx switched).
fn body_becomes(server: &Server, app: &str, want: &str) {
    let mut last = String::new();
    wait_for(
        &format!("{app} to serve {want:?}"),
        Duration::from_secs(10),
        || {
            let (status, body) = server.get(&format!("{app}.localhost"), "/");
            last = format!("{status} {body}");
            (status == 200 && body.contains(want)).then_some(())
        },
    );
}

#[test]
fn the_stack_image_is_built_and_listed_and_a_stack_can_start_from_an_image() {
    ensure_stack();
    let bin = env!("CARGO_BIN_EXE_quarry");
    // Present now: a second build says so and does nothing.
    let again = Command::new(bin).args(["stack", "build"]).output().unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("already exists"),
        "{}",
        stdout(&again)
    );
    let list = Command::new(bin)
        .args(["stack", "list", "--json"])
        .output()
        .unwrap();
    assert!(list.status.success(), "{}", stderr(&list));
    let images: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let stack = images
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == STACK)
        .unwrap_or_else(|| panic!("{STACK} not in {images}"));
    assert!(stack["size"].as_i64().unwrap() > 100_000_000, "{stack}");

    // --from: a stack on top of an image already on the engine (here the
    // default stack itself, which has what the buildpacks need: no apt run).
    let name = common::unique_app("quarry-stack/from-test");
    let out = Command::new(bin)
        .args(["stack", "build", &name, "--from", STACK])
        .output()
        .unwrap();
    let cleanup = || {
        let _ = Command::new("docker").args(["rmi", "-f", &name]).output();
    };
    if !out.status.success() {
        cleanup();
        panic!("stack build --from: {}{}", stdout(&out), stderr(&out));
    }
    let check = Command::new("docker")
        .args([
            "run",
            "--rm",
            &name,
            "/bin/sh",
            "-c",
            "id -un; test -x /usr/local/bin/quarry-entrypoint && python3 --version && node --version",
        ])
        .output()
        .unwrap();
    cleanup();
    let said = stdout(&check);
    assert!(check.status.success(), "{said}{}", stderr(&check));
    assert!(said.starts_with("app\nPython 3"), "{said}");
    // Bad names are refused before anything runs.
    let bad = Command::new(bin)
        .args(["stack", "build", "quarry-stack/Bad Name"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("invalid stack name"),
        "{}",
        stderr(&bad)
    );
}

/// Push the fixture, serve it, change `file` and push again: the second build
/// uses the cache (`cache_line`) and downloads nothing (`download` absent).
fn build_cache_redeploy(
    fixture: &str,
    pack: &str,
    body_v1: &str,
    cache_line: &str,
    downloads: &[&str],
) {
    ensure_stack();
    let server = Server::start();
    let app = common::unique_app(fixture);
    let repo = Repo::fixture(fixture);

    let (first, t1) = timed_push(&server, &repo, &app);
    assert!(first.contains("buildpack"), "{first}");
    assert!(
        downloads.iter().any(|d| first.contains(d)),
        "the first build should install dependencies:\n{first}"
    );
    body_becomes(&server, &app, body_v1);
    let v1: serde_json::Value = serde_json::from_slice(
        &fs::read(server.data.join(format!("stacks/{app}/releases/v1.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(v1["manifest"]["buildpack"], pack);

    repo.write("message.txt", &body_v1.replace("v1", "v2"));
    repo.commit("v2");
    let (second, t2) = timed_push(&server, &repo, &app);
    assert!(
        second.contains(cache_line),
        "the second build should use the cache:\n{second}"
    );
    for d in downloads {
        assert!(
            !second.contains(d),
            "the second build downloaded ({d:?}):\n{second}"
        );
    }
    body_becomes(&server, &app, &body_v1.replace("v1", "v2"));
    eprintln!(
        "{fixture}: first push {:.1}s, second push (cache) {:.1}s",
        t1.as_secs_f64(),
        t2.as_secs_f64()
    );

    // The app image is the stack plus a layer: the stack's layer is shared.
    let first_layer = |image: &str| {
        stdout(
            &Command::new("docker")
                .args([
                    "image",
                    "inspect",
                    "-f",
                    "{{index .RootFS.Layers 0}}",
                    image,
                ])
                .output()
                .unwrap(),
        )
    };
    let stack_layer = first_layer(STACK);
    assert!(stack_layer.starts_with("sha256:"), "{stack_layer}");
    assert_eq!(first_layer(&format!("quarry/{app}:v2")), stack_layer);

    // Processes run as the stack's user app, from /app.
    let id = stdout(
        &Command::new("docker")
            .args([
                "exec",
                &format!("{app}.web.1"),
                "/bin/sh",
                "-c",
                "id -u; pwd",
            ])
            .output()
            .unwrap(),
    );
    // The dedicated build uid, not the stack's user: no host account.
    assert_eq!(id, "65000\n/app\n");
    // A config change makes a release from the same image, with the same processes.
    server.admin(&format!("config:set {app} GREETING=hi"));
    body_becomes(&server, &app, &body_v1.replace("v1", "v2"));
    // The cache is the app's and goes with it; no build container is left.
    let cache = server.data.join(format!("stacks/{app}/build/cache"));
    assert!(cache.is_dir());
    assert!(
        !server
            .data
            .join(format!("stacks/{app}/build/work"))
            .exists()
    );
    server.admin(&format!("apps:destroy {app} --force"));
    assert!(!cache.exists());
    assert!(
        server.containers(None).is_empty(),
        "{:?}",
        server.containers(None)
    );
}

#[test]
fn a_python_app_builds_serves_and_rebuilds_from_the_cache() {
    build_cache_redeploy(
        "py-app",
        "python",
        "hello from python v1",
        "Python dependencies unchanged: build cache used",
        &["Collecting", "Downloading"],
    );
}

#[test]
fn a_node_app_builds_serves_and_rebuilds_from_the_cache() {
    build_cache_redeploy(
        "node-app",
        "node",
        "hello from node v1 (1m)",
        "Node dependencies unchanged: build cache used",
        &["added 1 package"],
    );
}

#[test]
fn a_static_site_and_a_procfile_app_deploy_and_redeploy() {
    ensure_stack();
    let server = Server::start();
    // Any key may see the stacks over SSH.
    let stacks: serde_json::Value = serde_json::from_str(&server.admin("stacks --json")).unwrap();
    assert!(
        stacks
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == STACK && s["size"].as_i64() > Some(0)),
        "{stacks}"
    );
    for (fixture, file, v1) in [
        ("static-site", "index.html", "<h1>hello from static v1</h1>"),
        ("procfile-app", "www/index.html", "hello from procfile v1"),
    ] {
        let app = common::unique_app(fixture);
        let repo = Repo::fixture(fixture);
        let log = server.push_ok(repo.path(), &app);
        let pack = fixture.split('-').next().unwrap().replace("site", "static");
        assert!(
            log.contains(&format!("with the {pack} buildpack")),
            "{fixture}:\n{log}"
        );
        body_becomes(&server, &app, v1);
        repo.write(file, &v1.replace("v1", "v2"));
        repo.commit("v2");
        server.push_ok(repo.path(), &app);
        body_becomes(&server, &app, &v1.replace("v1", "v2"));
    }
}

#[test]
fn an_undetected_app_is_rejected_and_a_buildpack_from_a_git_repo_builds_it() {
    let server = Server::start();
    let app = common::unique_app("bp");
    let repo = Repo::fixture("undetectable");
    let out = server.push(repo.path(), &app);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(
            "no buildpack detected this app (tried python, node, static, procfile): add a Dockerfile"
        ),
        "{err}"
    );

    // A third-party buildpack, as a local git repository.
    ensure_stack();
    let pack = Repo::fixture("marker-buildpack");
    let path = pack.path().to_str().unwrap();
    let out = server.ssh(
        &server.admin,
        &format!("config:set {app} BUILDPACK_URL=/nowhere/x"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.push(repo.path(), &app);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("buildpack /nowhere/x: neither a git repository"),
        "{}",
        stderr(&out)
    );
    // A built-in that does not apply, asked for by name.
    server.admin(&format!("config:set {app} BUILDPACK_URL=node"));
    let out = server.push(repo.path(), &app);
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("the node buildpack does not apply to this app (its bin/detect said no)"),
        "{}",
        stderr(&out)
    );
    server.admin(&format!(
        "config:set {app} BUILDPACK_URL={path} GREETING=hello"
    ));
    // A deployer's push may not read a buildpack from the server's disk.
    let deployer = common::new_key(server.dir.path(), "deployer", "ed25519");
    let out = server.ssh_with_input(
        &server.admin,
        &format!("keys:add deployer --role deployer --apps {app}"),
        &fs::read(&deployer.public).unwrap(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.push_as(&deployer, repo.path(), &app, "main");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "buildpack {path}: a path on the server is used only for a push by an admin key"
        )),
        "{}",
        stderr(&out)
    );
    let log = server.push_ok(repo.path(), &app);
    assert!(log.contains("Fetching the buildpack file://"), "{log}");
    assert!(log.contains("-----> Marker buildpack compiling"), "{log}");
    // Its compile ran, read the env dir, and its release gave the web process.
    body_becomes(
        &server,
        &app,
        "built by the marker buildpack\nGREETING=hello",
    );
    assert!(
        Path::new(&server.data.join(format!("stacks/{app}/build/cache"))).is_dir(),
        "the cache dir is made before the first build"
    );

    // quarry.yml build.buildpack (a directory of the repository) wins over
    // the Dockerfile and BUILDPACK_URL; its compile fails: rejected with the
    // exit code and its last words, and the marker app keeps serving.
    repo.replace_with("failing-buildpack");
    let out = server.push(repo.path(), &app);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("-----> Compiling, and failing on purpose"),
        "{err}"
    );
    assert!(err.contains("boom: the compiler broke"), "{err}");
    assert!(
        err.contains("the bp buildpack's bin/compile failed with exit code 3"),
        "{err}"
    );
    body_becomes(&server, &app, "built by the marker buildpack");
    let builds = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=quarry.instance={}", server.instance),
            "--filter",
            "label=quarry.oneoff=build",
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&builds), "", "build containers are removed");
}

#[test]
fn a_buildpack_app_on_another_server_gets_the_stack_once_then_only_its_build() {
    ensure_stack();
    let server = Server::start();
    let host = common::hosts::Host::start(9);
    server.admin(&format!(
        "servers:add h9 --docker {} --address {} --memory 1024",
        host.endpoint(),
        host.address()
    ));
    // The HQ takes no app containers: the site runs on h9.
    server.admin("servers:drain local");
    let app = common::unique_app("remote-static");
    let repo = Repo::fixture("static-site");
    let started = Instant::now();
    let log = server.push_ok(repo.path(), &app);
    assert!(
        log.contains(&format!(
            "copying the stack image {STACK} to server h9 (once per server)"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "built quarry/{app}:v1 there from the compiled app"
        )),
        "{log}"
    );
    body_becomes(&server, &app, "<h1>hello from static v1</h1>");
    eprintln!(
        "first push to h9 (stack copied once): {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    repo.write("index.html", "<h1>hello from static v2</h1>");
    repo.commit("v2");
    let log = server.push_ok(repo.path(), &app);
    assert!(
        log.contains(&format!(
            "built quarry/{app}:v2 there from the compiled app"
        )),
        "{log}"
    );
    assert!(
        !log.contains("copying the stack image"),
        "the stack is on h9 already:\n{log}"
    );
    body_becomes(&server, &app, "<h1>hello from static v2</h1>");
    eprintln!(
        "second push to h9 (only the app built there): {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let on_h9 = host.docker(&["image", "inspect", &format!("quarry/{app}:v2")]);
    assert!(on_h9.status.success(), "the image was built on h9");
}

#[test]
fn a_missing_stack_is_built_on_first_need_with_progress_to_the_pusher() {
    ensure_stack();
    // A stack of its own for this daemon, made on first need from the
    // default one (QUARRY_STACK_FROM) instead of debootstrap: seconds, not minutes.
    let name = common::unique_app("quarry-stack/first-need");
    let full = format!("{name}:latest");
    struct Untag(String);
    impl Drop for Untag {
        fn drop(&mut self) {
            let _ = Command::new("docker").args(["rmi", &self.0]).output();
        }
    }
    let _untag = Untag(full.clone());
    let server = Server::start_with_env(&[
        ("QUARRY_STACK", name.as_str()),
        ("QUARRY_STACK_FROM", STACK),
    ]);
    let app = common::unique_app("first-need");
    let repo = Repo::fixture("static-site");
    let log = server.push_ok(repo.path(), &app);
    assert!(
        log.contains(&format!(
            "Building the stack image {full} from {STACK} (first use)"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("with the static buildpack on {full}")),
        "{log}"
    );
    body_becomes(&server, &app, "<h1>hello from static v1</h1>");
    assert!(server.admin("stacks").contains(&full));
    // Later pushes reuse it.
    repo.write("index.html", "<h1>hello from static v2</h1>");
    repo.commit("v2");
    let log = server.push_ok(repo.path(), &app);
    assert!(!log.contains("Building the stack image"), "{log}");
    body_becomes(&server, &app, "<h1>hello from static v2</h1>");
}
