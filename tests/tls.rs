//! HTTPS end to end against a real ACME server: Debian's `pebble`, with
//! `pebble-challtestsrv` as its DNS (every name is 127.0.0.1), validating
//! over HTTP-01 through Quarry's own nginx; real `curl` and `openssl` as the
//! clients. Each test has its own pebble on free loopback ports.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::https::{https_get, served_serial};
use common::pebble::{Pebble, run};
use common::{Repo, Server, stderr, stdout, unique_app, wait_for};

/// A server with a pushed `hello` app, configured for `pebble`.
fn server_with_app(prefix: &str) -> (Server, Pebble, String, Repo) {
    let server = Server::start();
    let pebble = Pebble::start(server.http_port);
    fs::write(server.data.join("config.yml"), pebble.config_yml()).unwrap();
    let app = unique_app(prefix);
    let repo = Repo::fixture("hello");
    server.push_ok(repo.path(), &app);
    (server, pebble, app, repo)
}

#[test]
fn certs_enable_issues_a_certificate_that_verifies_and_http_redirects_with_308() {
    let (server, pebble, app, _repo) = server_with_app("tls");
    let host = format!("{app}.localhost");
    let body = server.body(&app);
    let enable = server.ssh(&server.admin, &format!("certs:enable {app}"));
    assert!(
        enable.status.success(),
        "certs:enable: {}{}",
        stdout(&enable),
        stderr(&enable)
    );
    assert!(
        stdout(&enable).contains("is served over HTTPS"),
        "{}",
        stdout(&enable)
    );

    let root = pebble.root();
    let got = https_get(&server, &root, &host);
    assert!(got.status.success(), "curl https: {}", stderr(&got));
    assert_eq!(stdout(&got), body);

    // Plain HTTP on the same name: a 308 to HTTPS, but ACME's path is not.
    let head = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
        ])
        .args(["-H", &format!("Host: {host}")])
        .arg(format!("http://127.0.0.1:{}/a?b=1", server.http_port))
        .output()
        .unwrap();
    assert_eq!(
        stdout(&head),
        format!("308 https://{host}:{}/a?b=1", server.https_port)
    );
    let (status, _) = server.get(&host, "/.well-known/acme-challenge/nope");
    assert_eq!(
        status, 404,
        "the ACME path is answered by nginx, not redirected"
    );

    let show = server.admin(&format!("certs {app} --json"));
    let v: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(v[0]["state"], "valid", "{show}");
    assert_eq!(v[0]["domains"][0], host.as_str());
    assert!(
        v[0]["issuer"].as_str().unwrap().contains("Pebble"),
        "{show}"
    );

    // Files: the account and the key are the daemon's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&server.data.join("tls/account.json")), 0o600);
    let app_dir = server.data.join("tls/apps").join(&app);
    for e in fs::read_dir(&app_dir).unwrap() {
        assert_eq!(mode(&e.unwrap().path()), 0o600);
    }

    // After a restart the certificate is still served.
    let mut server = server;
    server.stop();
    server.restart();
    wait_for("HTTPS after restart", Duration::from_secs(30), || {
        https_get(&server, &root, &host)
            .status
            .success()
            .then_some(())
    });
}

#[test]
fn a_forced_renewal_swaps_the_certificate_with_no_failed_request_under_load() {
    let (server, pebble, app, _repo) = server_with_app("renew");
    let host = format!("{app}.localhost");
    let enable = server.ssh(&server.admin, &format!("certs:enable {app}"));
    assert!(enable.status.success(), "{}", stderr(&enable));
    let root = pebble.root();
    let before = served_serial(&server, &host);
    assert!(before.starts_with("serial="), "{before}");

    // Bounded load: 4 clients, each a new TLS connection per request, until
    // the renewal is done (at most 60 s).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (stop, root, host, port) =
                (stop.clone(), root.clone(), host.clone(), server.https_port);
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0u32, Vec::new());
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                while !stop.load(std::sync::atomic::Ordering::SeqCst)
                    && std::time::Instant::now() < deadline
                {
                    // HTTP/1.1: an HTTP/2 connection that a retiring worker
                    // holds idle gets GOAWAY, which curl does not retry.
                    let out = Command::new("curl")
                        .args([
                            "-sS",
                            "--http1.1",
                            "--max-time",
                            "10",
                            "-o",
                            "/dev/null",
                            "-w",
                            "%{http_code}",
                        ])
                        .arg("--cacert")
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
    std::thread::sleep(Duration::from_millis(300));
    let renew = server.ssh(&server.admin, &format!("certs:renew {app} --force"));
    std::thread::sleep(Duration::from_millis(300));
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
    let after = served_serial(&server, &host);
    assert_ne!(
        before, after,
        "the renewal did not change the served certificate"
    );
    let v: serde_json::Value =
        serde_json::from_str(&server.admin(&format!("certs {app} --json"))).unwrap();
    assert_eq!(
        format!("serial={}", v[0]["serial"].as_str().unwrap()).to_uppercase(),
        after.to_uppercase()
    );
    // Without --force a valid certificate is left alone.
    let again = server.admin(&format!("certs:renew {app}"));
    assert!(again.contains("nothing to do"), "{again}");
}

#[test]
fn a_domain_added_later_gets_its_certificate() {
    let (server, pebble, app, _repo) = server_with_app("later");
    let enable = server.ssh(&server.admin, &format!("certs:enable {app}"));
    assert!(enable.status.success(), "{}", stderr(&enable));
    let extra = format!("{app}.example.test");
    let add = server.ssh(&server.admin, &format!("domains:add {app} {extra}"));
    assert!(add.status.success(), "domains:add: {}", stderr(&add));
    assert!(
        stdout(&add).contains("is served over HTTPS"),
        "{}",
        stdout(&add)
    );
    let root = pebble.root();
    let got = https_get(&server, &root, &extra);
    assert!(got.status.success(), "curl https {extra}: {}", stderr(&got));
    let v: serde_json::Value =
        serde_json::from_str(&server.admin(&format!("certs {app} --json"))).unwrap();
    let names: Vec<&str> = v[0]["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(
        names.contains(&extra.as_str()) && names.contains(&format!("{app}.localhost").as_str())
    );
}

#[test]
fn a_failed_issuance_leaves_http_serving_and_says_why() {
    let (server, pebble, app, _repo) = server_with_app("fail");
    let host = format!("{app}.localhost");
    let body = server.body(&app);
    // pebble's DNS sends the validation to an address nothing listens on.
    pebble.set_a(&host, "127.0.0.9");
    let enable = server.ssh(&server.admin, &format!("certs:enable {app}"));
    assert!(!enable.status.success());
    let err = stderr(&enable);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "quarry: no certificate for {app}: validation of {host} failed: connection: "
        )) && err.trim_end().ends_with("; HTTP keeps serving"),
        "{err}"
    );
    // Plain HTTP still serves the app, not a redirect; HTTPS has no cert for it.
    assert_eq!(server.body(&app), body);
    let root = pebble.root();
    assert!(!https_get(&server, &root, &host).status.success());
    let v: serde_json::Value =
        serde_json::from_str(&server.admin(&format!("certs {app} --json"))).unwrap();
    assert_eq!(v[0]["state"], "failing");
    assert!(
        v[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("validation of")
    );
    let events = server.admin(&format!("events {app}"));
    assert!(events.contains("certs:enable"), "{events}");
}

/// A self-signed pair made by openssl for `names`.
fn openssl_pair(dir: &Path, stem: &str, names: &[&str]) -> (String, String) {
    let san = names
        .iter()
        .map(|n| format!("DNS:{n}"))
        .collect::<Vec<_>>()
        .join(",");
    run(Command::new("openssl").current_dir(dir).args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &format!("{stem}.key"),
        "-out",
        &format!("{stem}.pem"),
        "-days",
        "2",
        "-subj",
        &format!("/CN={}", names[0]),
        "-addext",
        &format!("subjectAltName={san}"),
    ]));
    (
        fs::read_to_string(dir.join(format!("{stem}.pem"))).unwrap(),
        fs::read_to_string(dir.join(format!("{stem}.key"))).unwrap(),
    )
}

#[test]
fn certs_add_refuses_a_key_that_does_not_match_and_foreign_domains() {
    let server = Server::start();
    let app = unique_app("own");
    let repo = Repo::fixture("hello");
    server.push_ok(repo.path(), &app);
    let other = unique_app("other");
    server.push_ok(repo.path(), &other);
    let host = format!("{app}.localhost");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = openssl_pair(dir.path(), "good", &[&host]);
    let (_, other_key) = openssl_pair(dir.path(), "stray", &[&host]);
    let (foreign, foreign_key) = openssl_pair(
        dir.path(),
        "foreign",
        &[&host, &format!("{other}.localhost")],
    );

    let cmd = format!("certs:add {app}");
    let bad = server.ssh_with_input(&server.admin, &cmd, format!("{cert}{other_key}").as_bytes());
    assert!(!bad.status.success());
    assert_eq!(
        stderr(&bad).trim_end(),
        format!(
            "quarry: certs:add {app}: the key does not belong to the certificate (their public keys differ)"
        )
    );
    let bad = server.ssh_with_input(
        &server.admin,
        &cmd,
        format!("{foreign}{foreign_key}").as_bytes(),
    );
    assert!(!bad.status.success());
    assert_eq!(
        stderr(&bad).trim_end(),
        format!(
            "quarry: certs:add {app}: the certificate names {other}.localhost, which is not a domain of this app"
        )
    );
    // Nothing changed: no TLS for either app, both still serve over HTTP.
    assert!(
        server
            .admin(&format!("certs {app}"))
            .contains("state:      none")
    );
    assert_eq!(server.get(&host, "/").0, 200);
    assert_eq!(server.get(&format!("{other}.localhost"), "/").0, 200);

    // Files on the Quarry host are an admin's to name, not a deployer's.
    let files = format!(
        "certs:add {app} --cert {} --key {}",
        dir.path().join("good.pem").display(),
        dir.path().join("good.key").display()
    );
    let deployer = common::new_key(server.dir.path(), "certdeployer", "ed25519");
    server.add_key(&deployer, &format!("--role deployer --apps {app}"));
    let refused = server.ssh(&deployer, &files);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("permission denied: key certdeployer is a deployer"),
        "{}",
        stderr(&refused)
    );
    assert!(
        server
            .admin(&format!("certs {app}"))
            .contains("state:      none")
    );
    // The good pair, named by an admin as files on the host, is served as given.
    let ok = server.ssh(&server.admin, &files);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let got = https_get(&server, &dir.path().join("good.pem"), &host);
    assert!(got.status.success(), "{}", stderr(&got));
    let show = server.admin(&format!("certs {app}"));
    assert!(show.contains("mode:       custom"), "{show}");
    // ACME does not take over a custom certificate; certs:remove gives HTTP back.
    let enable = server.ssh(&server.admin, &format!("certs:enable {app}"));
    assert!(stderr(&enable).contains("run certs:remove first"));
    let rm = server.ssh(&server.admin, &format!("certs:remove {app}"));
    assert!(rm.status.success(), "{}", stderr(&rm));
    assert_eq!(server.get(&host, "/").0, 200);
    assert!(
        !https_get(&server, &dir.path().join("good.pem"), &host)
            .status
            .success()
    );

    // A destroyed app's certificate does not pass to a new app of its name.
    let ok = server.ssh_with_input(&server.admin, &cmd, format!("{cert}{key}").as_bytes());
    assert!(ok.status.success(), "{}", stderr(&ok));
    server.admin(&format!("apps:destroy {app} --force"));
    assert!(!server.data.join("tls/apps").join(&app).exists());
    server.admin(&format!("apps:create {app}"));
    assert!(
        server
            .admin(&format!("certs {app}"))
            .contains("state:      none")
    );
}

#[test]
fn the_reconciler_renews_a_certificate_that_expires_within_30_days() {
    let server = Server::start();
    let pebble = Pebble::start_with_validity(server.http_port, Some(29 * 24 * 3600));
    fs::write(server.data.join("config.yml"), pebble.config_yml()).unwrap();
    let app = unique_app("auto");
    let repo = Repo::fixture("hello");
    server.push_ok(repo.path(), &app);
    let host = format!("{app}.localhost");
    let enable = server.ssh(&server.admin, &format!("certs:enable {app}"));
    assert!(enable.status.success(), "{}", stderr(&enable));
    let first = served_serial(&server, &host);
    let v: serde_json::Value =
        serde_json::from_str(&server.admin(&format!("certs {app} --json"))).unwrap();
    assert_eq!(v[0]["state"], "expiring");
    // No command: the renewal loop sees 29 days left and issues again.
    wait_for("an automatic renewal", Duration::from_secs(90), || {
        let now = served_serial(&server, &host);
        (now.starts_with("serial=") && now != first).then_some(())
    });
    let events = server.admin(&format!("events {app}"));
    assert!(
        events.contains("certs:renew") && events.contains("issued for"),
        "{events}"
    );
}
