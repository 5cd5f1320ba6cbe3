//! `run` and `enter` end to end: the real OpenSSH client (with and without a
//! PTY) against the real server and Docker engine.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Repo, Server, new_key, stderr, stdout, wait_for};

/// A live hello app with a config var.
fn live_app(server: &Server, prefix: &str) -> String {
    let app = common::unique_app(prefix);
    let repo = Repo::fixture("hello");
    server.push_ok(repo.path(), &app);
    server.admin(&format!("config:set {app} GREETING=hi-there"));
    app
}

/// One-off containers of `app` on the engine, running or not.
fn oneoffs(app: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}", "--filter"])
        .arg(format!("label=quarry.app={app}"))
        .args(["--filter", "label=quarry.oneoff=run"])
        .output()
        .unwrap();
    stdout(&out).lines().map(str::to_owned).collect()
}

#[test]
fn run_streams_output_with_the_apps_config_and_returns_the_exit_code() {
    let server = Server::start();
    let app = live_app(&server, "run");

    let out = server.ssh(
        &server.admin,
        &format!("run {app} -- sh -c 'echo out-$GREETING; echo to-stderr >&2; exit 3'"),
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stdout(&out), "out-hi-there\n");
    assert!(stderr(&out).contains("to-stderr"), "{}", stderr(&out));

    let out = server.ssh(
        &server.admin,
        &format!("run {app} --env EXTRA=1 -- sh -c 'echo $EXTRA'"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "1\n");

    // One quoted word with spaces runs in a shell, as on Heroku.
    let out = server.ssh(&server.admin, &format!("run {app} -- 'echo a && echo b'"));
    assert_eq!(stdout(&out), "a\nb\n", "{}", stderr(&out));

    // The container is gone after each run, and the run is in events.
    wait_for("one-offs removed", Duration::from_secs(10), || {
        oneoffs(&app).is_empty().then_some(())
    });
    let events = server.admin(&format!("events {app}"));
    assert!(events.contains("run"), "{events}");

    // A timeout stops it.
    let out = server.ssh(&server.admin, &format!("run {app} --timeout 1 -- sleep 30"));
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stopped after 1s"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn run_cat_round_trips_ten_megabytes_exactly() {
    let server = Server::start();
    let app = live_app(&server, "cat");
    let data: Vec<u8> = (0..10 * 1024 * 1024)
        .map(|_| rand::random::<u8>())
        .collect();
    let mut child = server
        .ssh_base(&server.admin)
        .arg("git@127.0.0.1")
        .arg(format!("run {app} -- cat"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = data.clone();
    // Write while reading, or both pipes fill up.
    let writer = std::thread::spawn(move || {
        stdin.write_all(&input).unwrap();
    });
    let mut got = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "run cat exited {status}");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the bytes came back changed");
}

/// Drives `ssh -tt … COMMAND` on a real pseudo-terminal of `rows`×`cols`:
/// the script (python's pty support) prints what it saw, one marker a line.
fn pty_session(server: &Server, command: &str, script: &str) -> std::process::Output {
    let ssh: Vec<String> = {
        let c = server.ssh_base(&server.admin);
        std::iter::once(c.get_program().to_string_lossy().into_owned())
            .chain(c.get_args().map(|a| a.to_string_lossy().into_owned()))
            .chain([
                "-tt".to_owned(),
                "git@127.0.0.1".to_owned(),
                command.to_owned(),
            ])
            .collect()
    };
    let driver = format!(
        r#"
import fcntl, json, os, select, struct, subprocess, sys, termios, time
argv = json.loads(sys.argv[1])
master, slave = os.openpty()
def size(rows, cols):
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
size(33, 111)
def ctty():
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True, preexec_fn=ctty)
os.close(slave)
seen = b""
def expect(needle, limit=20):
    global seen
    deadline = time.time() + limit
    while needle.encode() not in seen:
        left = deadline - time.time()
        if left <= 0:
            print("TIMEOUT waiting for", repr(needle), "saw", repr(seen[-400:]))
            sys.exit(1)
        r, _, _ = select.select([master], [], [], left)
        if r:
            try:
                seen += os.read(master, 65536)
            except OSError:
                print("EOF waiting for", repr(needle), "saw", repr(seen[-400:]))
                sys.exit(1)
    seen = seen[seen.index(needle.encode()) + len(needle):]
def send(text):
    os.write(master, text.encode())
def resize(rows, cols):
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    os.kill(p.pid, 28)
{script}
deadline = time.time() + 20
while p.poll() is None and time.time() < deadline:
    try:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            os.read(master, 65536)
    except OSError:
        pass
print("EXIT", p.wait(timeout=5))
"#
    );
    Command::new("python3")
        .arg("-c")
        .arg(driver)
        .arg(serde_json::to_string(&ssh).unwrap())
        .output()
        .unwrap()
}

#[test]
fn run_under_a_pty_gets_a_real_terminal_resizes_and_ctrl_c() {
    let server = Server::start();
    let app = live_app(&server, "tty");
    let out = pty_session(
        &server,
        &format!("run {app} -- sh"),
        r#"
send("stty size; echo TERM=$TERM; tty\n")
expect("33 111")
print("SIZE-OK")
expect("TERM=")
expect("/dev/pts/")
print("TTY-OK")
resize(40, 120)
time.sleep(0.5)
send("stty size\n")
expect("40 120")
print("RESIZE-OK")
send("sleep 30; echo not-interrupted\n")
time.sleep(1)
start = time.time()
send("\x03")
send("echo after-$((40+2))\n")
expect("after-42", limit=10)
print("CTRL-C-OK", round(time.time() - start, 1))
send("exit 7\n")
"#,
    );
    let text = stdout(&out);
    for marker in ["SIZE-OK", "TTY-OK", "RESIZE-OK", "CTRL-C-OK", "EXIT 7"] {
        assert!(
            text.contains(marker),
            "{marker} missing:\n{text}\n{}",
            stderr(&out)
        );
    }
    assert!(!text.contains("not-interrupted"), "{text}");
    wait_for("the tty one-off removed", Duration::from_secs(10), || {
        oneoffs(&app).is_empty().then_some(())
    });
}

#[test]
fn closing_the_client_removes_the_one_off_container() {
    let server = Server::start();
    let app = live_app(&server, "gone");
    let mut child = server
        .ssh_base(&server.admin)
        .arg("git@127.0.0.1")
        .arg(format!("run {app} -- sleep 300"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the one-off to run", Duration::from_secs(20), || {
        (!oneoffs(&app).is_empty()).then_some(())
    });
    let ps = server.admin(&format!("ps {app}"));
    assert!(ps.contains("one-off") && ps.contains("sleep 300"), "{ps}");
    // The client goes away (its own process, ended by its PID).
    child.kill().unwrap();
    let _ = child.wait();
    wait_for("the one-off removed", Duration::from_secs(20), || {
        oneoffs(&app).is_empty().then_some(())
    });
}

#[test]
fn enter_reaches_a_running_container_and_deployers_need_a_grant() {
    let server = Server::start();
    let app = live_app(&server, "enter");
    let out = server.ssh(
        &server.admin,
        &format!("enter {app} web.1 -- cat /www/index.html"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello from v1\n");
    let out = server.ssh(
        &server.admin,
        &format!("enter {app} web.1 -- sh -c 'exit 5'"),
    );
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let out = server.ssh(&server.admin, &format!("enter {app} web.9"));
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("has no running container web.9"),
        "{}",
        stderr(&out)
    );

    let pty = pty_session(
        &server,
        &format!("enter {app} web.1"),
        r#"
send("stty size; echo in-$((6*7))\n")
expect("33 111")
expect("in-42")
print("ENTER-OK")
send("exit\n")
"#,
    );
    assert!(
        stdout(&pty).contains("ENTER-OK"),
        "{}{}",
        stdout(&pty),
        stderr(&pty)
    );

    let outsider = new_key(server.dir.path(), "outsider", "ed25519");
    server.add_key(&outsider, "--role deployer");
    for command in [
        format!("run {app} -- true"),
        format!("enter {app} web.1 -- true"),
    ] {
        let out = server.ssh(&outsider, &command);
        assert_eq!(out.status.code(), Some(4), "{command}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("permission denied"),
            "{}",
            stderr(&out)
        );
    }
    let events = server.admin(&format!("events {app}"));
    assert!(
        events.contains("enter") && events.contains("cat /www/index.html"),
        "{events}"
    );
}
