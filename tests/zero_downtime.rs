//! Zero downtime: a bounded load through nginx sees no failed request while
//! the app is redeployed five times and rolled back once.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Repo, Server, http_get};

#[test]
fn redeploys_and_a_rollback_under_load_fail_no_request() {
    let server = Server::start();
    let app = common::unique_app("zdt");
    let repo = Repo::fixture("hello");
    server.push_ok(repo.path(), &app);

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let host = format!("{app}.localhost");
    let port = server.http_port;
    // Two clients, each at most ~100 requests a second, each request on a
    // new connection; bounded by the stop flag and a hard 5-minute cap.
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok, failed, failures, host) = (
                stop.clone(),
                ok.clone(),
                failed.clone(),
                failures.clone(),
                host.clone(),
            );
            std::thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(300)
                {
                    let t = Instant::now();
                    match http_get(("127.0.0.1", port), &host, "/") {
                        Ok((200, body))
                            if body.starts_with("hello") || body.starts_with("release") =>
                        {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        other => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            failures.lock().unwrap().push(format!("{other:?}"));
                        }
                    }
                    if let Some(rest) = Duration::from_millis(10).checked_sub(t.elapsed()) {
                        std::thread::sleep(rest);
                    }
                }
            })
        })
        .collect();

    for n in 2..=6 {
        repo.write("www/index.html", &format!("release {n}\n"));
        repo.commit(&format!("v{n}"));
        server.push_ok(repo.path(), &app);
        assert_eq!(server.body(&app), format!("release {n}\n"));
    }
    server.admin(&format!("rollback {app} v3"));
    assert_eq!(server.body(&app), "release 3\n");

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("requests during 5 redeploys and a rollback: {ok} ok, {failed} failed");
    assert!(ok > 200, "the load ran: {ok} requests");
    assert_eq!(
        failed,
        0,
        "failed requests: {:?}",
        &failures.lock().unwrap()[..failed.min(10) as usize]
    );
}

#[test]
fn a_failing_batch_rolls_back_the_batches_already_switched() {
    let server = Server::start();
    let app = common::unique_app("batch");
    let repo = Repo::fixture("batched");
    let log = server.push_ok(repo.path(), &app);
    assert!(
        log.contains("batch 1/3") && log.contains("batch 3/3"),
        "{log}"
    );

    // v2: the second replica will not start.
    repo.write("version", "v2\n");
    repo.write(
        "quarry.yml",
        "deploy: { batch: 1 }\nenv: { FAIL_INDEX: \"2\" }\nnodes:\n  web: { scale: 3 }\n",
    );
    repo.commit("v2 with a bad replica");
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, v2_seen) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let load = {
        let (stop, ok, failed, v2_seen) =
            (stop.clone(), ok.clone(), failed.clone(), v2_seen.clone());
        let (port, host) = (server.http_port, format!("{app}.localhost"));
        std::thread::spawn(move || {
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120) {
                match http_get(("127.0.0.1", port), &host, "/") {
                    Ok((200, body)) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        if body.starts_with("v2") {
                            v2_seen.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let out = server.push(repo.path(), &app);
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let err = common::stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("batch 2/3") && !err.contains("batch 3/3"),
        "the rollout stopped at the failing batch:\n{err}"
    );
    assert!(err.contains("rolling back"), "{err}");
    assert!(
        err.contains("refuses to start"),
        "the failing replica's log is shown:\n{err}"
    );
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "failed batch under load: {ok} ok, {failed} failed, {} answered by v2 meanwhile",
        v2_seen.load(Ordering::Relaxed)
    );
    assert_eq!(failed, 0);
    // v1 serves from all three replicas again; nothing of v2 is left.
    for _ in 0..30 {
        assert!(server.body(&app).starts_with("v1 "));
    }
    let containers = server.containers(Some(&app));
    assert_eq!(containers.len(), 3, "{containers:?}");
    assert!(containers.iter().all(|c| c.2 == "1"), "{containers:?}");
}
