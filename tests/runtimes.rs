//! Runtime versions, end to end: the Python or Node an app asks for picks
//! the Debian suite's stack its build and its image run on (`.python-version`,
//! `runtime.txt`, Pipfile.lock, pyproject.toml, package.json `engines.node`,
//! `.nvmrc`), a version no suite has is refused before anything is
//! downloaded, the dependency cache is keyed by the runtime, the Python
//! installers (pip, uv, pipenv, poetry) install what the lock file pins, and
//! the Python conventions Heroku apps rely on (collectstatic, hooks,
//! WEB_CONCURRENCY).
//!
//! Needs the bookworm, trixie and forky stacks (built once per machine,
//! shared: the stack build holds one machine-wide lock) and downloads from
//! PyPI and npm.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Repo, Server, ensure_suite, stderr, wait_for};

/// `(status, body)` of `path` once `/` of the app answers 200 with `want`.
fn serves(server: &Server, app: &str, want: &str) -> String {
    let mut last = String::new();
    wait_for(
        &format!("{app} to serve {want:?}"),
        Duration::from_secs(20),
        || {
            let (status, body) = server.get(&format!("{app}.localhost"), "/");
            last = format!("{status} {body}");
            (status == 200 && body.contains(want)).then_some(body)
        },
    )
}

/// The image layers of `image`, bottom first.
fn layers(image: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["image", "inspect", "-f", "{{json .RootFS.Layers}}", image])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_django_app_asking_for_a_newer_python_runs_on_that_suite_with_its_static_files() {
    ensure_suite("bookworm");
    ensure_suite("trixie");
    let server = Server::start();
    let app = common::unique_app("django");
    let repo = Repo::fixture("django-app");

    let started = Instant::now();
    let first = server.push_ok(repo.path(), &app);
    let t1 = started.elapsed();
    assert!(
        first.contains("Python 3.13 (from .python-version 3.13) on quarry-stack/trixie:latest"),
        "{first}"
    );
    assert!(
        first.contains("Django app: python manage.py collectstatic --noinput"),
        "{first}"
    );
    // The page links the stylesheet by its hashed name (the manifest
    // collectstatic wrote); whitenoise serves it by that name.
    let body = serves(&server, &app, "hello from django v1 on python 3.13");
    let css = body
        .split('"')
        .find(|s| s.starts_with("/static/pages/site.") && s.ends_with(".css"))
        .unwrap_or_else(|| panic!("no hashed stylesheet in {body}"))
        .to_string();
    assert_ne!(css, "/static/pages/site.css", "{body}");
    let (status, sheet) = server.get(&format!("{app}.localhost"), &css);
    assert_eq!((status, sheet.trim()), (200, "body { color: #123456; }"));

    // A code change: the same Python and requirements reuse the venv without
    // running pip, and the image reuses the venv's layer.
    repo.write(
        "pages/views.py",
        &std::fs::read_to_string(repo.path().join("pages/views.py"))
            .unwrap()
            .replace("django v1", "django v2"),
    );
    repo.commit("v2");
    let started = Instant::now();
    let second = server.push_ok(repo.path(), &app);
    let t2 = started.elapsed();
    assert!(
        second.contains("Python dependencies unchanged: build cache used"),
        "{second}"
    );
    for installer in ["Installing dependencies", "Collecting", "Downloading"] {
        assert!(!second.contains(installer), "{installer}:\n{second}");
    }
    serves(&server, &app, "hello from django v2 on python 3.13");
    let (v1, v2) = (
        layers(&format!("quarry/{app}:v1")),
        layers(&format!("quarry/{app}:v2")),
    );
    // stack, .venv, app: the first two are shared, only the app's is new.
    assert_eq!(v1.len(), 3, "{v1:?}");
    assert_eq!(v1[..2], v2[..2], "the venv layer was not reused");
    assert_ne!(v1[2], v2[2]);
    eprintln!(
        "django: first push {:.1}s, cached push {:.1}s\n--- the cached push:\n{second}",
        t1.as_secs_f64(),
        t2.as_secs_f64()
    );

    // Another Python: another suite, and the dependencies are installed anew.
    repo.write(".python-version", "3.11\n");
    repo.commit("python 3.11");
    let third = server.push_ok(repo.path(), &app);
    assert!(
        third.contains("Python 3.11 (from .python-version 3.11) on quarry-stack/bookworm:latest"),
        "{third}"
    );
    assert!(
        third.contains("Installing dependencies with pip"),
        "{third}"
    );
    serves(&server, &app, "hello from django v2 on python 3.11");
    server.admin(&format!("apps:destroy {app} --force"));
}

#[test]
fn a_python_no_suite_has_is_refused_in_one_line_before_any_download() {
    let server = Server::start();
    let app = common::unique_app("py27");
    let repo = Repo::fixture("py27-app");
    let out = server.push(repo.path(), &app);
    let said = stderr(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains(
            ".python-version: Python 2.7 is not available; available: 3.11 (bookworm), 3.13 (trixie), 3.14, 3.15 (forky)"
        ),
        "{said}"
    );
    // Refused before the stack, the build container or pip.
    for later in [
        "Building quarry/",
        "Creating virtualenv",
        "Collecting",
        "stack image",
    ] {
        assert!(!said.contains(later), "{later}:\n{said}");
    }
}

#[test]
fn a_flask_app_gets_its_runtime_txt_python_hooks_and_worker_count() {
    ensure_suite("bookworm");
    let server = Server::start();
    let app = common::unique_app("flask");
    let repo = Repo::fixture("flask-runtime");
    let log = server.push_ok(repo.path(), &app);
    assert!(
        log.contains(
            "Python 3.11 (from runtime.txt python-3.11.9) on quarry-stack/bookworm:latest"
        ),
        "{log}"
    );
    assert!(log.contains("Running bin/pre_compile"), "{log}");
    assert!(log.contains("Running bin/post_compile"), "{log}");
    let body = serves(&server, &app, "flask on python 3.11");
    assert!(
        body.contains("hooks: pre_compile ran, post_compile ran"),
        "{body}"
    );
    assert!(body.contains("unbuffered=1"), "{body}");
    let workers = body
        .split("workers=")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .and_then(|n| n.parse::<u32>().ok());
    assert!(workers.is_some_and(|n| (1..=8).contains(&n)), "{body}");
    server.admin(&format!("apps:destroy {app} --force"));
}

#[test]
fn a_pyproject_app_with_a_uv_lock_is_installed_by_uv() {
    ensure_suite("bookworm");
    let server = Server::start();
    let app = common::unique_app("uv");
    let repo = Repo::fixture("uv-app");
    let log = server.push_ok(repo.path(), &app);
    assert!(
        log.contains(
            "Python 3.11 (from pyproject.toml requires-python >=3.11) on quarry-stack/bookworm:latest"
        ),
        "{log}"
    );
    assert!(
        log.contains("Installing dependencies with uv (uv.lock)"),
        "{log}"
    );
    serves(&server, &app, "uv app on python 3.11 with bottle 0.13.4");
    server.admin(&format!("apps:destroy {app} --force"));
}

/// Push `repo` to a new app, then a code-only change: the first log and the
/// cached one, with their seconds (printed for the record).
fn push_twice(server: &Server, repo: &Repo, app: &str, file: &str) -> (String, String) {
    let started = Instant::now();
    let first = server.push_ok(repo.path(), app);
    let t1 = started.elapsed();
    let path = repo.path().join(file);
    let comment = if file.ends_with(".py") {
        "# v2\n"
    } else {
        "// v2\n"
    };
    let text = std::fs::read_to_string(&path).unwrap() + comment;
    std::fs::write(&path, text).unwrap();
    repo.commit("v2");
    let started = Instant::now();
    let second = server.push_ok(repo.path(), app);
    eprintln!(
        "{app}: first push {:.1}s, cached push {:.1}s\n--- first push:\n{first}\n--- cached push:\n{second}",
        t1.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    (first, second)
}

/// The version a Pipfile.lock pins `package` to (`==3.1.3` → `3.1.3`).
fn pipfile_pin(lock: &serde_json::Value, package: &str) -> String {
    lock["default"][package]["version"]
        .as_str()
        .and_then(|v| v.strip_prefix("=="))
        .unwrap_or_else(|| panic!("{package} is not pinned in Pipfile.lock"))
        .to_string()
}

#[test]
fn a_pipenv_app_gets_the_python_and_the_versions_its_pipfile_lock_pins() {
    ensure_suite("trixie");
    let server = Server::start();
    let app = common::unique_app("pipenv");
    let repo = Repo::fixture("pipenv-app");
    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.path().join("Pipfile.lock")).unwrap()).unwrap();
    let (first, second) = push_twice(&server, &repo, &app, "app.py");
    assert!(
        first.contains(
            "Python 3.13 (from Pipfile.lock python_version 3.13) on quarry-stack/trixie:latest"
        ),
        "{first}"
    );
    assert!(
        first.contains("Installing dependencies with pipenv (Pipfile.lock)"),
        "{first}"
    );
    // flask and gunicorn are named in the Pipfile, werkzeug only in the lock.
    serves(
        &server,
        &app,
        &format!(
            "pipenv app on python 3.13: flask {}, werkzeug {}, gunicorn {}",
            pipfile_pin(&lock, "flask"),
            pipfile_pin(&lock, "werkzeug"),
            pipfile_pin(&lock, "gunicorn")
        ),
    );
    assert!(
        second.contains("Python dependencies unchanged: build cache used"),
        "{second}"
    );
    assert!(!second.contains("Installing dependencies"), "{second}");
    serves(&server, &app, "pipenv app on python 3.13");

    // A Pipfile changed without `pipenv lock`: refused, as `pipenv install
    // --deploy` refuses it, and the running release stays.
    let pipfile = std::fs::read_to_string(repo.path().join("Pipfile")).unwrap();
    repo.write(
        "Pipfile",
        &pipfile.replace("gunicorn = \"*\"\n", "gunicorn = \"*\"\nbottle = \"*\"\n"),
    );
    repo.commit("bottle, not locked");
    let out = server.push(repo.path(), &app);
    let said = stderr(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains(
            "Pipfile.lock: out of date (it does not match the Pipfile); run `pipenv lock` and push both"
        ),
        "{said}"
    );
    assert!(!said.contains("Collecting"), "{said}");
    serves(&server, &app, "pipenv app on python 3.13");
    server.admin(&format!("apps:destroy {app} --force"));
}

/// The version poetry.lock pins `package` to.
fn poetry_pin(lock: &str, package: &str) -> String {
    let entry = format!("[[package]]\nname = \"{package}\"\nversion = \"");
    let at = lock
        .find(&entry)
        .unwrap_or_else(|| panic!("{package} is not in poetry.lock"));
    let rest = &lock[at + entry.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

#[test]
fn a_poetry_app_is_installed_by_poetry_with_its_lock_files_versions() {
    ensure_suite("bookworm");
    let server = Server::start();
    let app = common::unique_app("poetry");
    let repo = Repo::fixture("poetry-app");
    let lock = std::fs::read_to_string(repo.path().join("poetry.lock")).unwrap();
    let (first, second) = push_twice(&server, &repo, &app, "wsgi.py");
    assert!(
        first.contains(
            "Python 3.11 (from pyproject.toml requires-python >=3.11) on quarry-stack/bookworm:latest"
        ),
        "{first}"
    );
    assert!(
        first.contains("Installing dependencies with poetry (poetry.lock)"),
        "{first}"
    );
    serves(
        &server,
        &app,
        &format!(
            "poetry app on python 3.11: gunicorn {}, packaging {}",
            poetry_pin(&lock, "gunicorn"),
            poetry_pin(&lock, "packaging")
        ),
    );
    assert!(
        second.contains("Python dependencies unchanged: build cache used"),
        "{second}"
    );
    assert!(!second.contains("Installing dependencies"), "{second}");
    server.admin(&format!("apps:destroy {app} --force"));
}

#[test]
fn a_node_app_whose_engines_ask_for_node_20_runs_on_trixie() {
    ensure_suite("trixie");
    let server = Server::start();
    let app = common::unique_app("engines");
    let repo = Repo::fixture("node-engines");
    let (first, second) = push_twice(&server, &repo, &app, "server.js");
    assert!(
        first.contains(
            "Node 20 (from package.json engines.node 20.x) on quarry-stack/trixie:latest"
        ),
        "{first}"
    );
    assert!(
        first.contains("Installing dependencies: npm ci (package-lock.json)"),
        "{first}"
    );
    assert!(first.contains("Node.js app (node v20."), "{first}");
    assert!(
        second.contains("Node dependencies unchanged: build cache used"),
        "{second}"
    );
    serves(&server, &app, "engines app on node v20.");
    server.admin(&format!("apps:destroy {app} --force"));
}

#[test]
fn a_node_app_gets_the_node_its_nvmrc_names_and_a_new_one_reinstalls() {
    ensure_suite("forky");
    ensure_suite("trixie");
    let server = Server::start();
    let app = common::unique_app("nvmrc");
    let repo = Repo::fixture("node-nvmrc");
    let (first, second) = push_twice(&server, &repo, &app, "server.js");
    assert!(
        first.contains("Node 24 (from .nvmrc 24) on quarry-stack/forky:latest"),
        "{first}"
    );
    assert!(
        second.contains("Node dependencies unchanged: build cache used"),
        "{second}"
    );
    serves(&server, &app, "nvmrc app on node v24.");

    // Another Node: another suite, and node_modules is installed anew.
    repo.write(".nvmrc", "v20.11.0\n");
    repo.commit("node 20");
    let third = server.push_ok(repo.path(), &app);
    assert!(
        third.contains("Node 20 (from .nvmrc v20.11.0) on quarry-stack/trixie:latest"),
        "{third}"
    );
    assert!(
        third.contains("Installing dependencies: npm install (no lock file)"),
        "{third}"
    );
    serves(&server, &app, "nvmrc app on node v20.");
    server.admin(&format!("apps:destroy {app} --force"));
}

#[test]
fn a_node_no_suite_has_is_refused_in_one_line_before_any_download() {
    let server = Server::start();
    let app = common::unique_app("node4");
    let repo = Repo::fixture("node-engines");
    let manifest = std::fs::read_to_string(repo.path().join("package.json")).unwrap();
    repo.write("package.json", &manifest.replace("\"20.x\"", "\"4.x\""));
    repo.commit("node 4");
    let out = server.push(repo.path(), &app);
    let said = stderr(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains(
            "package.json engines.node: Node 4.x is not available; available: 18 (bookworm), 20 (trixie), 24 (forky)"
        ),
        "{said}"
    );
    for later in [
        "Building quarry/",
        "Installing dependencies",
        "stack image",
        "npm",
    ] {
        assert!(!said.contains(later), "{later}:\n{said}");
    }
}
