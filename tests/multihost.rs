//! The fleet, end to end: three extra Docker engines as servers, a web node
//! spread over them, nginx balancing across servers, and a drain with no
//! failed request.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::hosts::Host;
use common::{Repo, Server, http_get, stderr};

/// Each of the app's containers, as (name, server), from `ps --json`.
fn ps_servers(server: &Server, app: &str) -> Vec<(String, String)> {
    let ps: serde_json::Value =
        serde_json::from_str(&server.admin(&format!("ps {app} --json"))).unwrap();
    ps.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["server"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The server of each of the app's containers, sorted.
fn servers_of(server: &Server, app: &str) -> Vec<String> {
    let mut v: Vec<String> = ps_servers(server, app)
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    v.sort();
    v
}

fn hosts_answering(server: &Server, app: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..200 {
        seen.insert(server.body(app).trim().to_string());
        if seen.len() == 3 {
            break;
        }
    }
    seen
}

#[test]
fn a_node_spreads_over_servers_and_a_drain_moves_it_without_a_failed_request() {
    let server = Server::start();
    let mut hosts: Vec<Host> = std::thread::scope(|s| {
        let handles: Vec<_> = (2..=4).map(|n| s.spawn(move || Host::start(n))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for h in &hosts {
        let out = server.admin(&format!(
            "servers:add h{} --docker {} --address {} --memory 512 --label zone=z{}",
            h.n,
            h.endpoint(),
            h.address(),
            h.n
        ));
        assert!(out.contains(&format!("added server h{}", h.n)), "{out}");
    }
    // Refused: a duplicate, an engine that does not answer.
    let out = server.ssh(
        &server.admin,
        &format!(
            "servers:add h2 --docker {} --address 127.0.0.2 --memory 512",
            hosts[0].endpoint()
        ),
    );
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let out = server.ssh(
        &server.admin,
        "servers:add ghost --docker unix:///nonexistent.sock --address 127.0.0.9 --memory 512",
    );
    assert!(
        !out.status.success() && stderr(&out).contains("does not answer"),
        "{}",
        stderr(&out)
    );
    // The HQ takes no app containers in this test: only the three hosts do.
    server.admin("servers:drain local");

    let app = common::unique_app("spread");
    let repo = Repo::fixture("hostname-echo");
    let log = server.push_ok(repo.path(), &app);
    assert!(
        log.contains("copied quarry/"),
        "the image travelled to the servers without a registry:\n{log}"
    );
    assert_eq!(
        servers_of(&server, &app),
        vec!["h2", "h3", "h4"],
        "one replica per server"
    );
    let answering = hosts_answering(&server, &app);
    assert_eq!(
        answering.len(),
        3,
        "nginx reaches every server: {answering:?}"
    );
    // The deploy persisted the allocation.
    let grid: serde_json::Value =
        serde_json::from_slice(&std::fs::read(server.data.join("grid/grid.json")).unwrap())
            .unwrap();
    let mut on: Vec<String> = grid["slices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["group"] == format!("{app}.web"))
        .map(|s| s["block"].as_str().unwrap_or_default().to_string())
        .collect();
    on.sort();
    assert_eq!(on, vec!["h2", "h3", "h4"], "{grid}");
    let info = server.admin("servers:info h3");
    assert!(
        info.contains("containers: 1") && info.contains("zone=z3"),
        "{info}"
    );
    assert!(server.admin("grid").contains("h3"));

    // Drain h3 under a bounded load.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let (port, host) = (server.http_port, format!("{app}.localhost"));
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            while !stop.load(Ordering::Relaxed)
                && started.elapsed() < std::time::Duration::from_secs(120)
            {
                match http_get(("127.0.0.1", port), &host, "/") {
                    Ok((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        })
    };
    let out = server.ssh(&server.admin, "servers:drain h3");
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("drain of h3 under load: {ok} requests ok, {failed} failed");
    assert!(ok > 20, "the load ran: {ok}");
    assert_eq!(failed, 0, "no request failed during the drain");
    let after = servers_of(&server, &app);
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(!after.contains(&"h3".to_string()), "{after:?}");
    let left = hosts[1].docker(&["ps", "-aq"]);
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "h3 holds nothing"
    );

    // A server with containers cannot be removed; a drained one can.
    let out = server.ssh(&server.admin, "servers:remove h2");
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    server.admin("servers:remove h3");
    let servers: serde_json::Value = serde_json::from_str(&server.admin("servers --json")).unwrap();
    let names: Vec<&str> = servers
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["h2", "h4", "local"]);

    // Lose h4: its container is re-placed on what is left, and the app
    // serves all three replicas again.
    hosts[2].stop_engine();
    let lost = std::time::Instant::now();
    common::wait_for(
        "the app to be whole again without h4",
        std::time::Duration::from_secs(60),
        || {
            let on = servers_of(&server, &app);
            (on == vec!["h2", "h2", "h2"] && hosts_answering(&server, &app).len() == 3)
                .then_some(())
        },
    );
    eprintln!("recovered from the loss of h4 in {:?}", lost.elapsed());
    let h4: serde_json::Value =
        serde_json::from_str(&server.admin("servers:info h4 --json")).unwrap();
    assert_eq!(h4["state"], "unknown");
    // When h4 comes back it is marked running and takes containers again.
    hosts[2].start_engine_fresh();
    common::wait_for(
        "h4 to be running again",
        std::time::Duration::from_secs(60),
        || {
            let info: serde_json::Value =
                serde_json::from_str(&server.admin("servers:info h4 --json")).unwrap();
            (info["state"] == "running").then_some(())
        },
    );
    server.admin(&format!("ps:scale {app} web=4"));
    assert_eq!(
        servers_of(&server, &app),
        vec!["h2", "h2", "h2", "h4"],
        "the new replica spreads to h4"
    );
    let events = server.admin(&format!("events {app}"));
    assert!(events.contains("heal"), "{events}");
}

/// Gives back whatever the test provider still runs, however the test ends.
struct ProviderEngines {
    script: std::path::PathBuf,
    n: u8,
}

impl Drop for ProviderEngines {
    fn drop(&mut self) {
        use std::io::Write;
        let mut child = std::process::Command::new(&self.script)
            .arg(self.n.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let request = format!("{{\"action\":\"remove\",\"id\":\"engine-{}\"}}\n", self.n);
        let _ = child.stdin.take().unwrap().write_all(request.as_bytes());
        let _ = child.wait();
    }
}

fn write_config(server: &Server, text: &str) {
    std::fs::write(server.data.join("config.yml"), text).unwrap();
}

#[test]
fn a_full_grid_asks_the_exec_provider_for_a_server_and_an_empty_one_goes_back() {
    let server = Server::start();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/providers/engines.py");
    let _engines = ProviderEngines {
        script: script.clone(),
        n: 5,
    };
    let config = |extra: &str| {
        format!(
            "grid:\n  autosize: true\n  min: 1\n  max: 2\n  idle: 2\nprovider:\n  kind: exec\n  command: {}\n  args: [{extra}\"5\"]\n",
            script.display()
        )
    };
    // Only a server labelled pool=burst may run this app: none does yet.
    let app = common::unique_app("burst");
    let repo = Repo::fixture("hostname-echo");
    repo.write(
        "quarry.yml",
        "nodes:\n  web:\n    scale: 2\n    memory: 200\n    placement:\n      labels:\n        pool: burst\n",
    );
    repo.commit("needs pool=burst");

    // A provider that fails: the push is rejected in the provider's words,
    // and nothing was placed.
    write_config(&server, &config("--fail-add, "));
    let out = server.push(repo.path(), &app);
    let log = stderr(&out);
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains("asking provider exec for a server of 200 MiB with pool=burst")
            && log.contains("quota exceeded: no more machines in region test"),
        "{log}"
    );
    assert!(servers_of(&server, &app).is_empty());
    assert!(!server.admin("servers").contains("auto-1"));

    // A provider that delivers: a server is added (labelled as the slice
    // needs), the image travels there, both replicas run on it.
    write_config(&server, &config(""));
    let log = server.push_ok(repo.path(), &app);
    assert!(log.contains("added server auto-1 (small, 512 MiB"), "{log}");
    eprintln!(
        "{}",
        log.lines()
            .find(|l| l.contains("added server"))
            .unwrap_or("")
    );
    assert_eq!(servers_of(&server, &app), vec!["auto-1", "auto-1"]);
    let info: serde_json::Value =
        serde_json::from_str(&server.admin("servers:info auto-1 --json")).unwrap();
    assert_eq!(info["labels"]["pool"], "burst", "{info}");
    assert_eq!(info["origin"]["provider"], "exec", "{info}");
    assert_eq!(info["origin"]["id"], "engine-5", "{info}");
    assert_eq!(info["address"], "127.0.0.5", "{info}");
    let answering = hosts_answering(&server, &app);
    assert_eq!(answering.len(), 2, "{answering:?}");

    // The fleet is at max (local + auto-1) and auto-1 is full: a third
    // replica is refused, and the two keep serving.
    let out = server.ssh(&server.admin, &format!("ps:scale {app} web=3"));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no block fits slice"),
        "{}",
        stderr(&out)
    );
    assert_eq!(servers_of(&server, &app), vec!["auto-1", "auto-1"]);
    assert_eq!(hosts_answering(&server, &app).len(), 2);

    // Empty for longer than grid.idle: the provider takes it back.
    server.admin(&format!("ps:scale {app} web=0"));
    common::wait_for(
        "the empty provider server to be removed",
        std::time::Duration::from_secs(60),
        || (!server.admin("servers").contains("auto-1")).then_some(()),
    );
    assert!(
        !std::path::Path::new("/tmp/quarry-test-host-5").exists(),
        "the provider stopped its engine"
    );
    let events = server.admin("events");
    assert!(
        events.contains("servers:remove") && events.contains("engine-5"),
        "{events}"
    );
}

/// Each of the app's containers (by name) and its server.
fn placed(server: &Server, app: &str) -> std::collections::BTreeMap<String, String> {
    ps_servers(server, app).into_iter().collect()
}

#[test]
fn services_on_one_server_are_reached_from_nodes_on_another() {
    let server = Server::start();
    let net = common::hosts::NsNet::new();
    let (db1, db2, web) = std::thread::scope(|s| {
        let a = s.spawn(|| common::hosts::NsHost::start(&net, 6));
        let b = s.spawn(|| common::hosts::NsHost::start(&net, 7));
        let c = s.spawn(|| common::hosts::NsHost::start(&net, 8));
        (a.join().unwrap(), b.join().unwrap(), c.join().unwrap())
    });
    for (h, name, role) in [
        (&db1, "db1", "db"),
        (&db2, "db2", "db"),
        (&web, "web", "web"),
    ] {
        server.admin(&format!(
            "servers:add {name} --docker {} --address {} --memory 1024 --label role={role}",
            h.endpoint(),
            h.address()
        ));
    }
    let app = common::unique_app("xhost");
    let repo = Repo::fixture("stack");
    repo.write(
        "quarry.yml",
        "services:\n  cache:\n    image: quarry-base/busybox:latest\n    port: 7000\n    volumes: [/data]\n    command: \"[ -f /data/born ] || date +%s%N > /data/born; exec httpd -f -p 7000 -h /data\"\n    placement: {labels: {role: db}}\n  echo:\n    build: echo\n    port: 7001\n    placement: {labels: {role: db}}\nnodes:\n  web:\n    command: /app/web.sh\n    scale: 2\n    placement: {labels: {role: web}}\n",
    );
    repo.commit("services on db, web on web");
    let log = server.push_ok(repo.path(), &app);
    let at = placed(&server, &app);
    let db_of =
        |at: &std::collections::BTreeMap<String, String>| at[&format!("{app}.cache")].clone();
    let first = db_of(&at);
    assert!(first == "db1" || first == "db2", "{at:?}\n{log}");
    assert_eq!(at[&format!("{app}.echo")], first, "{at:?}");
    assert_eq!(at[&format!("{app}.web.1")], "web", "{at:?}");
    assert_eq!(at[&format!("{app}.web.2")], "web", "{at:?}");
    let (first_host, second, second_host) = if first == "db1" {
        (&db1, "db2", &db2)
    } else {
        (&db2, "db1", &db1)
    };
    // The web containers found the services at the db server's address,
    // through the port it publishes, and got answers.
    let check = |server_host: &common::hosts::NsHost| {
        let body = server.body(&app);
        let field = |name: &str| -> String {
            body.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            field("cache").starts_with(&format!("{}:", server_host.address())),
            "CACHE_HOST is the db server's address: {body}"
        );
        assert!(!field("born").is_empty(), "the cache answered: {body}");
        assert_eq!(field("pong"), "pong", "the echo service answered: {body}");
    };
    check(first_host);
    // The planner sees the links the web containers were booted with as current.
    assert_eq!(server.admin(&format!("plan {app}")), "nothing to do\n");

    // Drain the services' server: they move to the other db server, and the
    // web containers, which knew the old address, are replaced.
    let out = server.ssh(&server.admin, &format!("servers:drain {first}"));
    assert!(out.status.success(), "{}", stderr(&out));
    let at = placed(&server, &app);
    assert_eq!(db_of(&at), second, "{at:?}");
    assert_eq!(at[&format!("{app}.echo")], second, "{at:?}");
    assert_eq!(at[&format!("{app}.web.1")], "web", "{at:?}");
    assert!(
        stderr(&out).contains("A service moved: replacing 2 container(s)"),
        "{}",
        stderr(&out)
    );
    for _ in 0..4 {
        check(second_host);
    }
    // The cache's data did not travel: the pusher was told, and the old
    // volume is listed on the server it stayed on.
    assert!(
        stderr(&out).contains(&format!(
            "service cache moved from server {first} to {second}: it starts with empty volumes"
        )),
        "{}",
        stderr(&out)
    );
    let volumes: serde_json::Value =
        serde_json::from_str(&server.admin(&format!("volumes {app} --json"))).unwrap();
    let mut where_: Vec<String> = volumes
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["server"].as_str().unwrap().to_string())
        .collect();
    where_.sort();
    assert_eq!(where_, vec!["db1", "db2"], "{volumes}");
}

/// `openssl …` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is not installed");
    assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
}

/// A CA, a server certificate for `ip` and a client certificate, in `dir`.
fn certificates(dir: &std::path::Path, ip: &str) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=quarry-test-ca"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca-key.pem", "-out", "ca.pem"]);
    openssl(dir, &ca);
    for (who, cn, usage) in [
        (
            "server",
            ip,
            format!("subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\n"),
        ),
        (
            "client",
            "quarry",
            "extendedKeyUsage=clientAuth\n".to_string(),
        ),
    ] {
        let subj = format!("/CN={cn}");
        let (key, csr, cert, ext) = (
            format!("{who}-key.pem"),
            format!("{who}.csr"),
            format!("{who}-cert.pem"),
            format!("{who}.ext"),
        );
        std::fs::write(dir.join(&ext), usage).unwrap();
        let mut req = vec!["req", "-subj", &subj, "-keyout", &key, "-out", &csr];
        req.extend(ec);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-extfile",
                &ext,
                "-out",
                &cert,
            ],
        );
    }
}

#[test]
fn a_tcp_engine_behind_tls_is_a_server_like_any_other() {
    let server = Server::start();
    let certs = tempfile::tempdir().unwrap();
    let d = certs.path();
    certificates(d, "127.0.0.8");
    let path = |f: &str| d.join(f).display().to_string();
    let host = Host::start_with(
        8,
        &[
            "-H",
            "tcp://127.0.0.8:2376",
            "--tlsverify",
            "--tlscacert",
            &path("ca.pem"),
            "--tlscert",
            &path("server-cert.pem"),
            "--tlskey",
            &path("server-key.pem"),
        ],
    );
    let base = "servers:add secure --docker tcp://127.0.0.8:2376 --address 127.0.0.8 --memory 512 --label tls=yes";
    // Without certificates Quarry refuses the endpoint, and with --insecure
    // the engine refuses the client.
    let out = server.ssh(&server.admin, base);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("tcp://127.0.0.8:2376 has no TLS"),
        "{}",
        stderr(&out)
    );
    let out = server.ssh(&server.admin, &format!("{base} --insecure"));
    assert!(
        !out.status.success() && stderr(&out).contains("does not answer"),
        "{}",
        stderr(&out)
    );
    let out = server.ssh(
        &server.admin,
        &format!("{base} --tls-ca {}", path("ca.pem")),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("TLS needs all three of --tls-ca, --tls-cert and --tls-key"),
        "{}",
        stderr(&out)
    );
    let out = server.admin(&format!(
        "{base} --tls-ca {} --tls-cert {} --tls-key {}",
        path("ca.pem"),
        path("client-cert.pem"),
        path("client-key.pem")
    ));
    assert!(
        out.contains("added server secure") && out.contains("over TLS"),
        "{out}"
    );
    // The files were copied: the server keeps working without the originals.
    let kept = server.data.join("servers/secure/tls/key.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
        0o600
    );
    drop(certs);

    let app = common::unique_app("tls");
    let repo = Repo::fixture("hostname-echo");
    repo.write(
        "quarry.yml",
        "nodes:\n  web:\n    scale: 1\n    placement: {labels: {tls: \"yes\"}}\n",
    );
    repo.commit("on the TLS server");
    let log = server.push_ok(repo.path(), &app);
    assert!(log.contains("copied quarry/"), "{log}");
    assert_eq!(servers_of(&server, &app), vec!["secure"]);
    assert_eq!(hosts_answering(&server, &app).len(), 1);
    let listed = host.docker(&["ps", "--format", "{{.Names}}"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains(&format!("{app}.web.1")),
        "the container runs on the TLS engine"
    );
}
