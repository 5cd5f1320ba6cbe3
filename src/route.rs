//! Route: Quarry's own nginx instance and the vhosts it serves.
//!
//! `render_*` functions are pure and return nginx config as text (golden
//! tested). [`Router`] is the only code that writes nginx files or signals
//! nginx: it writes an app's vhost, runs `nginx -t`, restores the previous
//! file when the test fails, reloads gracefully, and waits until the new
//! config answers (a generation counter served by the default server) before
//! it reports success — so callers may retire old containers right after.
//! Where nginx has its lua module, routes go instead into a table inside
//! nginx that changes without a reload ([`dynamic`]); the nginx process
//! itself, started or adopted across daemon restarts, is in `adopt`; the
//! confirmed reload in `reload`; what can go wrong in [`RouteError`].
//! Everything lives under `<data>/nginx/`. Values reaching the config were
//! validated at the edge (app names, domains); addresses are typed.

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::store::write_atomic;
use crate::validate::Domain;

mod adopt;
pub mod dynamic;
mod error;
mod reload;
pub mod stream;
mod tls;
use adopt::Nginx;
pub use error::RouteError;
pub use tls::{Challenge, SiteTls, decorate};

/// The routes of one web node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRoute {
    pub node: String,
    /// Host names: a [`Domain`] is safe in `server_name` by construction.
    pub domains: Vec<Domain>,
    /// Every container of the node: `address:port`.
    pub upstreams: Vec<SocketAddr>,
}

/// nginx.conf: the instance's main config.
pub fn render_main(dir: &Path, listen: SocketAddr) -> String {
    let d = dir.display();
    format!(
        "# Written by quarry serve at every start; edits are overwritten.\n\
include {d}/lua-modules.conf;\n\
worker_processes auto;\n\
pid {d}/nginx.pid;\n\
error_log {d}/error.log warn;\n\
daemon off;\n\
include {d}/modules.conf;\n\
events {{ worker_connections 4096; }}\n\
include {d}/stream.conf;\n\
http {{\n\
    access_log {d}/access.log;\n\
    client_body_temp_path {d}/tmp/body;\n\
    proxy_temp_path {d}/tmp/proxy;\n\
    fastcgi_temp_path {d}/tmp/fastcgi;\n\
    uwsgi_temp_path {d}/tmp/uwsgi;\n\
    scgi_temp_path {d}/tmp/scgi;\n\
    server_names_hash_bucket_size 128;\n\
    server_names_hash_max_size 65536;\n\
    client_max_body_size 100m;\n\
    server_tokens off;\n\
    map $http_upgrade $quarry_connection {{ default upgrade; '' ''; }}\n\
    server {{\n\
        listen {listen} default_server;\n\
        server_name _;\n\
        include {d}/default.conf;\n\
    }}\n\
    server {{\n\
        listen {listen};\n\
        server_name quarry.invalid;\n\
        include {d}/generation.conf;\n\
    }}\n\
    include {d}/dynamic.conf;\n\
    include {d}/https.conf;\n\
    include {d}/sites/*.conf;\n\
}}\n"
    )
}

/// generation.conf: lets Quarry see which config the workers run.
pub fn render_generation(generation: u64) -> String {
    format!(
        "location = /.quarry/generation {{ default_type text/plain; return 200 \"{generation}\\n\"; }}\n"
    )
}

/// The nginx upstream of `app`'s web node `node`: `.` joins the parts, which
/// no app or node name can contain, so no app can squat another's upstream.
pub fn upstream_name(app: &str, node: &str) -> String {
    format!("quarry.{app}.{node}")
}

/// What every proxying location says after its `proxy_pass`, in both
/// modes: headers the app sees, retries, the connect timeout.
const PROXY_LINES: [&str; 10] = [
    "proxy_http_version 1.1;",
    "proxy_set_header Host $host;",
    "proxy_set_header Upgrade $http_upgrade;",
    "proxy_set_header Connection $quarry_connection;",
    "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
    "proxy_set_header X-Forwarded-Proto $scheme;",
    "proxy_set_header X-Forwarded-Host $host;",
    "proxy_set_header X-Request-Id $request_id;",
    "proxy_next_upstream error timeout http_502 http_503;",
    "proxy_connect_timeout 5s;",
];

/// sites/<app>.conf: one upstream and one server block per routed web node.
/// A node with no containers gets a 503 answer rather than a dead upstream.
pub fn render_app(app: &str, listen: SocketAddr, routes: &[NodeRoute]) -> String {
    let mut out = format!("# Routes of app {app}, written by quarry; edits are overwritten.\n");
    for r in routes {
        if r.domains.is_empty() {
            continue;
        }
        let upstream = upstream_name(app, &r.node);
        if !r.upstreams.is_empty() {
            let _ = writeln!(out, "upstream {upstream} {{");
            for a in &r.upstreams {
                let _ = writeln!(out, "    server {a} max_fails=1 fail_timeout=2s;");
            }
            let _ = writeln!(out, "    keepalive 16;\n}}");
        }
        let _ = writeln!(out, "server {{");
        let _ = writeln!(out, "    listen {listen};");
        let _ = writeln!(out, "    server_name {};", r.domains.join(" "));
        let _ = writeln!(out, "    location / {{");
        if r.upstreams.is_empty() {
            let _ = writeln!(
                out,
                "        default_type text/plain;\n        return 503 \"quarry: {app} has no running {} containers\\n\";",
                r.node
            );
        } else {
            let _ = writeln!(out, "        proxy_pass http://{upstream};");
            for line in PROXY_LINES {
                let _ = writeln!(out, "        {line}");
            }
        }
        let _ = writeln!(out, "    }}\n}}");
    }
    out
}

/// Quarry's nginx, supervised.
pub struct Router {
    dir: PathBuf,
    listen: SocketAddr,
    /// The TLS listener of every app with a certificate.
    https: Option<SocketAddr>,
    /// The stream front on `https` (TLS-ALPN-01), when on.
    front: Option<stream::Front>,
    nginx: PathBuf,
    generation: AtomicU64,
    /// Each routed app's last routes, to render it again when its TLS changes.
    routes: std::sync::Mutex<std::collections::HashMap<String, Vec<NodeRoute>>>,
    /// Apps served over HTTPS.
    tls: std::sync::Mutex<std::collections::HashMap<String, SiteTls>>,
    /// One config change at a time: test and reload see a consistent tree.
    lock: Mutex<()>,
    child: Mutex<Option<Nginx>>,
    /// Routes live in nginx's dynamic table ([`dynamic`]) rather than in
    /// one reloaded vhost per app.
    lua: bool,
}

impl Router {
    /// Write the main config and start nginx listening on `listen` (and
    /// `https` for TLS, through `front` when given) — or adopt the nginx an
    /// earlier daemon of this data dir left running, reloading it onto this
    /// config.
    pub async fn start(
        data: &Path,
        listen: SocketAddr,
        https: Option<SocketAddr>,
        front: Option<stream::Front>,
        nginx: PathBuf,
    ) -> Result<Router, RouteError> {
        let dir = data.join("nginx");
        for sub in ["sites", "tmp", "lua", "table"] {
            fs::create_dir_all(dir.join(sub)).map_err(RouteError::dir(dir.join(sub)))?;
        }
        // The control socket is root's alone (nginx's workers inherit it).
        let control = dir.join("control");
        fs::create_dir_all(&control).map_err(RouteError::dir(&control))?;
        fs::set_permissions(
            &control,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .map_err(RouteError::dir(&control))?;
        // Leftovers of an interrupted change are not config.
        for sub in ["sites", "table"] {
            if let Ok(entries) = fs::read_dir(dir.join(sub)) {
                for e in entries.flatten() {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    if name.starts_with(".tmp-") || name.ends_with(".conf.bak") {
                        let _ = fs::remove_file(e.path());
                    }
                }
            }
        }
        let adopted = adopt::running_master(&dir);
        // The served generation only grows, also across an adoption.
        let mut router = Router {
            dir,
            listen,
            https,
            front: front.filter(|_| https.is_some()),
            routes: Default::default(),
            tls: Default::default(),
            nginx,
            generation: AtomicU64::new(0),
            lock: Mutex::new(()),
            child: Mutex::new(None),
            lua: dynamic::available(),
        };
        let served = match adopted {
            Some(_) => router.served_generation().await.unwrap_or(0),
            None => 0,
        };
        router.generation.store(served + 1, Ordering::SeqCst);
        if let Err(e) = router.write_main().await {
            if !router.lua {
                return Err(e);
            }
            warn!("nginx's lua module does not load ({e}); routes change by reload");
            router.lua = false;
            router.write_main().await?;
        }
        let mut started = false;
        if let Some(pid) = adopted {
            *router.child.lock().await = Some(Nginx::Adopted(pid));
            match router.reload().await {
                Ok(()) => {
                    info!(pid, "adopted the running nginx of this data dir");
                    started = true;
                }
                Err(e) => {
                    warn!(
                        pid,
                        "cannot adopt the running nginx ({e}); starting another"
                    );
                    *router.child.lock().await = None;
                    router.stop_stale().await;
                }
            }
        }
        if !started {
            let generation = router.generation.load(Ordering::SeqCst);
            let child = router.spawn()?;
            *router.child.lock().await = Some(Nginx::Child(child));
            router
                .wait_generation(generation, Duration::from_secs(15))
                .await?;
            info!(listen = %listen, lua = router.lua, "nginx started");
        }
        router.load_table().await?;
        Ok(router)
    }

    /// nginx.conf and what it includes, for this mode; `nginx -t` on them.
    async fn write_main(&self) -> Result<(), RouteError> {
        let dir = &self.dir;
        let generation = self.generation.load(Ordering::SeqCst);
        let files = [
            ("generation.conf", render_generation(generation)),
            ("lua-modules.conf", dynamic::render_modules(self.lua)),
            ("dynamic.conf", dynamic::render_http(dir, self.lua)),
            (
                "default.conf",
                dynamic::render_default_location(dir, self.lua),
            ),
            ("lua/quarry.lua", dynamic::LUA.to_string()),
            ("nginx.conf", render_main(dir, self.listen)),
        ];
        for (name, text) in files {
            write_atomic(&dir.join(name), text.as_bytes(), 0o644).map_err(RouteError::Store)?;
        }
        Router::write_tls_files(dir, self.https, self.front.as_ref())?;
        // A vhost of the other mode names upstreams this mode has not got;
        // the start's reconcile routes every live app again.
        let foreign = if self.lua {
            "\nupstream quarry."
        } else {
            "quarry_dynamic"
        };
        if let Ok(entries) = fs::read_dir(dir.join("sites")) {
            for e in entries.flatten() {
                if fs::read_to_string(e.path()).is_ok_and(|t| t.contains(foreign)) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        self.test().await
    }

    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// `nginx -t` on the config as it is on disk.
    async fn test(&self) -> Result<(), RouteError> {
        let out = Command::new(&self.nginx)
            .arg("-t")
            .arg("-q")
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .arg("-e")
            .arg(self.dir.join("error.log"))
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| RouteError::RunTest {
                nginx: self.nginx.clone(),
                source,
            })?;
        if out.status.success() {
            Ok(())
        } else {
            let text = String::from_utf8_lossy(&out.stderr);
            let reason = text
                .lines()
                .find(|l| l.contains("[emerg]") || l.contains("[error]"))
                .unwrap_or(text.trim())
                .to_string();
            Err(RouteError::Rejected(reason))
        }
    }

    fn site_path(&self, app: &str) -> PathBuf {
        self.dir.join("sites").join(format!("{app}.conf"))
    }

    /// Route `app`'s web nodes; on any failure the previous routes stay.
    pub async fn set_app(&self, app: &str, routes: &[NodeRoute]) -> Result<(), RouteError> {
        self.routes
            .lock()
            .expect("routes")
            .insert(app.to_string(), routes.to_vec());
        if self.lua {
            return self.route_dynamic(app, Some(routes)).await;
        }
        let text = self.render_site(app, routes);
        self.apply(app, Some(text)).await
    }

    /// Stop routing `app`.
    pub async fn remove_app(&self, app: &str) -> Result<(), RouteError> {
        self.routes.lock().expect("routes").remove(app);
        if self.lua {
            return self.route_dynamic(app, None).await;
        }
        self.apply(app, None).await
    }

    /// Whether routes change through the dynamic table (no reload).
    pub fn dynamic(&self) -> bool {
        self.lua
    }

    async fn apply(&self, app: &str, text: Option<String>) -> Result<(), RouteError> {
        let _guard = self.lock.lock().await;
        let path = self.site_path(app);
        let previous = fs::read(&path).ok();
        if previous.as_deref() == text.as_deref().map(str::as_bytes) {
            return Ok(());
        }
        let written = match &text {
            Some(t) => write_atomic(&path, t.as_bytes(), 0o644),
            None => fs::remove_file(&path).or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            }),
        };
        written.map_err(RouteError::write(&path))?;
        let restore = || match &previous {
            Some(p) => {
                let _ = write_atomic(&path, p, 0o644);
            }
            None => {
                let _ = fs::remove_file(&path);
            }
        };
        if let Err(e) = self.test().await {
            restore();
            return Err(e);
        }
        if let Err(e) = self.reload().await {
            restore();
            let _ = self.reload().await;
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
