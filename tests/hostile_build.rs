//! Hostile builds and hostile input, end to end on the real daemon, git,
//! ssh, Docker and nginx: a build that plants symlinks for the daemon (cache,
//! `out/release.yml`, a service `build:` folder), a build that never ends, a
//! YAML alias bomb, a push of zeros, another app's images, and the uid
//! builds run as. Every attack must fail with a clear line and leave the
//! host and the other apps untouched.

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Key, Repo, Server, ensure_stack, new_key, stderr, stdout, wait_for};

/// The uid builds and buildpack apps run as.
const BUILD_UID: &str = "65000";

/// A committed repo holding `files` (path, content, executable).
fn repo_of(files: &[(&str, &str, bool)]) -> Repo {
    let repo = Repo {
        dir: tempfile::tempdir().unwrap(),
    };
    repo.git(&["init", "-q", "-b", "main"]);
    for (path, content, exec) in files {
        repo.write(path, content);
        if *exec {
            let p = repo.path().join(path);
            fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    repo.commit("first");
    repo
}

/// An in-repo buildpack `bp/` with this compile and release, serving
/// index.html with python.
fn buildpack_app(compile: &str, release: &str) -> Repo {
    repo_of(&[
        ("bp/bin/detect", "#!/bin/sh\necho Hostile\n", true),
        ("bp/bin/compile", compile, true),
        ("bp/bin/release", release, true),
        (
            "quarry.yml",
            "build:\n  buildpack: ./bp\nreleases:\n  keep: 1\nnodes:\n  web:\n    type: web\n    command: python3 -m http.server $PORT\n",
            false,
        ),
    ])
}

/// The daemon's peak resident memory (VmHWM), in MB.
fn peak_mb(server: &Server) -> u64 {
    let status = fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb / 1024
}

/// Files under `dir`, recursively, as relative paths.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() {
            out.extend(
                files_under(&entry.path())
                    .into_iter()
                    .map(|f| format!("{name}/{f}")),
            );
        } else {
            out.push(name);
        }
    }
    out.sort();
    out
}

/// A folder of old files outside any build: what an attack would delete.
fn old_canary(root: &Path) -> std::path::PathBuf {
    let canary = root.join("canary");
    fs::create_dir_all(canary.join("sub")).unwrap();
    fs::write(canary.join("a.txt"), "canary a").unwrap();
    fs::write(canary.join("sub/b.txt"), "canary b").unwrap();
    let touched = Command::new("touch")
        .args(["-h", "-d", "2001-01-01"])
        .arg(canary.join("a.txt"))
        .arg(canary.join("sub/b.txt"))
        .output()
        .unwrap();
    assert!(touched.status.success(), "{}", stderr(&touched));
    canary
}

/// The remote lines of a rejected push that say why.
fn reasons(out: &std::process::Output) -> String {
    stderr(out)
}

#[test]
fn a_build_that_swaps_its_cache_for_a_symlink_cannot_make_pruning_delete_host_files() {
    ensure_stack();
    let server = Server::start();
    let canary = old_canary(server.dir.path());
    let before = files_under(&canary);
    assert_eq!(before, ["a.txt", "sub/b.txt"]);
    // pip is a link to the canary; npm is a real folder with an old
    // download (which pruning must remove, proving it ran) and an old link
    // to the canary (removed as a link).
    let compile = format!(
        "#!/bin/sh\nset -eu\nrm -rf \"$2/pip\"\nln -s {c} \"$2/pip\"\nmkdir -p \"$2/npm\"\necho old > \"$2/npm/old.tgz\"\nln -sfn {c} \"$2/npm/inner\"\ntouch -h -d 2001-01-01 \"$2/npm/old.tgz\" \"$2/npm/inner\"\necho \"<h1>hostile $(date +%s%N)</h1>\" > \"$1/index.html\"\n",
        c = canary.display()
    );
    let repo = buildpack_app(&compile, "#!/bin/sh\nprintf -- '---\\n'\n");
    let app = common::unique_app("cachelink");
    // releases.keep 1: from the second push on, pruning runs on every push.
    let mut log = String::new();
    for n in 0..3 {
        repo.write("n.txt", &n.to_string());
        repo.commit(&format!("push {n}"));
        log = server.push_ok(repo.path(), &app);
    }
    assert!(log.contains("pruned 1 MB of cached downloads"), "{log}");
    let npm = server.data.join(format!("stacks/{app}/build/cache/npm"));
    assert!(!npm.join("old.tgz").exists() && !npm.join("inner").exists());
    assert_eq!(files_under(&canary), before, "pruning followed the link");
    assert_eq!(
        fs::read_to_string(canary.join("a.txt")).unwrap(),
        "canary a"
    );
}

#[test]
fn a_service_build_folder_that_is_a_symlink_out_of_the_repo_is_refused() {
    let server = Server::start();
    let canary = server.dir.path().join("outside-svc");
    fs::create_dir_all(&canary).unwrap();
    fs::write(
        canary.join("Dockerfile"),
        "FROM quarry-base/busybox:latest\nCOPY secret /secret\nCMD [\"sleep\", \"3600\"]\n",
    )
    .unwrap();
    fs::write(canary.join("secret"), "host secret").unwrap();
    let repo = repo_of(&[
        (
            "Dockerfile",
            &fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/hello/Dockerfile"),
            )
            .unwrap(),
            false,
        ),
        ("www/index.html", "hello\n", false),
        (
            "quarry.yml",
            "services:\n  svc:\n    build: svc\nnodes:\n  web:\n    type: web\n",
            false,
        ),
    ]);
    symlink(&canary, repo.path().join("svc")).unwrap();
    repo.commit("svc is a link");
    let app = common::unique_app("svclink");
    let out = server.push(repo.path(), &app);
    let why = reasons(&out);
    assert!(!out.status.success(), "{why}");
    assert!(
        why.contains("service build directory svc: svc is a symlink, which is not followed"),
        "{why}"
    );
    // No image of the service was built from the host folder.
    let images = stdout(
        &Command::new("docker")
            .args(["images", "--format", "{{.Repository}}"])
            .output()
            .unwrap(),
    );
    let prefix = format!("quarry/{app}");
    assert!(
        !images
            .lines()
            .any(|r| r.starts_with(&prefix) && r != prefix),
        "{images}"
    );
}

#[test]
fn a_release_yml_that_is_a_fifo_or_a_symlink_fails_the_push_promptly() {
    ensure_stack();
    let server = Server::start();
    let host_file = server.dir.path().join("host-release.yml");
    fs::write(
        &host_file,
        "---\ndefault_process_types:\n  web: echo STOLEN\n",
    )
    .unwrap();
    let compile = "#!/bin/sh\necho ok > \"$1/index.html\"\n";
    let app = common::unique_app("relfifo");
    let cases = [
        (
            "#!/bin/sh\nrm -f /tmp/out/release.yml\nmkfifo /tmp/out/release.yml\n".to_string(),
            "release.yml is not a regular file (a FIFO)",
        ),
        (
            format!(
                "#!/bin/sh\nrm -f /tmp/out/release.yml\nln -s {} /tmp/out/release.yml\n",
                host_file.display()
            ),
            "release.yml is a symlink, which is not followed",
        ),
    ];
    for (release, want) in cases {
        let repo = buildpack_app(compile, &release);
        let started = Instant::now();
        let out = server.push(repo.path(), &app);
        let why = reasons(&out);
        assert!(!out.status.success(), "{why}");
        assert!(
            why.contains(&format!("the ./bp buildpack's bin/release output: {want}"))
                || why.contains(&format!("bin/release output: {want}")),
            "{why}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_dockerfile_build_that_never_ends_times_out_and_frees_the_app() {
    let server = Server::start();
    let hello = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/hello/Dockerfile"),
    )
    .unwrap();
    let repo = repo_of(&[
        (
            "Dockerfile",
            "FROM quarry-base/busybox:latest\nRUN yes > /dev/null\n",
            false,
        ),
        ("www/index.html", "fixed\n", false),
        (
            "quarry.yml",
            "build:\n  timeout: 5\nnodes:\n  web:\n    type: web\n",
            false,
        ),
    ]);
    let app = common::unique_app("forever");
    let started = Instant::now();
    let out = server.push(repo.path(), &app);
    let why = reasons(&out);
    assert!(!out.status.success(), "{why}");
    assert!(
        why.contains(&format!("build of {app} failed: build timed out after 5s")),
        "{why}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    // The engine stops the RUN step once the build is dropped.
    wait_for("the RUN step to stop", Duration::from_secs(30), || {
        let ps = stdout(
            &Command::new("docker")
                .args(["ps", "--no-trunc", "--format", "{{.Command}}"])
                .output()
                .unwrap(),
        );
        (!ps.contains("yes > /dev/null")).then_some(())
    });
    // The app's lock is free: the next push goes through.
    repo.write("Dockerfile", &hello);
    repo.commit("a build that ends");
    server.push_ok(repo.path(), &app);
    assert!(server.body(&app).contains("fixed"));
}

#[test]
fn a_yaml_alias_bomb_is_refused_in_one_line_without_memory() {
    let server = Server::start();
    // 40 KB scalar aliased 2,000 times: ~48 KB of text, 80 MB expanded.
    let mut manifest = format!("x: &a \"{}\"\nnodes: [", "x".repeat(40_000));
    manifest += &vec!["*a"; 2_000].join(", ");
    manifest += "]\n";
    let repo = repo_of(&[
        ("Dockerfile", "FROM quarry-base/busybox:latest\n", false),
        ("quarry.yml", &manifest, false),
    ]);
    let app = common::unique_app("bomb");
    let started = Instant::now();
    let out = server.push(repo.path(), &app);
    let why = reasons(&out);
    assert!(!out.status.success(), "{why}");
    let line = why
        .lines()
        .find(|l| l.contains("aliases expand to more than"))
        .unwrap_or_else(|| panic!("{why}"));
    assert!(
        line.contains("quarry.yml:2: invalid YAML: aliases expand to more than"),
        "{line}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    let peak = peak_mb(&server);
    eprintln!("alias bomb: daemon peak {peak} MB");
    assert!(peak < 200, "daemon peaked at {peak} MB");
}

#[test]
fn a_push_of_zeros_over_the_tree_cap_and_a_pack_over_the_push_cap_are_refused() {
    let server = Server::start_with_env(&[
        ("QUARRY_MAX_TREE_SIZE", "50000000"),
        ("QUARRY_MAX_PUSH_SIZE", "2000000"),
    ]);
    let app = common::unique_app("zeros");
    let repo = Repo::fixture("hello");
    // 300 MB of zeros: a pack of well under a megabyte.
    {
        use std::io::Write;
        let mut f = fs::File::create(repo.path().join("zeros")).unwrap();
        let mb = vec![0u8; 1 << 20];
        for _ in 0..300 {
            f.write_all(&mb).unwrap();
        }
    }
    repo.commit("zeros");
    let out = server.push(repo.path(), &app);
    let why = reasons(&out);
    assert!(!out.status.success(), "{why}");
    assert!(
        why.contains("the pushed tree is larger than 50 MB unpacked"),
        "{why}"
    );
    let peak = peak_mb(&server);
    eprintln!("zeros: daemon peak {peak} MB");
    assert!(peak < 200, "daemon peaked at {peak} MB");

    // Random bytes do not compress: the pack itself is over the push cap.
    fs::remove_file(repo.path().join("zeros")).unwrap();
    let noise: Vec<u8> = (0..3_000_000).map(|_| rand::random::<u8>()).collect();
    fs::write(repo.path().join("noise"), noise).unwrap();
    repo.commit("noise");
    let out = server.push(repo.path(), &app);
    let why = reasons(&out);
    assert!(!out.status.success(), "{why}");
    assert!(why.contains("pack exceeds maximum allowed size"), "{why}");
}

/// Register a deployer of `app` only.
fn deployer(server: &Server, app: &str) -> Key {
    let key = new_key(server.dir.path(), "mallory", "ed25519");
    let out = server.ssh_with_input(
        &server.admin,
        &format!("keys:add mallory --role deployer --apps {app}"),
        &fs::read(&key.public).unwrap(),
    );
    assert!(out.status.success(), "keys:add: {}", stderr(&out));
    key
}

fn image_id(image: &str) -> String {
    stdout(
        &Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}}", image])
            .output()
            .unwrap(),
    )
    .trim()
    .to_string()
}

#[test]
fn another_apps_image_is_refused_as_a_base_and_as_a_service() {
    let server = Server::start();
    let victim = common::unique_app("victim");
    server.push_ok(Repo::fixture("hello").path(), &victim);
    let victim_image = format!("quarry/{victim}:v1");
    let victim_id = image_id(&victim_image);
    assert!(!victim_id.is_empty());
    let victim_body = server.body(&victim);

    let attacker = common::unique_app("attacker");
    server.admin(&format!("apps:create {attacker}"));
    let mallory = deployer(&server, &attacker);
    let base = repo_of(&[(
        "Dockerfile",
        &format!("ARG BASE={victim_image}\nFROM --platform=linux/amd64 ${{BASE}}\n"),
        false,
    )]);
    let out = server.push_as(&mallory, base.path(), &attacker, "main");
    let why = reasons(&out);
    assert!(!out.status.success(), "{why}");
    assert!(
        why.contains(&format!(
            "Dockerfile: image {victim_image} belongs to another app ({victim})"
        )),
        "{why}"
    );

    let service = repo_of(&[
        (
            "Dockerfile",
            "FROM quarry-base/busybox:latest\nCMD [\"sleep\", \"3600\"]\n",
            false,
        ),
        (
            "quarry.yml",
            &format!(
                "services:\n  stolen:\n    image: {victim_image}\nnodes:\n  worker:\n    type: worker\n"
            ),
            false,
        ),
    ]);
    let out = server.push_as(&mallory, service.path(), &attacker, "main");
    let why = reasons(&out);
    assert!(!out.status.success(), "{why}");
    assert!(
        why.contains(&format!(
            "quarry.yml: services.stolen.image: image {victim_image} belongs to another app ({victim})"
        )),
        "{why}"
    );
    // The victim is untouched: same image, still serving.
    assert_eq!(image_id(&victim_image), victim_id);
    assert_eq!(server.body(&victim), victim_body);
    assert!(server.containers(Some(&attacker)).is_empty());
}

#[test]
fn the_build_and_the_buildpack_app_run_as_the_dedicated_uid() {
    ensure_stack();
    let server = Server::start();
    let repo = buildpack_app(
        "#!/bin/sh\nset -eu\necho \"build uid: $(id -u)\"\necho ok > \"$1/index.html\"\n",
        "#!/bin/sh\nprintf -- '---\\n'\n",
    );
    let app = common::unique_app("uid");
    let log = server.push_ok(repo.path(), &app);
    assert!(log.contains(&format!("build uid: {BUILD_UID}")), "{log}");
    // The compiled app is in the image, owned by the uid it runs as.
    assert!(server.body(&app).contains("ok"));
    assert!(!log.contains("build uid: 1000"), "{log}");
    let cache = server.data.join(format!("stacks/{app}/build/cache"));
    let owner = {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(&cache).unwrap().uid()
    };
    assert_eq!(owner.to_string(), BUILD_UID);
    let id = stdout(
        &Command::new("docker")
            .args(["exec", &format!("{app}.web.1"), "id", "-u"])
            .output()
            .unwrap(),
    );
    assert_eq!(id.trim(), BUILD_UID);
}
