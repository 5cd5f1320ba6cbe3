//! Unit tests of the pure parts: sources, release output, manifests, the cache cutoff.

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use super::cache::{download_cutoff, remove_older};
use super::*;
use crate::manifest::Command;
use crate::stack::Stack;
use crate::store::{ManifestSource, Release};

#[test]
fn sources_parse() {
    assert_eq!(
        Source::parse("python").unwrap(),
        Source::Builtin("python".into())
    );
    assert_eq!(
        Source::parse("https://example.com/bp.git#v2").unwrap(),
        Source::Git {
            url: "https://example.com/bp.git".into(),
            reference: Some("v2".into())
        }
    );
    assert_eq!(
        Source::parse("/srv/bp").unwrap(),
        Source::Local("/srv/bp".into())
    );
    assert_eq!(Source::parse("./bp/").unwrap(), Source::InRepo("bp".into()));
    for bad in [
        "",
        "--upload-pack=x",
        "ext::sh -c x",
        "ext::sh",
        "ssh://h/x",
        "a b",
        "../up",
        "/a/../b",
        "https://h/x#--force",
        "host:path",
    ] {
        assert!(Source::parse(bad).is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn release_yaml() {
    let t = process_types("node", "---\ndefault_process_types:\n  web: npm start\n").unwrap();
    assert_eq!(t["web"], "npm start");
    assert!(
        process_types("p", "---\ndefault_process_types: {}\n")
            .unwrap()
            .is_empty()
    );
    assert!(process_types("p", "").unwrap().is_empty());
    let e = process_types("x", "default_process_types: [1, 2\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("the x buildpack's bin/release printed invalid YAML"),
        "{e}"
    );
    let e = process_types("x", "default_process_types:\n  Web!: a\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("process type"), "{e}");
}

#[test]
fn a_procfile_wins_over_defaults_and_gets_the_missing_ones() {
    let defaults = BTreeMap::from([
        ("web".to_string(), "python app.py".to_string()),
        ("clock".to_string(), "python clock.py".to_string()),
    ]);
    let procfile = ManifestSource {
        file: "Procfile".into(),
        text: "web: gunicorn app:app\n".into(),
        buildpack: None,
    };
    let s = manifest_source(Some(&procfile), &defaults, "python").unwrap();
    assert_eq!(s.file, "Procfile (+ the python buildpack's defaults)");
    assert_eq!(
        s.text,
        "web: gunicorn app:app\n# default process types of the python buildpack\nclock: python clock.py\n"
    );
    assert_eq!(s.buildpack.as_deref(), Some("python"));
    let s = manifest_source(None, &defaults, "python").unwrap();
    assert_eq!(s.file, "Procfile (from the python buildpack)");
    let m = crate::stack::from_source(s).unwrap().manifest;
    assert_eq!(
        m.nodes["web"].command,
        Some(Command::Exec(vec![
            ENTRYPOINT.into(),
            "/bin/sh".into(),
            "-c".into(),
            "python app.py".into()
        ]))
    );
    let e = manifest_source(None, &BTreeMap::new(), "procfile")
        .unwrap_err()
        .to_string();
    assert!(e.contains("add a Procfile"), "{e}");
}

fn release(number: u32, status: crate::store::ReleaseStatus, created: &str) -> Release {
    Release {
        number,
        commit: "c".repeat(40),
        image: format!("quarry/a:v{number}"),
        env: BTreeMap::new(),
        global_env: BTreeMap::new(),
        manifest: None,
        created: created.into(),
        by: "k".into(),
        fingerprint: "f".into(),
        description: "push".into(),
        status,
        reason: None,
    }
}

#[test]
fn downloads_older_than_the_kept_releases_go() {
    use crate::store::ReleaseStatus::*;
    let all = vec![
        release(1, Superseded, "2026-01-01T00:00:00Z"),
        release(2, Failed, "2026-01-02T00:00:00Z"),
        release(3, Superseded, "2026-01-03T00:00:00Z"),
        release(4, Live, "2026-01-04T00:00:00Z"),
        release(5, Deploying, "2026-01-05T00:00:00Z"),
    ];
    let at =
        |day: u64| std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600 + (day - 1) * 86_400);
    // keep 3: v5, v4, v3 stay; what is older than v3 goes.
    assert_eq!(download_cutoff(&all, &all[4], 3), Some(at(3)));
    assert_eq!(download_cutoff(&all, &all[4], 1), Some(at(5)));
    // keep 4 or more: v1 is still kept, nothing is older.
    assert_eq!(download_cutoff(&all, &all[4], 4), None);
    assert_eq!(download_cutoff(&all, &all[4], 5), None);

    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("a/old.whl"), dir.path().join("new.whl"));
    fs::create_dir_all(dir.path().join("a")).unwrap();
    fs::write(&old, "12345").unwrap();
    fs::write(&new, "1").unwrap();
    fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(at(1))
        .unwrap();
    assert_eq!(remove_older(dir.path(), at(3)), 5);
    assert!(!old.exists() && new.exists());
}

#[test]
fn dockerfile_wins_unless_a_buildpack_is_asked_for() {
    let mut stack = Stack {
        source: None,
        manifest: crate::manifest::default_manifest(),
        dockerfile: true,
    };
    let env = BTreeMap::new();
    assert_eq!(choose(&stack, &env).unwrap(), Choice::Dockerfile);
    let with_url = BTreeMap::from([(BUILDPACK_URL.to_string(), "/srv/bp".to_string())]);
    assert_eq!(
        choose(&stack, &with_url).unwrap(),
        Choice::Buildpack(Some(Source::Local("/srv/bp".into())))
    );
    stack.manifest.build.buildpack = Some("node".into());
    assert_eq!(
        choose(&stack, &with_url).unwrap(),
        Choice::Buildpack(Some(Source::Builtin("node".into())))
    );
    stack.dockerfile = false;
    stack.manifest.build.buildpack = None;
    assert_eq!(choose(&stack, &env).unwrap(), Choice::Buildpack(None));
}

#[test]
fn the_app_image_runs_as_the_build_uid_whatever_the_stack_says() {
    assert_eq!(
        image_dockerfile("quarry-stack/bookworm:latest", Some("python app.py")).unwrap(),
        "FROM quarry-stack/bookworm:latest\n\
         USER 65000:65000\n\
         WORKDIR /app\n\
         ENTRYPOINT [\"/usr/local/bin/quarry-entrypoint\"]\n\
         CMD [\"/bin/sh\",\"-c\",\"python app.py\"]\n\
         COPY --chown=65000:65000 build /\n"
    );
}

#[test]
fn builtin_detection_ignores_symlinks_out_of_the_tree() {
    let src = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("package.json"), "{}").unwrap();
    std::os::unix::fs::symlink(
        host.path().join("package.json"),
        src.path().join("package.json"),
    )
    .unwrap();
    std::os::unix::fs::symlink(host.path(), src.path().join("public")).unwrap();
    assert!(!super::source::detects("node", src.path()));
    assert!(!super::source::detects("static", src.path()));
    fs::write(src.path().join("requirements.txt"), "").unwrap();
    assert!(super::source::detects("python", src.path()));
}
