//! Node apps as their authors wrote them for Heroku, and app.json, end to
//! end through the real daemon, git, ssh, Docker and nginx:
//! - npm without a lock file, yarn classic (yarn.lock), yarn berry
//!   (`packageManager: yarn@4.5.0`) and pnpm (pnpm-lock.yaml): each
//!   fixture's build step needs its devDependency (kleur, which Debian's
//!   nodejs does not ship globally) and writes the file the app serves (the
//!   build ran), and the app reports that
//!   the devDependency is gone at run time (pruned) and NODE_ENV=production;
//!   the node-build fixture has no start script and no Procfile (the default
//!   web is `npm start`, i.e. `node server.js`).
//! - app.json: a required key refuses the first deploy until config:set, a
//!   `value` default, a generated secret (set once, kept on redeploy, never in
//!   the push output), `formation` (two workers) and `scripts.postdeploy`
//!   (its output in the first deploy's log only).
//!
//! The node builds download two small packages (and yarn / pnpm) from npm
//! (yarn from registry.yarnpkg.com, its default mirror of npm's registry).

mod common;

use std::time::Duration;

use common::{Repo, Server, ensure_stack, stderr, wait_for};

/// The body at `<app>.localhost`, once it contains `want`; the last answer
/// is shown when it never does.
fn body_becomes(server: &Server, app: &str, want: &str, log: &str) -> String {
    let last = std::cell::RefCell::new(String::new());
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(
            &format!("{app} to serve {want:?}"),
            Duration::from_secs(20),
            || {
                let (status, body) = server.get(&format!("{app}.localhost"), "/");
                *last.borrow_mut() = format!("{status} {body}");
                (status == 200 && body.contains(want)).then_some(body)
            },
        )
    }));
    found.unwrap_or_else(|_| {
        panic!(
            "{app} never served {want:?}; last: {:?}; push:\n{log}",
            last.borrow()
        )
    })
}

/// Push `fixture`, check what the build log says and what the app serves;
/// then push again and check the cache was used.
fn node_app(fixture: &str, install: &str, built_by: &str) -> (Server, String, Repo) {
    ensure_stack();
    let server = Server::start();
    let app = common::unique_app(fixture);
    let repo = Repo::fixture(fixture);
    let started = std::time::Instant::now();
    let log = server.push_ok(repo.path(), &app);
    eprintln!(
        "{fixture}: first push {:.1}s",
        started.elapsed().as_secs_f64()
    );
    for line in [
        install,
        "Pruning dev dependencies",
        "with the node buildpack",
    ] {
        assert!(log.contains(line), "{fixture}: no {line:?} in:\n{log}");
    }
    body_becomes(
        &server,
        &app,
        &format!("built by {built_by} (true); dev dependency absent; NODE_ENV=production; 1m"),
        &log,
    );
    // Again with the same lock file: node_modules from the cache, the build
    // and the pruning run again.
    repo.write("README", "v2\n");
    repo.commit("v2");
    let started = std::time::Instant::now();
    let log = server.push_ok(repo.path(), &app);
    eprintln!(
        "{fixture}: cached push {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        log.contains("Node dependencies unchanged: build cache used"),
        "{log}"
    );
    assert!(!log.contains("Installing dependencies"), "{log}");
    body_becomes(&server, &app, "dev dependency absent", &log);
    (server, app, repo)
}

#[test]
fn an_npm_app_without_a_lock_file_builds_prunes_and_starts_with_npm_start() {
    let (server, app, repo) = node_app(
        "node-build",
        "Installing dependencies: npm install (no lock file)",
        "npm run build",
    );
    // NPM_CONFIG_PRODUCTION=false keeps the dev dependencies (Heroku's
    // switch); config:set restarts the same image, a push rebuilds.
    server.admin(&format!("config:set {app} NPM_CONFIG_PRODUCTION=false"));
    repo.write("README", "v3\n");
    repo.commit("v3");
    let log = server.push_ok(repo.path(), &app);
    assert!(
        log.contains("Keeping dev dependencies (NPM_CONFIG_PRODUCTION=false)"),
        "{log}"
    );
    assert!(!log.contains("Pruning dev dependencies"), "{log}");
    body_becomes(&server, &app, "dev dependency present", &log);
}

#[test]
fn a_yarn_app_installs_with_yarn_and_runs_heroku_postbuild_before_build() {
    let _ = node_app(
        "node-yarn",
        "Installing dependencies: yarn install (yarn.lock)",
        "yarn heroku-postbuild",
    );
}

#[test]
fn a_yarn_berry_app_gets_the_yarn_its_package_manager_field_names() {
    let _ = node_app("node-berry", "yarn 4.5.0, yarn.lock", "yarn berry build");
}

#[test]
fn a_pnpm_app_installs_with_pnpm_and_is_pruned() {
    let _ = node_app(
        "node-pnpm",
        "Installing dependencies: pnpm install (pnpm-lock.yaml)",
        "pnpm build",
    );
}

#[test]
fn app_json_sets_up_the_first_deploy_and_only_the_first() {
    common::ensure_base_image();
    let server = Server::start();
    let app = common::unique_app("appjson");
    let repo = Repo::fixture("appjson-app");

    // A required key without a value: the first deploy is refused, naming it.
    let out = server.push(repo.path(), &app);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "app.json: env.API_TOKEN: required and not set; set it with `config:set {app} API_TOKEN=…` and push again"
        )),
        "{err}"
    );
    // Nothing was set by the refused push.
    let config = server.admin(&format!("config {app}"));
    assert!(!config.contains("SECRET_KEY"), "{config}");

    server.admin(&format!("config:set {app} API_TOKEN=given"));
    let first = server.push_ok(repo.path(), &app);
    for line in [
        "Setting up from app.json (first deploy)",
        "app.json: addons: not used by Quarry (ignored)",
        "app.json: formation.web.size: ignored",
        "SECRET_KEY: set to a generated secret (not shown)",
        "GREETING: set from app.json's value",
        "formation: web=1 worker=2",
        "postdeploy ran with GREETING=hello from app.json and a 64-character secret",
    ] {
        assert!(first.contains(line), "no {line:?} in:\n{first}");
    }
    let secret = server.admin(&format!("config:get {app} SECRET_KEY"));
    let secret = secret.trim().to_owned();
    assert_eq!(secret.len(), 64, "{secret:?}");
    assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()), "{secret}");
    assert!(!first.contains(&secret), "the secret was printed:\n{first}");
    assert_eq!(
        server.admin(&format!("config:get {app} API_TOKEN")).trim(),
        "given"
    );
    body_becomes(&server, &app, "GREETING=hello from app.json", &first);
    let workers = |server: &Server| {
        server
            .containers(Some(&app))
            .into_iter()
            .filter(|(name, state, _)| name.contains(".worker.") && state == "running")
            .count()
    };
    assert_eq!(workers(&server), 2, "{:?}", server.containers(Some(&app)));
    // The postdeploy one-off's output is kept in the first release's log.
    let events = server.admin(&format!("events {app}"));
    assert!(events.contains("postdeploy: exit 0"), "{events}");

    // A redeploy: app.json is not read again; the secret is kept, the
    // scale set since (ps:scale) is not reset, postdeploy does not run.
    // Not even parsed: a broken app.json does not refuse the redeploy.
    server.admin(&format!("ps:scale {app} worker=1"));
    repo.write("app.json", "{ \"env\": broken");
    repo.commit("v2");
    let second = server.push_ok(repo.path(), &app);
    assert!(
        second.contains("app.json: applied on the first deploy; not read again"),
        "{second}"
    );
    assert!(!second.contains("postdeploy ran"), "{second}");
    assert!(!second.contains(&secret), "{second}");
    assert_eq!(
        server.admin(&format!("config:get {app} SECRET_KEY")).trim(),
        secret
    );
    wait_for("one worker after ps:scale", Duration::from_secs(20), || {
        (workers(&server) == 1).then_some(())
    });
}

#[test]
fn a_failing_postdeploy_is_reported_and_the_release_stays_live() {
    common::ensure_base_image();
    let server = Server::start();
    let app = common::unique_app("postdeploy-fails");
    let repo = Repo::fixture("appjson-postdeploy-fails");
    let log = server.push_ok(repo.path(), &app);
    for line in [
        "Running app.json's postdeploy: echo seeding the database; exit 3",
        "seeding the database",
        "postdeploy: exit 3; the release stays live",
    ] {
        assert!(log.contains(line), "no {line:?} in:\n{log}");
    }
    body_becomes(&server, &app, "GREETING=still served", &log);
    let events = server.admin(&format!("events {app}"));
    assert!(events.contains("postdeploy: exit 3"), "{events}");
}
