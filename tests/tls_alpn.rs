//! TLS-ALPN-01 end to end: `tls.acme.challenge: tls-alpn-01` puts nginx's
//! stream front on Quarry's HTTPS port, and a real pebble validates through
//! it (its `tlsPort` is Quarry's HTTPS port; its HTTP-01 port is one nobody
//! listens on, so HTTP-01 cannot be what succeeded). Real `curl` and
//! `openssl` are the clients; plain HTTPS to every app goes through the
//! same front.

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::https::{https_get_with, served_serial};
use common::pebble::Pebble;
use common::{Repo, Server, stderr, stdout, unique_app, wait_for};

/// A server restarted with TLS-ALPN-01 on, and its pebble.
fn alpn_server() -> (Server, Pebble) {
    let mut server = Server::start();
    let pebble = Pebble::start_tls_alpn(server.https_port);
    let yml = format!("{}    challenge: tls-alpn-01\n", pebble.config_yml());
    fs::write(server.data.join("config.yml"), yml).unwrap();
    // The front is set up at start.
    server.stop();
    server.restart();
    (server, pebble)
}

fn enable(server: &Server, app: &str) {
    let out = server.ssh(&server.admin, &format!("certs:enable {app}"));
    assert!(
        out.status.success() && stdout(&out).contains("is served over HTTPS"),
        "certs:enable {app}: {}{}\n{}",
        stdout(&out),
        stderr(&out),
        server.log()
    );
}

#[test]
fn tls_alpn_01_issues_through_the_stream_front_and_https_to_every_app_goes_through_it() {
    let (mut server, pebble) = alpn_server();
    let stream = fs::read_to_string(server.data.join("nginx/stream.conf")).unwrap();
    assert!(
        stream.contains("ssl_preread on;")
            && stream.contains(&format!("listen 127.0.0.1:{};", server.https_port)),
        "{stream}"
    );

    let (shop, blog) = (unique_app("alpn"), unique_app("alpnb"));
    let (repo_a, repo_b) = (Repo::fixture("hello"), Repo::fixture("hello"));
    server.push_ok(repo_a.path(), &shop);
    server.push_ok(repo_b.path(), &blog);
    // Over plain HTTP, before the redirects start.
    let (shop_body, blog_body) = (server.body(&shop), server.body(&blog));
    enable(&server, &shop);

    // Validated by TLS-ALPN-01: pebble's validator reached the front with
    // SNI = the name and ALPN = acme-tls/1 only, was sent to the responder
    // (not the unix socket of the http servers), and pebble marked the
    // authorization valid. Its HTTP-01 port has no listener at all.
    let shop_host = format!("{shop}.localhost");
    let front_log = fs::read_to_string(server.data.join("nginx/stream.log")).unwrap();
    let acme: Vec<&str> = front_log
        .lines()
        .filter(|l| l.contains(&format!(" {shop_host} \"acme-tls/1\" 127.0.0.1:")))
        .collect();
    assert!(
        !acme.is_empty(),
        "no acme-tls/1 hello for {shop_host}:\n{front_log}"
    );
    assert!(acme.iter().all(|l| !l.contains("unix:")), "{acme:?}");
    let log = pebble.log();
    assert!(
        log.contains(&format!("Value:\"{shop_host}\""))
            && log.contains("set VALID by completed challenge"),
        "{log}"
    );

    let root = pebble.root();
    let got = https_get_with(&server, &root, &shop_host, &["--http1.1"]);
    assert!(got.status.success(), "curl https: {}", stderr(&got));
    assert_eq!(stdout(&got), shop_body);

    // A second app, and HTTP/2 through the front: ordinary ClientHellos go
    // to the http servers behind it.
    enable(&server, &blog);
    let blog_host = format!("{blog}.localhost");
    let h2 = Command::new("curl")
        .args(["-sS", "--http2", "--max-time", "10", "-o", "/dev/null"])
        .args(["-w", "%{http_version} %{http_code}", "--cacert"])
        .arg(&root)
        .arg("--resolve")
        .arg(format!("{blog_host}:{}:127.0.0.1", server.https_port))
        .arg(format!("https://{blog_host}:{}/", server.https_port))
        .output()
        .unwrap();
    assert_eq!(stdout(&h2), "2 200", "{}", stderr(&h2));

    // The client's address survives the hop (PROXY protocol + realip):
    // the access log says 127.0.0.1, never the unix socket.
    let access = fs::read_to_string(server.data.join("nginx/access.log")).unwrap();
    let https_lines: Vec<&str> = access.lines().filter(|l| l.contains("HTTP/2.0")).collect();
    assert!(!https_lines.is_empty(), "{access}");
    assert!(
        https_lines.iter().all(|l| l.starts_with("127.0.0.1 ")),
        "{https_lines:?}"
    );

    // Ordinary hellos went to the http servers' socket (logged when the
    // session ends, which may be just after curl is gone).
    let want = format!(" {blog_host} \"h2,http/1.1\" unix:");
    wait_for(
        "the h2 session in stream.log",
        Duration::from_secs(10),
        || {
            fs::read_to_string(server.data.join("nginx/stream.log"))
                .ok()
                .filter(|l| l.contains(&want))
                .map(|_| ())
        },
    );

    // A name with no certificate still gets no handshake.
    let stray = https_get_with(&server, &root, "nobody.localhost", &["--http1.1"]);
    assert!(!stray.status.success());

    // A forced renewal, by TLS-ALPN-01 again, under HTTPS load through the
    // front: the reload drops no request.
    let before = served_serial(&server, &shop_host);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (stop, root, host, port) = (
                stop.clone(),
                root.clone(),
                shop_host.clone(),
                server.https_port,
            );
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0u32, Vec::new());
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                while !stop.load(std::sync::atomic::Ordering::SeqCst)
                    && std::time::Instant::now() < deadline
                {
                    let out = Command::new("curl")
                        .args(["-sS", "--http1.1", "--max-time", "10", "-o", "/dev/null"])
                        .args(["-w", "%{http_code}", "--cacert"])
                        .arg(&root)
                        .arg("--resolve")
                        .arg(format!("{host}:{port}:127.0.0.1"))
                        .arg(format!("https://{host}:{port}/"))
                        .output()
                        .unwrap();
                    if out.status.success() && out.stdout == b"200" {
                        ok += 1;
                    } else {
                        failed.push(format!(
                            "{} {}",
                            String::from_utf8_lossy(&out.stdout),
                            String::from_utf8_lossy(&out.stderr)
                        ));
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    // Poll until the load is flowing rather than sleeping for it.
    wait_for("HTTPS load", Duration::from_secs(20), || {
        fs::read_to_string(server.data.join("nginx/access.log"))
            .ok()
            .filter(|a| a.len() > access.len())
            .map(|_| ())
    });
    let renew = server.ssh(&server.admin, &format!("certs:renew {shop} --force"));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(renew.status.success(), "certs:renew: {}", stderr(&renew));
    let mut total = 0;
    for t in load {
        let (ok, failed) = t.join().unwrap();
        assert!(
            failed.is_empty(),
            "failed requests during the renewal: {failed:?}"
        );
        total += ok;
    }
    assert!(total > 0, "the load sent no request");
    assert_ne!(before, served_serial(&server, &shop_host));
    // Both apps answer with certificates that verify against pebble's root.
    for (body, host) in [(&shop_body, &shop_host), (&blog_body, &blog_host)] {
        let got = https_get_with(&server, &root, host, &["--http1.1"]);
        assert!(got.status.success(), "{host}: {}", stderr(&got));
        assert_eq!(&stdout(&got), body);
    }

    // Back to HTTP-01 and to TLS-ALPN-01 again, restarting each time: the
    // vhosts an earlier run wrote move their TLS listen lines at start (a
    // vhost left on the HTTPS address beside the front keeps nginx from
    // starting: "bind() … Address already in use").
    let yml = fs::read_to_string(server.data.join("config.yml")).unwrap();
    fs::write(server.data.join("config.yml"), pebble.config_yml()).unwrap();
    server.stop();
    server.restart();
    assert_eq!(
        fs::read_to_string(server.data.join("nginx/stream.conf")).unwrap(),
        ""
    );
    wait_for("HTTPS without the front", Duration::from_secs(30), || {
        https_get_with(&server, &root, &shop_host, &["--http1.1"])
            .status
            .success()
            .then_some(())
    });
    let site = fs::read_to_string(server.data.join(format!("nginx/sites/{shop}.conf"))).unwrap();
    assert!(
        site.contains(&format!(
            "listen 127.0.0.1:{} ssl http2;",
            server.https_port
        )),
        "{site}"
    );
    fs::write(server.data.join("config.yml"), yml).unwrap();
    server.stop();
    server.restart();
    wait_for(
        "HTTPS through the front again",
        Duration::from_secs(30),
        || {
            https_get_with(&server, &root, &blog_host, &["--http1.1"])
                .status
                .success()
                .then_some(())
        },
    );
}

#[test]
fn tls_alpn_01_off_leaves_the_https_port_to_the_http_servers() {
    let server = Server::start();
    assert_eq!(
        fs::read_to_string(server.data.join("nginx/stream.conf")).unwrap(),
        ""
    );
    let https = fs::read_to_string(server.data.join("nginx/https.conf")).unwrap();
    assert!(
        https.contains(&format!(
            "listen 127.0.0.1:{} ssl http2 default_server;",
            server.https_port
        )),
        "{https}"
    );
}
