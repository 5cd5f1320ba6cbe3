//! The daemon's log under systemd: a real `systemd-journald` (no systemd
//! booted) in a private mount namespace of its own — a tmpfs on
//! `/run/systemd` for its sockets, the test's directory bound on `/run/log`
//! for its files — and `quarry serve` started in the same namespace with
//! `JOURNAL_STREAM` naming its stderr, as systemd sets it for
//! `StandardError=journal`. A push's events are read back with
//! `journalctl --directory … -o json APP=<app> RELEASE=1`.
//! Needs root (mount namespaces) and `/lib/systemd/systemd-journald`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Repo, Server, wait_for};

const JOURNALD: &str = "/lib/systemd/systemd-journald";

/// Mounts, starts journald, waits for its socket, then execs the daemon
/// with `JOURNAL_STREAM` set to its stderr's `<device>:<inode>`.
const WRAP: &str = r#"set -e
dir="$1"; shift
mkdir -p /run/log /run/systemd
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
mkdir -p /run/systemd/journal /run/systemd/journald.conf.d
printf '[Journal]\nStorage=volatile\nReadKMsg=no\nForwardToSyslog=no\nForwardToWall=no\nForwardToConsole=no\nRateLimitBurst=0\n' \
  > /run/systemd/journald.conf.d/test.conf
mkdir -p "$dir/log"
mount --bind "$dir/log" /run/log
/lib/systemd/systemd-journald >"$dir/journald.out" 2>&1 &
echo $! > "$dir/journald.pid"
i=0
while [ ! -S /run/systemd/journal/socket ]; do
  i=$((i+1)); [ $i -lt 400 ] || { echo "journald did not listen" >&2; exit 1; }
  sleep 0.05
done
JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2)
export JOURNAL_STREAM
exec "$@"
"#;

/// The journald a test started, stopped by its PID.
struct Journald(PathBuf);

impl Drop for Journald {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.0.join("journald.pid"))
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

/// The entries matching `matches`, as JSON objects.
fn entries(dir: &Path, matches: &[String]) -> Vec<serde_json::Value> {
    let out = Command::new("journalctl")
        .arg("--directory")
        .arg(dir.join("log/journal"))
        .args(["-o", "json", "--no-pager"])
        .args(matches)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn field<'a>(e: &'a serde_json::Value, name: &str) -> &'a str {
    e[name].as_str().unwrap_or_default()
}

#[test]
fn a_push_logs_to_journald_with_app_and_release_fields() {
    assert!(
        Path::new(JOURNALD).exists(),
        "{JOURNALD} (systemd) is needed"
    );
    let jdir = tempfile::tempdir().unwrap();
    let script = jdir.path().join("wrap.sh");
    std::fs::write(&script, WRAP).unwrap();
    let _journald = Journald(jdir.path().to_path_buf());
    let (script, dir) = (script.to_str().unwrap(), jdir.path().to_str().unwrap());
    let server = Server::start_wrapped(
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            script,
            dir,
        ],
        &[],
    );
    let app = common::unique_app("journal");
    let repo = Repo::fixture("hello");
    server.push_ok(repo.path(), &app);

    let matches = [format!("APP={app}"), "RELEASE=1".to_string()];
    let found = wait_for(
        "the push's events in the journal",
        Duration::from_secs(30),
        || {
            let e = entries(jdir.path(), &matches);
            e.iter()
                .any(|e| field(e, "MESSAGE") == "release live")
                .then_some(e)
        },
    );
    let messages: Vec<&str> = found.iter().map(|e| field(e, "MESSAGE")).collect();
    assert!(messages.contains(&"deploy started"), "{messages:?}");
    for e in &found {
        assert_eq!(field(e, "SYSLOG_IDENTIFIER"), "quarry", "{e}");
        assert_eq!(field(e, "_TRANSPORT"), "journal", "native protocol: {e}");
        // Named as in the code: no `F_` prefix.
        assert!(e.get("F_APP").is_none(), "{e}");
    }
    let started = found
        .iter()
        .find(|e| field(e, "MESSAGE") == "deploy started")
        .unwrap();
    assert_eq!(field(started, "BY"), "admin", "{started}");
    // Under journald nothing is written to stderr.
    assert!(
        !server.log().contains("release live"),
        "stderr too: {}",
        server.log()
    );
}

#[test]
fn without_journal_stream_the_log_stays_on_stderr() {
    let mut server = Server::start_with_env(&[("JOURNAL_STREAM", "1:1")]);
    let app = common::unique_app("nojournal");
    let repo = Repo::fixture("hello");
    server.push_ok(repo.path(), &app);
    server.stop();
    let log = strip_ansi(&server.log());
    let line = log
        .lines()
        .find(|l| l.contains("release live"))
        .unwrap_or_else(|| panic!("no \"release live\" line on stderr:\n{log}"));
    assert!(
        line.contains(&format!("deploy{{app=\"{app}\" release=1}}")),
        "{line}"
    );
}

/// The text without its colour escapes (`ESC [ … m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
