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
