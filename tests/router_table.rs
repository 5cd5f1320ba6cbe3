//! The router's dynamic table: with nginx's lua module a redeploy changes
//! the route without reloading nginx (the same workers serve the new
//! containers); without it (`QUARRY_ROUTER=reload`) the reload path routes.

mod common;

use std::fs;
use std::path::Path;

use common::{Repo, Server};

/// The nginx workers of the data dir's master, sorted.
fn workers(data: &Path) -> Vec<i32> {
    let master: i32 = fs::read_to_string(data.join("nginx/nginx.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        let title = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == Some(master) && String::from_utf8_lossy(&title).starts_with("nginx: worker") {
            out.push(pid);
        }
    }
    out.sort();
    out
}

/// One request to the router table's control socket; the raw answer.
fn control(data: &Path, method: &str, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(data.join("nginx/control/table.sock"))
        .expect("the table socket");
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: quarry\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn a_redeploy_moves_the_route_without_reloading_nginx() {
    assert!(
        Path::new("/usr/lib/nginx/modules/ngx_http_lua_module.so").exists(),
        "./run installs libnginx-mod-http-lua"
    );
    let server = Server::start();
    let app = common::unique_app("table");
    let repo = Repo::fixture("hello");
    server.push_ok(repo.path(), &app);
    let table = server.data.join(format!("nginx/table/{app}.routes"));
    let first = fs::read_to_string(&table).unwrap();
    assert!(
        first.starts_with(&format!("app {app}\nroute {app}.web ")),
        "{first}"
    );
    assert!(
        first.contains(&format!("host {app}.localhost {app}.web\n")),
        "{first}"
    );
    // No vhost, no named upstream for a plain-HTTP app.
    assert!(!server.data.join(format!("nginx/sites/{app}.conf")).exists());
    let before = workers(&server.data);
    assert!(!before.is_empty());
    // The table's write socket is root's alone.
    use std::os::unix::fs::PermissionsExt;
    let socket_dir = fs::metadata(server.data.join("nginx/control")).unwrap();
    assert_eq!(socket_dir.permissions().mode() & 0o777, 0o700);

    // Bad blocks change nothing: a torn address, a host sent to another
    // app's node, a block that does not start with its app.
    for bad in [
        format!("app {app}\nroute {app}.web 1.2.3:4\nhost {app}.localhost {app}.web\n"),
        format!("app {app}\nroute {app}.web 127.0.0.1:1\nhost {app}.localhost other.web\n"),
        format!("route {app}.web 127.0.0.1:1\n"),
    ] {
        let answer = control(&server.data, "PUT", "/apps", &bad);
        assert!(answer.starts_with("HTTP/1.1 400"), "{bad}: {answer}");
    }
    let held = control(&server.data, "GET", &format!("/apps/{app}"), "");
    assert!(held.ends_with(&first), "{held}");
    assert!(server.body(&app).starts_with("hello"));

    repo.write("www/index.html", "release 2\n");
    repo.commit("v2");
    server.push_ok(repo.path(), &app);
    assert_eq!(server.body(&app), "release 2\n");
    let second = fs::read_to_string(&table).unwrap();
    assert_ne!(first, second, "the new container's address is in the table");
    assert_eq!(workers(&server.data), before, "nginx was not reloaded");

    // A host nobody routes still gets Quarry's own answer.
    let (status, body) = server.get("nobody-here.localhost", "/");
    assert_eq!(
        (status, body.as_str()),
        (404, "quarry: no app is routed at this host\n")
    );

    server.admin(&format!("apps:destroy {app} --force"));
    assert!(!table.exists());
    let (status, _) = server.get(&format!("{app}.localhost"), "/");
    assert_eq!(status, 404);
}

#[test]
fn without_the_lua_module_routes_change_by_reload() {
    let server = Server::start_with_env(&[("QUARRY_ROUTER", "reload")]);
    let app = common::unique_app("reload");
    let repo = Repo::fixture("hello");
    server.push_ok(repo.path(), &app);
    let site = fs::read_to_string(server.data.join(format!("nginx/sites/{app}.conf"))).unwrap();
    assert!(
        site.contains(&format!("upstream quarry.{app}.web {{")),
        "{site}"
    );
    assert!(
        !server
            .data
            .join(format!("nginx/table/{app}.routes"))
            .exists()
    );
    let before = workers(&server.data);

    repo.write("www/index.html", "release 2\n");
    repo.commit("v2");
    server.push_ok(repo.path(), &app);
    assert_eq!(server.body(&app), "release 2\n");
    assert_ne!(workers(&server.data), before, "the reload path reloads");
}
