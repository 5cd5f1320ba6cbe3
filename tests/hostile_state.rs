//! State that a crash or a careless operator can tear: kill -9 exactly at
//! the release switch (through the daemon's `QUARRY_TEST_PAUSE` points),
//! release records edited while the daemon is down, and Docker engines
//! offered without TLS. After each, the app keeps serving, exactly one
//! release is live and the next push works.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Repo, Server, stderr, wait_for};

/// What a client polling the app every 50 ms saw: the longest run of
/// refused connections (nginx itself restarting with the daemon), every
/// answer that was not a 200 (nginx up, but routing to nothing), and the
/// bodies in order.
struct Seen {
    refused: Duration,
    errors: Vec<u16>,
    bodies: Vec<String>,
}

struct Watch {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Seen>,
}

impl Watch {
    /// Poll `<app>.localhost` on `port` until stopped.
    fn start(port: u16, app: &str) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let host = format!("{app}.localhost");
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut seen = Seen {
                refused: Duration::ZERO,
                errors: Vec::new(),
                bodies: Vec::new(),
            };
            let mut down_since: Option<Instant> = None;
            while !flag.load(Ordering::SeqCst) {
                let answer = common::http_get(("127.0.0.1", port), &host, "/");
                if answer.is_ok()
                    && let Some(t) = down_since.take()
                {
                    seen.refused = seen.refused.max(t.elapsed());
                }
                match answer {
                    Ok((200, body)) => {
                        if seen.bodies.last() != Some(&body) {
                            seen.bodies.push(body);
                        }
                    }
                    Ok((status, _)) => seen.errors.push(status),
                    Err(_) => {
                        down_since.get_or_insert_with(Instant::now);
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Some(t) = down_since {
                seen.refused = seen.refused.max(t.elapsed());
            }
            seen
        });
        Watch { stop, handle }
    }

    fn end(self) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap()
    }
}

/// `releases --json` as (number, status), newest first.
fn releases(server: &Server, app: &str) -> Vec<(u64, String)> {
    let v: serde_json::Value =
        serde_json::from_str(&server.admin(&format!("releases {app} --json"))).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["number"].as_u64().unwrap(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn live(server: &Server, app: &str) -> Vec<u64> {
    releases(server, app)
        .into_iter()
        .filter(|(_, s)| s == "live")
        .map(|(n, _)| n)
        .collect()
}

/// The bodies of v1, v2 and v3 of `app`: its own, so that no build shares
/// cached layers with another test's (whose pruning could remove them).
fn bodies(app: &str) -> [String; 3] {
    ["one", "two", "three"].map(|n| format!("{n} {app}\n"))
}

/// Push v2 with the daemon set to stop at `point`, kill -9 it there, start
/// it again; returns the server (serving again), the app and the repo.
fn killed_at(point: &str) -> (Server, String, Repo) {
    let mut server = Server::start_with_env(&[("QUARRY_TEST_PAUSE", &format!("{point}@2"))]);
    let app = common::unique_app("switch");
    let [body1, body2, _] = bodies(&app);
    let (body1, body2) = (body1.as_str(), body2.as_str());
    let repo = Repo::fixture("hello");
    repo.write("www/index.html", body1);
    repo.commit("v1");
    server.push_ok(repo.path(), &app);
    assert_eq!(server.body(&app), body1);

    repo.write("www/index.html", body2);
    repo.commit("v2");
    let mut push = server.push_spawn(&server.admin, repo.path(), &app);
    let marker = server.data.join(format!("paused.{point}"));
    wait_for(
        &format!("the deploy to reach {point}"),
        Duration::from_secs(120),
        || marker.exists().then_some(()),
    );
    let watch = Watch::start(server.http_port, &app);
    server.kill9();
    let status = push.wait().unwrap();
    assert!(
        !status.success(),
        "a push whose daemon died must not be accepted"
    );
    std::fs::remove_file(&marker).unwrap();
    server.restart();
    // Serving again right after start-up, and still a moment later.
    let _ = server.body(&app);
    std::thread::sleep(Duration::from_millis(500));
    let seen = watch.end();
    eprintln!(
        "{point}: refused for {:?} at most, errors {:?}, bodies {:?}",
        seen.refused, seen.errors, seen.bodies
    );
    assert!(
        seen.refused < Duration::from_secs(5),
        "{point}: nginx refused connections for {:?}",
        seen.refused
    );
    // Whenever nginx answered, a container of one release or the other did.
    assert_eq!(seen.errors, Vec::<u16>::new(), "{point}: {:?}", seen.bodies);
    for b in &seen.bodies {
        assert!(b == body1 || b == body2, "{point}: unexpected body {b:?}");
    }
    (server, app, repo)
}

/// After the switch: the release left live serves, alone, and a push works.
fn then_one_live_and_the_next_push_works(server: &Server, app: &str, repo: &Repo, live_one: u64) {
    let [one, two, three] = bodies(app);
    let body = if live_one == 1 { one } else { two };
    assert_eq!(
        live(server, app),
        vec![live_one],
        "{:?}",
        releases(server, app)
    );
    assert_eq!(server.body(app), body);
    let containers = server.containers(Some(app));
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(containers[0].0, format!("{app}.web.1"));
    assert_eq!(containers[0].2, live_one.to_string());

    repo.write("www/index.html", &three);
    repo.commit("v3");
    server.push_ok(repo.path(), app);
    assert_eq!(server.body(app), three);
    assert_eq!(live(server, app), vec![3]);
}

#[test]
fn a_kill_after_the_route_switch_but_before_the_release_is_live_goes_back_to_the_old_release() {
    // The new container serves, the old one still runs, nothing is written.
    let (server, app, repo) = killed_at("routed");
    let all = releases(&server, &app);
    assert_eq!(all[0], (2, "failed".to_string()), "{all:?}");
    then_one_live_and_the_next_push_works(&server, &app, &repo, 1);
}

#[test]
fn a_kill_before_the_release_writes_goes_back_to_the_old_release_without_a_gap() {
    // The old container is gone and the new one serves: the old release
    // boots beside it before it is removed.
    let (server, app, repo) = killed_at("finish-before");
    let all = releases(&server, &app);
    assert_eq!(all[0], (2, "failed".to_string()), "{all:?}");
    then_one_live_and_the_next_push_works(&server, &app, &repo, 1);
}

#[test]
fn a_kill_between_the_release_writes_keeps_the_new_release_live_alone() {
    let (server, app, repo) = killed_at("finish-between");
    let all = releases(&server, &app);
    assert_eq!(all[1], (1, "superseded".to_string()), "{all:?}");
    then_one_live_and_the_next_push_works(&server, &app, &repo, 2);
    let events = server.admin(&format!("events {app}"));
    assert!(events.contains("v1 marked superseded at start"), "{events}");
}

#[test]
fn a_kill_after_the_release_writes_keeps_the_new_release() {
    let (server, app, repo) = killed_at("finish-after");
    then_one_live_and_the_next_push_works(&server, &app, &repo, 2);
}

/// Set release `n`'s status in its file (the daemon is stopped).
fn set_status(server: &Server, app: &str, n: u32, status: &str) {
    let path = server.data.join(format!("stacks/{app}/releases/v{n}.json"));
    let mut r: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    r["status"] = status.into();
    std::fs::write(&path, serde_json::to_vec(&r).unwrap()).unwrap();
}

fn container_id(name: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.Id}}", name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    common::stdout(&out).trim().to_string()
}

#[test]
fn start_up_with_no_live_release_serves_the_newest_that_ran_and_keeps_its_containers() {
    let mut server = Server::start();
    let app = common::unique_app("torn");
    let repo = Repo::fixture("hello");
    let [one, two, three] = bodies(&app);
    for (n, body) in [(1, &one), (2, &two)] {
        repo.write("www/index.html", body);
        repo.commit(&format!("v{n}"));
        server.push_ok(repo.path(), &app);
    }
    let before = container_id(&format!("{app}.web.1"));

    // No release live at all (what the old write order left after a kill).
    server.stop();
    set_status(&server, &app, 2, "superseded");
    server.restart();
    assert_eq!(server.body(&app), two);
    assert_eq!(live(&server, &app), vec![2]);
    assert_eq!(
        container_id(&format!("{app}.web.1")),
        before,
        "the container was replaced"
    );
    let events = server.admin(&format!("events {app}"));
    assert!(events.contains("v2 marked live at start"), "{events}");

    // Two live: the newest wins, the same container keeps serving.
    server.stop();
    set_status(&server, &app, 1, "live");
    server.restart();
    assert_eq!(server.body(&app), two);
    assert_eq!(live(&server, &app), vec![2]);
    assert_eq!(container_id(&format!("{app}.web.1")), before);

    repo.write("www/index.html", &three);
    repo.commit("v3");
    server.push_ok(repo.path(), &app);
    assert_eq!(server.body(&app), three);
    assert_eq!(live(&server, &app), vec![3]);
}

#[test]
fn a_plain_tcp_engine_is_refused_unless_insecure_is_given() {
    let server = Server::start();
    let add = "servers:add plain --docker tcp://127.0.0.1:1 --address 127.0.0.1 --memory 512";
    let out = server.ssh(&server.admin, add);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("tcp://127.0.0.1:1 has no TLS")
            && err.contains("--tls-ca, --tls-cert and --tls-key")
            && err.contains("--insecure"),
        "{err}"
    );
    // With --insecure the endpoint is tried: nothing listens there.
    let out = server.ssh(&server.admin, &format!("{add} --insecure"));
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("the Docker engine at tcp://127.0.0.1:1 does not answer")
            && !err.contains("has no TLS"),
        "{err}"
    );
    let servers = server.admin("servers");
    assert!(!servers.contains("plain"), "{servers}");
    // --insecure is only for plain tcp.
    let out = server.ssh(
        &server.admin,
        "servers:add sock --docker unix:///nonexistent.sock --address 127.0.0.1 --memory 512 --insecure",
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--insecure is for a tcp:// engine without TLS"),
        "{}",
        stderr(&out)
    );
}
