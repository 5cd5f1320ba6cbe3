//! The dependency image of a buildpack app, end to end through the real
//! daemon, git, ssh, Docker and nginx: built on the first push, reused by a
//! code-only push (no installer, only the app's files sent to the engine),
//! rebuilt when the lockfile changes, pruned with the releases that used it
//! and removed with the app.
//!
//! Downloads bottle (two versions) from PyPI.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Repo, Server, ensure_stack, stdout, wait_for};

/// The body at `<app>.localhost`, once it is `want` (nginx switched).
fn body_becomes(server: &Server, app: &str, want: &str) {
    wait_for(
        &format!("{app} to serve {want:?}"),
        Duration::from_secs(10),
        || {
            let (status, body) = server.get(&format!("{app}.localhost"), "/");
            (status == 200 && body.contains(want)).then_some(())
        },
    );
}

/// The dependency images of `app` on the engine.
fn deps_images(app: &str) -> Vec<String> {
    let out = stdout(
        &Command::new("docker")
            .args([
                "image",
                "ls",
                "--format",
                "{{.Repository}}:{{.Tag}}",
                "--filter",
                &format!("reference=quarry/{app}:deps-*"),
            ])
            .output()
            .unwrap(),
    );
    let mut images: Vec<String> = out.lines().map(str::to_string).collect();
    images.sort();
    images
}

/// The image the running web container of `app` was made from.
fn bottle_version(app: &str) -> String {
    stdout(
        &Command::new("docker")
            .args([
                "exec",
                &format!("{app}.web.1"),
                "/app/.venv/bin/python",
                "-c",
                "import bottle; print(bottle.__version__)",
            ])
            .output()
            .unwrap(),
    )
    .trim()
    .to_string()
}

#[test]
fn a_code_only_push_reuses_the_dependency_image_and_a_lockfile_change_rebuilds_it() {
    ensure_stack();
    let server = Server::start();
    let app = common::unique_app("py-deps");
    let repo = Repo::fixture("py-app");
    // One release kept: the dependency image of the old one goes with it.
    repo.write(
        "quarry.yml",
        "releases:\n  keep: 1\nnodes:\n  web:\n    type: web\n",
    );
    repo.commit("keep one release");

    let first = server.push_ok(repo.path(), &app);
    assert!(first.contains("Collecting bottle"), "{first}");
    assert!(
        first.contains(&format!("Building the dependency image quarry/{app}:deps-")),
        "{first}"
    );
    body_becomes(&server, &app, "hello from python v1");
    let built = deps_images(&app);
    assert_eq!(built.len(), 1, "{built:?}");

    // Code only: no installer, the dependency image is reused as it is.
    repo.write("message.txt", "hello from python v2");
    repo.commit("v2");
    let started = Instant::now();
    let second = server.push_ok(repo.path(), &app);
    let took = started.elapsed();
    assert!(
        second.contains("Python dependencies unchanged: build cache used"),
        "{second}"
    );
    assert!(
        second.contains(&format!(
            "Dependencies unchanged (.venv): reusing the dependency image {}",
            built[0]
        )),
        "{second}"
    );
    assert!(!second.contains("Collecting"), "pip ran:\n{second}");
    assert!(
        !second.contains("Building the dependency image"),
        "{second}"
    );
    body_becomes(&server, &app, "hello from python v2");
    assert_eq!(deps_images(&app), built);
    // The release image is the dependency image plus the app's files.
    let parent_layers = |image: &str| {
        stdout(
            &Command::new("docker")
                .args(["image", "inspect", "-f", "{{json .RootFS.Layers}}", image])
                .output()
                .unwrap(),
        )
    };
    let deps_layers: Vec<String> = serde_json::from_str(parent_layers(&built[0]).trim()).unwrap();
    let v2_layers: Vec<String> =
        serde_json::from_str(parent_layers(&format!("quarry/{app}:v2")).trim()).unwrap();
    assert_eq!(v2_layers[..deps_layers.len()], deps_layers[..]);
    assert_eq!(v2_layers.len(), deps_layers.len() + 1, "{v2_layers:?}");

    // Another lockfile: the installer runs and a new dependency image is made;
    // the old one goes with the release it was kept for.
    repo.write("requirements.txt", "bottle==0.13.3\n");
    repo.write("message.txt", "hello from python v3");
    repo.commit("v3");
    let third = server.push_ok(repo.path(), &app);
    assert!(third.contains("Collecting bottle"), "{third}");
    assert!(
        third.contains(&format!("Building the dependency image quarry/{app}:deps-")),
        "{third}"
    );
    body_becomes(&server, &app, "hello from python v3");
    assert_eq!(bottle_version(&app), "0.13.3");
    let rebuilt = deps_images(&app);
    assert_eq!(rebuilt.len(), 1, "{rebuilt:?}");
    assert_ne!(rebuilt, built);
    eprintln!("code-only push: {:.1}s\n{second}", took.as_secs_f64());

    // The app takes its dependency images with it.
    server.admin(&format!("apps:destroy {app} --force"));
    assert_eq!(deps_images(&app), Vec::<String>::new());
}
