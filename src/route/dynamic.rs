//! The dynamic route table: routes change without `nginx -t` or a reload.
//!
//! With Debian's `libnginx-mod-http-lua` (and its `lua-resty-core`), nginx
//! runs one `balancer_by_lua` upstream for every app; which containers serve
//! which host sits in a shared dict (see `quarry.lua`) that the daemon writes
//! over a unix socket under `<data>/nginx/control/` (mode 0700: root only).
//! A route change is one request whose cost does not depend on how many apps
//! are routed; nginx reloads only when its listeners, server names of TLS
//! apps or certificates change. Without the module the [`Router`] keeps
//! rendering one vhost per app and reloading.
//!
//! The `render_*` functions are pure (golden tested). The table of each app
//! is also kept in `<data>/nginx/table/<app>.routes`, so a fresh nginx gets
//! it back at once. Everything here touches only `<data>/nginx/`.
//!
//! [`Router`]: super::Router

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::UnixStream;

use super::{NodeRoute, RouteError, Router};
use crate::probe::{Probe, ProbeError};
use crate::store::write_atomic;

/// The Lua side, written to `<data>/nginx/lua/quarry.lua`.
pub const LUA: &str = include_str!("quarry.lua");

/// Where Debian installs the module and the Lua library it needs.
const MODULES: [&str; 2] = [
    "/usr/lib/nginx/modules/ndk_http_module.so",
    "/usr/lib/nginx/modules/ngx_http_lua_module.so",
];
const RESTY_CORE: &str = "/usr/share/lua/5.1/resty/core.lua";

/// Answers longer than this from the control socket are refused.
const MAX_ANSWER: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("cannot reach nginx's route table at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("nginx's route table did not answer within {0:?}")]
    Timeout(Duration),
    #[error("nginx's route table sent no HTTP answer")]
    Garbled,
    #[error("nginx refused the routes of {app} ({status}): {reason}")]
    Refused {
        app: String,
        status: u16,
        reason: String,
    },
    #[error("nginx holds other routes for {app} than were written")]
    Mismatch { app: String },
}

/// Whether this machine has what the dynamic table needs, unless
/// `QUARRY_ROUTER=reload` asks for the reload path.
pub fn available() -> bool {
    if std::env::var("QUARRY_ROUTER").as_deref() == Ok("reload") {
        return false;
    }
    MODULES
        .iter()
        .chain([&RESTY_CORE])
        .all(|p| Path::new(p).exists())
}

/// modules.conf (main context): the modules to load, or nothing.
pub fn render_modules(lua: bool) -> String {
    if !lua {
        return String::new();
    }
    MODULES
        .iter()
        .map(|m| format!("load_module {m};\n"))
        .collect()
}

/// dynamic.conf (http context): the shared table, the one upstream and the
/// control server.
pub fn render_http(dir: &Path, lua: bool) -> String {
    if !lua {
        return String::new();
    }
    let d = dir.display();
    format!(
        "lua_package_path \"{d}/lua/?.lua;/usr/share/lua/5.1/?.lua;;\";\n\
lua_shared_dict quarry_routes 64m;\n\
init_by_lua_block {{ require \"quarry\" }}\n\
upstream quarry_dynamic {{\n\
    server 0.0.0.1:1;\n\
    balancer_by_lua_block {{ require(\"quarry\").balance() }}\n\
    keepalive 256;\n\
}}\n\
server {{\n\
    listen unix:{d}/control/table.sock;\n\
    access_log off;\n\
    client_body_buffer_size 64m;\n\
    client_max_body_size 64m;\n\
    location / {{ content_by_lua_block {{ require(\"quarry\").control() }} }}\n\
}}\n"
    )
}

/// The proxying `location /` of the default server (lua) or its 404.
pub fn render_default_location(dir: &Path, lua: bool) -> String {
    if !lua {
        return "location / { default_type text/plain; return 404 \"quarry: no app is routed at this host\\n\"; }\n".into();
    }
    let mut out = format!("include {};\n", dir.join(super::tls::CHALLENGES).display());
    out.push_str("location / {\n");
    for l in proxy_lines() {
        let _ = writeln!(out, "    {l}");
    }
    out.push_str("}\n");
    out
}

/// The body of every proxying location in lua mode.
fn proxy_lines() -> impl Iterator<Item = &'static str> {
    [
        "access_by_lua_block { require(\"quarry\").access() }",
        "proxy_pass http://quarry_dynamic;",
    ]
    .into_iter()
    .chain(super::PROXY_LINES)
}

/// sites/<app>.conf in lua mode, only for an app served over HTTPS (its
/// server names and certificate); the table says where its hosts go, so
/// this text does not change when containers do.
pub fn render_site(app: &str, listen: SocketAddr, routes: &[NodeRoute]) -> String {
    let mut out =
        format!("# Server names of app {app}, written by quarry; edits are overwritten.\n");
    for r in routes.iter().filter(|r| !r.domains.is_empty()) {
        let _ = writeln!(out, "server {{");
        let _ = writeln!(out, "    listen {listen};");
        let _ = writeln!(out, "    server_name {};", r.domains.join(" "));
        let _ = writeln!(out, "    location / {{");
        for l in proxy_lines() {
            let _ = writeln!(out, "        {l}");
        }
        let _ = writeln!(out, "    }}\n}}");
    }
    out
}

/// The table block of `app`: its nodes' containers and the hosts leading to
/// them. A node without containers keeps its hosts (they answer 503).
pub fn render_table(app: &str, routes: &[NodeRoute]) -> String {
    let mut out = format!("app {app}\n");
    for r in routes.iter().filter(|r| !r.domains.is_empty()) {
        let key = format!("{app}.{}", r.node);
        let _ = write!(out, "route {key}");
        for a in &r.upstreams {
            let _ = write!(out, " {a}");
        }
        out.push('\n');
        // A Domain is lower-case by construction.
        for d in &r.domains {
            let _ = writeln!(out, "host {d} {key}");
        }
    }
    out
}

/// The table's control socket.
pub fn socket(dir: &Path) -> PathBuf {
    dir.join("control").join("table.sock")
}

/// One request to the control socket: (status, body).
async fn request(
    dir: &Path,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), TableError> {
    let limit = Duration::from_secs(30);
    let sock = socket(dir);
    let work = async {
        let stream = UnixStream::connect(&sock)
            .await
            .map_err(|source| TableError::Connect {
                path: sock.clone(),
                source,
            })?;
        let answer = Probe::get(path, "quarry")
            .with_body(method, body)
            .read_body(MAX_ANSWER)
            .send(stream, limit)
            .await
            .map_err(|e| match e {
                ProbeError::Timeout(limit) => TableError::Timeout(limit),
                ProbeError::Connect(_)
                | ProbeError::NoAnswer
                | ProbeError::TooLong(_)
                | ProbeError::Request(_) => TableError::Garbled,
            })?;
        Ok((answer.status, answer.text()))
    };
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| TableError::Timeout(limit))?
}

/// Write blocks (one app's, or many at start) into nginx's table.
pub async fn put(dir: &Path, app: &str, blocks: &str) -> Result<(), TableError> {
    let (status, body) = request(dir, "PUT", "/apps", blocks).await?;
    if status != 200 {
        return Err(TableError::Refused {
            app: app.to_string(),
            status,
            reason: body.trim().to_string(),
        });
    }
    Ok(())
}

/// Read back what nginx routes for `app` and compare it with `want` (the
/// block last written; an app without routes has none).
pub async fn confirm(dir: &Path, app: &str, want: Option<&str>) -> Result<(), TableError> {
    let (status, body) = request(dir, "GET", &format!("/apps/{app}"), "").await?;
    let got = (status == 200).then_some(body.as_str());
    if got == want {
        Ok(())
    } else {
        Err(TableError::Mismatch {
            app: app.to_string(),
        })
    }
}

/// The table's version counter (answers once the table is loaded).
pub async fn version(dir: &Path) -> Result<u64, TableError> {
    let (status, body) = request(dir, "GET", "/version", "").await?;
    if status != 200 {
        return Err(TableError::Garbled);
    }
    body.trim().parse().map_err(|_| TableError::Garbled)
}

/// An app's block as written, or `None` when it has no routes.
pub fn block_of(app: &str, routes: Option<&[NodeRoute]>) -> Option<String> {
    let text = render_table(app, routes?);
    (text.lines().count() > 1).then_some(text)
}

impl Router {
    fn table_path(&self, app: &str) -> PathBuf {
        self.dir.join("table").join(format!("{app}.routes"))
    }

    /// Route `app` (or stop, with `None`) through the table: write, read
    /// back, keep the file; then the HTTPS vhost when the app has one. On
    /// any failure nginx gets the previous block back.
    pub(super) async fn route_dynamic(
        &self,
        app: &str,
        routes: Option<&[NodeRoute]>,
    ) -> Result<(), RouteError> {
        let file = self.table_path(app);
        let block = block_of(app, routes);
        let previous = {
            let _guard = self.lock.lock().await;
            let previous = std::fs::read_to_string(&file).ok();
            let empty = format!("app {app}\n");
            let restore = || async {
                let _ = put(&self.dir, app, previous.as_deref().unwrap_or(&empty)).await;
            };
            let pushed = async {
                put(&self.dir, app, block.as_deref().unwrap_or(&empty)).await?;
                confirm(&self.dir, app, block.as_deref()).await
            };
            if let Err(e) = pushed.await {
                restore().await;
                return Err(e.into());
            }
            let kept = match &block {
                Some(b) => write_atomic(&file, b.as_bytes(), 0o644),
                None => std::fs::remove_file(&file).or_else(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                }),
            };
            if let Err(e) = kept {
                restore().await;
                return Err(RouteError::write(&file)(e));
            }
            previous
        };
        let has_tls = self.tls.lock().expect("tls map").contains_key(app);
        let site = routes.filter(|_| has_tls).map(|r| self.render_site(app, r));
        if let Err(e) = self.apply(app, site).await {
            let _guard = self.lock.lock().await;
            let empty = format!("app {app}\n");
            let _ = put(&self.dir, app, previous.as_deref().unwrap_or(&empty)).await;
            let _ = match &previous {
                Some(p) => write_atomic(&file, p.as_bytes(), 0o644),
                None => std::fs::remove_file(&file),
            };
            return Err(e);
        }
        Ok(())
    }

    /// Give nginx every app's block kept on disk (a fresh nginx's table is
    /// empty; an adopted one's is rewritten with the same text).
    pub(super) async fn load_table(&self) -> Result<(), RouteError> {
        if !self.lua {
            return Ok(());
        }
        let _guard = self.lock.lock().await;
        let dir = self.dir.join("table");
        let mut body = String::new();
        let mut apps = 0usize;
        for e in std::fs::read_dir(&dir)
            .map_err(RouteError::dir(&dir))?
            .flatten()
        {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || !name.ends_with(".routes") {
                continue;
            }
            if let Ok(text) = std::fs::read_to_string(e.path()) {
                body.push_str(&text);
                apps += 1;
            }
        }
        if apps > 0 {
            put(&self.dir, "every app", &body).await?;
        }
        tracing::info!(apps, "route table loaded into nginx");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Vec<NodeRoute> {
        vec![
            NodeRoute {
                node: "web".into(),
                domains: vec!["shop.localhost".into(), "www.example.com".into()],
                upstreams: vec![
                    "127.0.0.1:49153".parse().unwrap(),
                    "[::1]:49160".parse().unwrap(),
                ],
            },
            NodeRoute {
                node: "admin".into(),
                domains: vec!["admin.shop.localhost".into()],
                upstreams: vec![],
            },
            NodeRoute {
                node: "hidden".into(),
                domains: vec![],
                upstreams: vec!["127.0.0.1:1".parse().unwrap()],
            },
        ]
    }

    #[test]
    fn table_block_golden() {
        let want = "\
app shop
route shop.web 127.0.0.1:49153 [::1]:49160
host shop.localhost shop.web
host www.example.com shop.web
route shop.admin
host admin.shop.localhost shop.admin
";
        assert_eq!(render_table("shop", &routes()), want);
        assert_eq!(block_of("shop", Some(&routes())).as_deref(), Some(want));
        assert_eq!(block_of("shop", Some(&[])), None);
        assert_eq!(block_of("shop", None), None);
    }

    #[test]
    fn tls_site_has_no_containers_in_it() {
        let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let mut other = routes();
        other[0].upstreams = vec!["127.0.0.9:1".parse().unwrap()];
        let text = render_site("shop", listen, &routes());
        assert_eq!(text, render_site("shop", listen, &other));
        assert!(text.contains("    server_name shop.localhost www.example.com;\n"));
        assert!(text.contains("        proxy_pass http://quarry_dynamic;\n"));
        assert_eq!(text.matches("server {").count(), 2);
    }

    #[test]
    fn reload_mode_writes_no_lua() {
        let dir = Path::new("/d/nginx");
        assert_eq!(render_modules(false), "");
        assert_eq!(render_http(dir, false), "");
        assert!(render_default_location(dir, false).contains("return 404"));
        assert!(render_http(dir, true).contains("listen unix:/d/nginx/control/table.sock;"));
        assert!(
            render_default_location(dir, true).contains("include /d/nginx/acme-challenges.conf;")
        );
    }
}
