//! The router at scale, on the real nginx through Quarry's own [`Router`]:
//! a route change with 1,000 and 10,000 routed apps (write + apply + the new
//! host answers), in the dynamic-table mode and in the reload mode; nginx's
//! memory with 10,000 apps; a redeploy of one app among 10,000; and a bounded
//! load across 100 apps during 20 route changes (failed requests counted).
//!
//! The routed apps all point at tiny upstreams served by this process on
//! 127.0.0.1. Prints one line per sample for bench/run.sh:
//! `SAMPLE <key> <value>`. Run as `<bench binary> --bench` (cargo's way).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quarry::route::{NodeRoute, Router, dynamic, render_app};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RUNS: usize = 5;

fn sample(key: &str, value: f64) {
    println!("SAMPLE {key} {value:.3}");
}

/// An upstream answering every request with `body`, keep-alive.
async fn upstream(body: &'static str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
                    body.len()
                );
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if s.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, task)
}

fn route(app: &str, upstreams: &[SocketAddr]) -> Vec<NodeRoute> {
    vec![NodeRoute {
        node: "web".into(),
        domains: vec![quarry::validate::domain(&format!("{app}.localhost")).expect("a domain")],
        upstreams: upstreams.to_vec(),
    }]
}

fn app_name(i: usize) -> String {
    format!("app-{i:05}")
}

/// GET / with `host` on a new connection: (status, body).
fn get(listen: SocketAddr, host: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(listen)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET / HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    Ok((status, body.unwrap_or_default()))
}

async fn answers(listen: SocketAddr, host: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let host2 = host.to_string();
        let got = tokio::task::spawn_blocking(move || get(listen, &host2))
            .await
            .unwrap();
        if let Ok((200, body)) = &got
            && body == want
        {
            return;
        }
        assert!(Instant::now() < deadline, "{host} answered {got:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn free_listen() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A data dir with `apps` routed apps already on disk, in either mode.
fn seed(data: &Path, apps: usize, lua: bool, listen: SocketAddr, to: SocketAddr) {
    let dir = data.join("nginx");
    for sub in ["sites", "table"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for i in 1..=apps {
        let app = app_name(i);
        let r = route(&app, &[to]);
        if lua {
            let text = dynamic::render_table(&app, &r);
            std::fs::write(dir.join("table").join(format!("{app}.routes")), text).unwrap();
        } else {
            let text = render_app(&app, listen, &r);
            std::fs::write(dir.join("sites").join(format!("{app}.conf")), text).unwrap();
        }
    }
}

fn nginx_rss_mib(data: &Path) -> f64 {
    let master: i32 = std::fs::read_to_string(data.join("nginx/nginx.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut kib = 0u64;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        };
        if pid == master || field("PPid:") == Some(master as u64) {
            kib += field("VmRSS:").unwrap_or(0);
        }
    }
    kib as f64 / 1024.0
}

struct Bed {
    _dir: tempfile::TempDir,
    data: PathBuf,
    listen: SocketAddr,
    router: Router,
}

async fn bed(apps: usize, lua: bool, to: SocketAddr) -> Bed {
    // SAFETY: set before any other thread reads the environment.
    unsafe { std::env::set_var("QUARRY_ROUTER", if lua { "lua" } else { "reload" }) };
    // Under bench/run.sh a known dir, so its cleanup finds any nginx left.
    let dir = match std::env::var_os("ROUTER_BENCH_DIR") {
        Some(base) => tempfile::Builder::new()
            .prefix("bed-")
            .tempdir_in(base)
            .unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let data = dir.path().join("data");
    let listen = free_listen();
    seed(&data, apps, lua, listen, to);
    let t = Instant::now();
    let router = Router::start(&data, listen, None, None, PathBuf::from("nginx"))
        .await
        .expect("router starts");
    assert_eq!(router.dynamic(), lua, "the router runs in the mode asked");
    eprintln!(
        "router ({apps} apps, lua {lua}) started in {:?}",
        t.elapsed()
    );
    Bed {
        _dir: dir,
        data,
        listen,
        router,
    }
}

/// Add a new app and wait until its host answers; then take it away.
async fn adds(b: &Bed, key: &str, runs: usize, to: SocketAddr) {
    for i in 0..runs {
        let app = format!("new-{i}");
        let t = Instant::now();
        b.router.set_app(&app, &route(&app, &[to])).await.unwrap();
        answers(b.listen, &format!("{app}.localhost"), "A").await;
        sample(key, t.elapsed().as_secs_f64() * 1000.0);
        b.router.remove_app(&app).await.unwrap();
    }
}

#[tokio::main]
async fn main() {
    let (a, _ta) = upstream("A").await;
    let (bb, _tb) = upstream("B").await;

    for apps in [1_000, 10_000] {
        let b = bed(apps, true, a).await;
        adds(&b, &format!("route.add.{apps}"), RUNS, a).await;
        if apps == 10_000 {
            sample("route.rss.10000", nginx_rss_mib(&b.data));
            // A redeploy of one routed app: new containers, then old retired.
            let app = app_name(7);
            for i in 0..RUNS {
                let (from, to, body) = if i % 2 == 0 {
                    (a, bb, "B")
                } else {
                    (bb, a, "A")
                };
                let t = Instant::now();
                b.router
                    .set_app(&app, &route(&app, &[from, to]))
                    .await
                    .unwrap();
                b.router.set_app(&app, &route(&app, &[to])).await.unwrap();
                answers(b.listen, &format!("{app}.localhost"), body).await;
                sample("route.redeploy.10000", t.elapsed().as_secs_f64() * 1000.0);
            }
            load(&b, a).await;
        }
        b.router.stop().await;
    }
    // The reload path, for comparison. Not at 10,000: nginx -t alone takes
    // seconds there and a start outlasts the router's 15 s limit.
    let b = bed(1_000, false, a).await;
    adds(&b, "route.reload.add.1000", RUNS, a).await;
    b.router.stop().await;
}

/// Two clients over 100 apps (new connection each, ≤ 3,000 requests in
/// all) while 20 route changes each move one app to a new upstream and
/// retire the old one, as a deploy does.
async fn load(b: &Bed, first: SocketAddr) {
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let listen = b.listen;
    let clients: Vec<_> = (0..2)
        .map(|c| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                for n in 0..1500usize {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let host = format!("{}.localhost", app_name(1 + (n * 7 + c * 13) % 100));
                    match get(listen, &host) {
                        Ok((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                        other => {
                            eprintln!("load: {host}: {other:?}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    let mut current: Vec<(SocketAddr, Option<tokio::task::JoinHandle<()>>)> =
        (0..100).map(|_| (first, None)).collect();
    let t = Instant::now();
    for change in 0..20 {
        let i = (change * 37) % 100;
        let app = app_name(1 + i);
        let (new, task) = upstream("A").await;
        let old = current[i].0;
        let old_task = current[i].1.take();
        b.router
            .set_app(&app, &route(&app, &[old, new]))
            .await
            .unwrap();
        b.router.set_app(&app, &route(&app, &[new])).await.unwrap();
        // Retired: the old upstream stops accepting.
        if let Some(t) = old_task {
            t.abort();
        }
        current[i] = (new, Some(task));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sample("route.load.changes_ms", t.elapsed().as_secs_f64() * 1000.0);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    sample("route.load.ok", ok.load(Ordering::Relaxed) as f64);
    sample("route.load.failed", failed.load(Ordering::Relaxed) as f64);
}
