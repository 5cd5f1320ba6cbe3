//! kill -9 of the daemon in the middle of deploys: after a restart one
//! release serves, nothing stray is left, and the next push works.

mod common;

use std::path::Path;

use common::{Repo, Server, wait_line};

fn temp_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if name.starts_with(".tmp-") {
            found.push(path.display().to_string());
        } else if path.is_dir() && name != "repo.git" && name != "src" {
            found.extend(temp_files(&path));
        }
    }
    found
}

#[test]
fn a_daemon_killed_mid_deploy_recovers_with_one_release_serving() {
    let mut server = Server::start();
    let app = common::unique_app("crash");
    let repo = Repo::fixture("slow");
    repo.write("nonce", &app);
    repo.commit("v1");
    server.push_ok(repo.path(), &app);

    // Kill once while building, once while the new container boots.
    for (round, moment) in ["-----> Building", "-----> Starting web"]
        .into_iter()
        .enumerate()
    {
        repo.write("nonce", &format!("{app}-{round}"));
        repo.write("www/index.html", &format!("attempt {round}\n"));
        repo.commit(&format!("attempt {round}"));
        let mut push = server.push_spawn(&server.admin, repo.path(), &app);
        let (_, rest) = wait_line(&mut push, moment);
        server.kill9();
        let status = push.wait().unwrap();
        let rest = rest.join().unwrap();
        assert!(
            !status.success(),
            "a push whose daemon died must not be accepted:\n{rest}"
        );

        server.restart();
        // The old release serves; the interrupted one is on the books as failed.
        assert_eq!(server.body(&app), "slow v1\n", "round {round}");
        let releases: serde_json::Value =
            serde_json::from_str(&server.admin(&format!("releases {app} --json"))).unwrap();
        let interrupted = &releases[0];
        assert_eq!(interrupted["status"], "failed", "{releases}");
        assert!(
            interrupted["reason"]
                .as_str()
                .unwrap()
                .contains("interrupted"),
            "{releases}"
        );
        // Only the live release's container is left; no temp files.
        let containers = server.containers(Some(&app));
        assert_eq!(containers.len(), 1, "round {round}: {containers:?}");
        assert_eq!(containers[0].0, format!("{app}.web.1"));
        assert_eq!(containers[0].2, "1");
        assert_eq!(temp_files(&server.data), Vec::<String>::new());
        // The branch did not move.
        let head = server.clone_app(&app);
        assert_eq!(
            std::fs::read_to_string(head.path().join("www/index.html")).unwrap(),
            "slow v1\n"
        );
    }

    // And the next push goes through.
    repo.write("nonce", &format!("{app}-final"));
    repo.write("www/index.html", "after the crashes\n");
    repo.commit("final");
    server.push_ok(repo.path(), &app);
    assert_eq!(server.body(&app), "after the crashes\n");
    assert_eq!(server.containers(Some(&app)).len(), 1);
}

/// Daemon restarts under a bounded load: two kill -9s and a clean stop
/// (SIGTERM with `QUARRY_KEEP_NGINX=1`, as a service restart does) each
/// followed by a start. The running nginx is adopted every time, so no
/// request fails, and the next push goes live.
#[test]
fn daemon_restarts_under_load_keep_nginx_and_fail_no_request() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    let mut server = Server::start_with_env(&[("QUARRY_KEEP_NGINX", "1")]);
    let app = common::unique_app("adopt");
    let repo = Repo::fixture("hello");
    server.push_ok(repo.path(), &app);
    let pid_file = server.data.join("nginx/nginx.pid");
    let nginx_pid = || std::fs::read_to_string(&pid_file).unwrap();
    let first = nginx_pid();

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (host, port) = (format!("{app}.localhost"), server.http_port);
    // Two clients, each at most ~100 requests a second and 3,000 in all.
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok, failures, host) =
                (stop.clone(), ok.clone(), failures.clone(), host.clone());
            std::thread::spawn(move || {
                for _ in 0..3000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let t = Instant::now();
                    match common::http_get(("127.0.0.1", port), &host, "/") {
                        Ok((200, _)) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        other => failures.lock().unwrap().push(format!("{other:?}")),
                    }
                    if let Some(rest) = Duration::from_millis(10).checked_sub(t.elapsed()) {
                        std::thread::sleep(rest);
                    }
                }
            })
        })
        .collect();

    for round in 0..3 {
        let before = ok.load(Ordering::Relaxed);
        common::wait_for(
            "requests before the restart",
            Duration::from_secs(30),
            || (ok.load(Ordering::Relaxed) > before + 20).then_some(()),
        );
        if round < 2 {
            server.kill9();
        } else {
            server.stop();
        }
        server.restart();
        assert_eq!(
            nginx_pid(),
            first,
            "round {round}: the running nginx was adopted"
        );
        assert!(
            server.log().contains("adopted the running nginx"),
            "round {round}: {}",
            server.log()
        );
    }
    let before = ok.load(Ordering::Relaxed);
    common::wait_for(
        "requests after the restarts",
        Duration::from_secs(30),
        || (ok.load(Ordering::Relaxed) > before + 20).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    let ok = ok.load(Ordering::Relaxed);
    eprintln!(
        "requests across 3 daemon restarts: {ok} ok, {} failed",
        failures.len()
    );
    assert!(ok > 100, "the load ran: {ok}");
    assert!(
        failures.is_empty(),
        "failed requests: {:?}",
        &failures[..failures.len().min(10)]
    );

    repo.write("www/index.html", "after the restarts\n");
    repo.commit("v2");
    server.push_ok(repo.path(), &app);
    assert_eq!(server.body(&app), "after the restarts\n");
}
