use std::os::unix::fs::symlink;
use std::time::{Duration, SystemTime};

use super::*;

fn mkfifo(path: &Path) {
    rustix::fs::mknodat(CWD, path, FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
}

#[test]
fn read_file_refuses_symlinks_fifos_and_big_files() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "host").unwrap();
    std::fs::create_dir(dir.path().join("out")).unwrap();
    std::fs::write(dir.path().join("out/ok.yml"), "a: 1").unwrap();
    symlink(
        outside.path().join("secret"),
        dir.path().join("out/link.yml"),
    )
    .unwrap();
    symlink(outside.path(), dir.path().join("hop")).unwrap();
    mkfifo(&dir.path().join("out/fifo.yml"));
    std::fs::write(dir.path().join("out/big"), vec![b'x'; 100]).unwrap();

    let read = |rel: &str| read_file(dir.path(), rel, 10).map_err(|e| e.to_string());
    assert_eq!(read("out/ok.yml").unwrap().unwrap(), b"a: 1");
    assert_eq!(read("out/none.yml").unwrap(), None);
    assert_eq!(
        read("out/link.yml").unwrap_err(),
        "out/link.yml is a symlink, which is not followed"
    );
    assert_eq!(
        read("hop/secret").unwrap_err(),
        "hop is a symlink, which is not followed"
    );
    assert_eq!(
        read("out/fifo.yml").unwrap_err(),
        "out/fifo.yml is not a regular file (a FIFO)"
    );
    assert_eq!(
        read("out/big").unwrap_err(),
        "out/big is larger than 10 bytes"
    );
    assert_eq!(
        read("../etc/passwd").unwrap_err(),
        "../etc/passwd leaves its folder (absolute or ..)"
    );
}

#[test]
fn remove_older_never_walks_through_a_symlink() {
    let cache = tempfile::tempdir().unwrap();
    let canary = tempfile::tempdir().unwrap();
    std::fs::write(canary.path().join("keep"), "canary").unwrap();
    std::fs::create_dir(cache.path().join("npm")).unwrap();
    std::fs::write(cache.path().join("npm/old"), "x").unwrap();
    symlink(canary.path(), cache.path().join("pip")).unwrap();
    symlink(canary.path(), cache.path().join("npm/inner")).unwrap();
    let later = SystemTime::now() + Duration::from_secs(3600);

    assert_eq!(remove_older(&cache.path().join("pip"), later), 0);
    remove_older(&cache.path().join("npm"), later);
    assert!(canary.path().join("keep").exists());
    assert!(!cache.path().join("npm/old").exists());
    // The link itself was old enough to go; its target stays.
    assert!(!cache.path().join("npm/inner").exists());
}

#[test]
fn tar_dir_keeps_links_as_links_and_refuses_a_linked_folder() {
    let src = tempfile::tempdir().unwrap();
    let canary = tempfile::tempdir().unwrap();
    std::fs::write(canary.path().join("secret"), "host").unwrap();
    std::fs::create_dir_all(src.path().join("svc/sub")).unwrap();
    std::fs::write(src.path().join("svc/Dockerfile"), "FROM scratch\n").unwrap();
    symlink(canary.path(), src.path().join("svc/sub/out")).unwrap();
    symlink(canary.path(), src.path().join("linked")).unwrap();

    let mut tar = Vec::new();
    tar_dir(src.path(), "svc", &mut tar, 1 << 20).unwrap();
    let mut names = Vec::new();
    for e in tar::Archive::new(&tar[..]).entries().unwrap() {
        let e = e.unwrap();
        names.push(format!(
            "{} {:?}",
            e.path().unwrap().display(),
            e.header().entry_type()
        ));
    }
    assert_eq!(
        names,
        ["Dockerfile Regular", "sub/ Directory", "sub/out Symlink"]
    );
    let e = tar_dir(src.path(), "linked", &mut Vec::new(), 1 << 20).unwrap_err();
    assert_eq!(e.to_string(), "linked is a symlink, which is not followed");
    let e = tar_dir(src.path(), "svc", &mut Vec::new(), 4).unwrap_err();
    assert_eq!(e.to_string(), "the folder is larger than 4 bytes");
}

#[test]
fn append_dir_under_a_prefix_names_every_entry_under_it() {
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("node_modules/x")).unwrap();
    std::fs::write(src.path().join("server.js"), "js").unwrap();
    std::fs::write(src.path().join("node_modules/x/i.js"), "i").unwrap();
    let mut b = tar::Builder::new(Vec::new());
    append_dir(&mut b, src.path(), "", "build/app", 1 << 20).unwrap();
    let tar = b.into_inner().unwrap();
    let mut names = Vec::new();
    for e in tar::Archive::new(&tar[..]).entries().unwrap() {
        names.push(e.unwrap().path().unwrap().display().to_string());
    }
    assert_eq!(
        names,
        [
            "build/app/",
            "build/app/node_modules/",
            "build/app/node_modules/x/",
            "build/app/node_modules/x/i.js",
            "build/app/server.js"
        ]
    );
}
