//! `quarry install` / `uninstall` into a scratch root: the binary, the data
//! dir and the unit with their modes, `systemd-analyze verify` on the unit
//! written, an upgrade in place, `--check`'s report, and removal.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use common::{stderr, stdout};

fn quarry(args: &[&str], root: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args(args)
        .arg("--root")
        .arg(root)
        .output()
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// The written unit through `systemd-analyze verify`, its ExecStart read
/// as the scratch root's binary (the unit names /usr/local/bin/quarry).
fn verify(unit: &Path, root: &Path) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(unit).unwrap().replace(
        "ExecStart=/usr/local/bin/quarry ",
        &format!("ExecStart={}/usr/local/bin/quarry ", root.display()),
    );
    let copy = dir.path().join("quarry.service");
    std::fs::write(&copy, text).unwrap();
    Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (apt-get install systemd)")
}

#[test]
fn install_writes_the_unit_dirs_and_modes_and_uninstall_removes_them() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let out = quarry(&["install"], root);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("installed "), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("keys add me --data /var/lib/quarry"),
        "{}",
        stdout(&out)
    );

    let bin = root.join("usr/local/bin/quarry");
    let data = root.join("var/lib/quarry");
    let unit = root.join("etc/systemd/system/quarry.service");
    assert_eq!(mode(&bin), 0o755);
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_quarry")).unwrap(),
        "the running binary was copied"
    );
    assert!(data.is_dir());
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&unit), 0o644);
    let text = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "ExecStart=/usr/local/bin/quarry serve --data /var/lib/quarry ",
        "KillMode=process",
        "Restart=always",
        "NoNewPrivileges=yes",
        "ProtectSystem=full",
        "PrivateTmp=yes",
        "LimitNOFILE=1048576",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
    let v = verify(&unit, root);
    assert!(
        v.status.success() && v.stdout.is_empty() && v.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        stdout(&v),
        stderr(&v)
    );

    // Upgrade in place: a new file (new inode) replaces the old one.
    std::fs::write(&bin, b"old binary").unwrap();
    let inode = std::fs::metadata(&bin).unwrap().ino();
    std::fs::write(data.join("keep"), b"data").unwrap();
    let out = quarry(&["install"], root);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("upgraded "), "{}", stdout(&out));
    assert_ne!(std::fs::metadata(&bin).unwrap().ino(), inode);
    assert_ne!(std::fs::read(&bin).unwrap(), b"old binary");
    assert!(data.join("keep").exists(), "an upgrade keeps the data");

    let out = quarry(&["uninstall"], root);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!bin.exists() && !unit.exists());
    assert!(
        data.join("keep").exists(),
        "uninstall without --purge keeps the data"
    );
    let out = quarry(&["uninstall", "--purge"], root);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!data.exists(), "--purge removes the data dir");
}

#[test]
fn check_verifies_the_unit_and_names_a_port_in_use() {
    let root = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let out = quarry(
        &[
            "install",
            "--check",
            "--http",
            &format!("127.0.0.1:{port}"),
            "--ssh",
            "127.0.0.1:0",
            "--https",
            "127.0.0.1:0",
        ],
        root.path(),
    );
    let text = stdout(&out);
    assert!(
        text.contains("ok   systemd-analyze verify quarry.service"),
        "{text}"
    );
    assert!(
        text.contains(&format!("FAIL port {port} (--http) is in use")),
        "{text}"
    );
    assert!(text.contains("ok   port 0 (--ssh) is free"), "{text}");
    assert!(!out.status.success(), "a problem fails the check");
    assert!(
        stderr(&out).contains("problem(s) found"),
        "{}",
        stderr(&out)
    );
    // --check writes nothing.
    assert!(std::fs::read_dir(root.path()).unwrap().next().is_none());

    // An upgrade's check: the port held by the installed, running Quarry
    // (its serve.json names it and its pid lives) is not a problem.
    let data = root.path().join("var/lib/quarry");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("serve.json"),
        format!(
            r#"{{"pid": {}, "ssh": "127.0.0.1:1", "http": "127.0.0.1:{port}", "https": null}}"#,
            std::process::id()
        ),
    )
    .unwrap();
    let out = quarry(
        &["install", "--check", "--http", &format!("127.0.0.1:{port}")],
        root.path(),
    );
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "ok   port {port} (--http) is held by the running Quarry (pid {})",
            std::process::id()
        )),
        "{text}"
    );
}
