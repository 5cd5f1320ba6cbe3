//! The stream front of Quarry's nginx: with TLS-ALPN-01 on, the HTTPS port
//! is held by nginx's stream module, which reads each ClientHello
//! (`ssl_preread`, no decryption) and sends the ones offering `acme-tls/1`
//! to the daemon's challenge responder and every other one to the http
//! module's TLS servers, which then listen on a unix socket. Both get the
//! client's address in a PROXY protocol header, so `$remote_addr` and
//! `X-Forwarded-For` stay the client's.
//!
//! The `render_*` functions and [`stream_module`] are pure (golden tested);
//! [`detect`] runs `nginx -V` and looks for the module file. Without a
//! front, `modules.conf` and `stream.conf` are empty and the TLS servers
//! listen on the HTTPS address themselves, as before.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Loads the stream module (included by nginx.conf before `events`).
pub const MODULES: &str = "modules.conf";
/// The `stream {}` block (included by nginx.conf at the top level).
pub const STREAM: &str = "stream.conf";
/// Where the http module's TLS servers listen behind the front.
pub const SOCKET: &str = "https.sock";
/// One line per connection to the front: SNI, ALPN list, where it went.
pub const LOG: &str = "stream.log";

/// The stream front, when TLS-ALPN-01 is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Front {
    /// The daemon's TLS-ALPN-01 responder (loopback).
    pub alpn: SocketAddr,
    /// The stream module to load; `None` when nginx has it built in.
    pub module: Option<PathBuf>,
}

/// Where the vhosts' TLS servers listen: on the HTTPS address itself, or
/// on the unix socket behind the front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsAt {
    /// The address clients connect to (redirects name its port).
    pub public: SocketAddr,
    /// The socket behind the stream front, when there is one.
    pub behind_front: Option<PathBuf>,
}

impl HttpsAt {
    /// What follows `listen` in a TLS server block.
    pub fn listen(&self) -> String {
        match &self.behind_front {
            None => format!("{} ssl http2", self.public),
            Some(sock) => format!("unix:{} ssl http2 proxy_protocol", sock.display()),
        }
    }
}

/// modules.conf: the `load_module` line of a dynamic stream module.
pub fn render_modules(front: Option<&Front>) -> String {
    match front.and_then(|f| f.module.as_ref()) {
        Some(m) => format!("load_module {};\n", m.display()),
        None => String::new(),
    }
}

/// stream.conf: the front on `https`, splitting by ALPN; its socket and
/// log are in `dir`.
pub fn render_stream(front: Option<&Front>, https: SocketAddr, dir: &Path) -> String {
    let Some(f) = front else {
        return String::new();
    };
    let socket = dir.join(SOCKET);
    let mut out = String::new();
    let _ = writeln!(out, "stream {{");
    let _ = writeln!(
        out,
        "    log_format quarry_stream '$remote_addr [$time_local] $ssl_preread_server_name \"$ssl_preread_alpn_protocols\" $upstream_addr $status $session_time';"
    );
    let _ = writeln!(
        out,
        "    access_log {} quarry_stream;",
        dir.join(LOG).display()
    );
    // A validator offers only acme-tls/1 (RFC 8737 §3); match it anywhere
    // in the list all the same.
    let _ = writeln!(
        out,
        "    map $ssl_preread_alpn_protocols $quarry_tls_backend {{"
    );
    let _ = writeln!(out, "        \"~(^|,)acme-tls/1(,|$)\" {};", f.alpn);
    let _ = writeln!(out, "        default unix:{};", socket.display());
    let _ = writeln!(out, "    }}");
    let _ = writeln!(out, "    server {{");
    let _ = writeln!(out, "        listen {https};");
    let _ = writeln!(out, "        ssl_preread on;");
    let _ = writeln!(out, "        preread_timeout 10s;");
    let _ = writeln!(out, "        proxy_pass $quarry_tls_backend;");
    let _ = writeln!(out, "        proxy_protocol on;");
    let _ = writeln!(out, "        proxy_connect_timeout 5s;");
    let _ = writeln!(out, "    }}");
    let _ = writeln!(out, "}}");
    out
}

/// The http-level lines that make the PROXY header's address the client's
/// (`$remote_addr`) on connections from the front.
pub fn render_realip(https: &HttpsAt) -> String {
    match https.behind_front {
        Some(_) => "set_real_ip_from unix:;\nreal_ip_header proxy_protocol;\n".into(),
        None => String::new(),
    }
}

/// A vhost written by an earlier run, with its TLS `listen` lines moved to
/// where they are now: a front switched on (or off) since must not leave
/// an old vhost binding the HTTPS address beside it.
pub fn relisten(site: &str, now: &HttpsAt) -> String {
    let mut out = String::with_capacity(site.len() + 64);
    for line in site.lines() {
        if line.starts_with("    listen ") && line.ends_with(" ssl http2;")
            || line.starts_with("    listen unix:") && line.ends_with(" ssl http2 proxy_protocol;")
        {
            let _ = writeln!(out, "    listen {};", now.listen());
        } else {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// Why the front cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("nginx was built without the stream module (--with-stream)")]
    NotBuilt,
    #[error("nginx was built without ssl_preread (--with-stream_ssl_preread_module)")]
    NoPreread,
    #[error(
        "nginx's stream module is not installed ({0} is missing; Debian: apt-get install libnginx-mod-stream)"
    )]
    NotInstalled(String),
    #[error("cannot run {nginx} -V: {source}")]
    Run {
        nginx: String,
        source: std::io::Error,
    },
}

/// Which stream module `nginx -V` (its stderr, `configure arguments`)
/// says nginx needs: built in (`None`), or a file that `exists`.
pub fn stream_module(
    nginx_v: &str,
    exists: impl Fn(&Path) -> bool,
) -> Result<Option<PathBuf>, StreamError> {
    let args: Vec<&str> = nginx_v.split_whitespace().collect();
    let built_in = args.contains(&"--with-stream");
    if !built_in && !args.contains(&"--with-stream=dynamic") {
        return Err(StreamError::NotBuilt);
    }
    if !args.contains(&"--with-stream_ssl_preread_module") {
        return Err(StreamError::NoPreread);
    }
    if built_in {
        return Ok(None);
    }
    let dir = args
        .iter()
        .find_map(|a| a.strip_prefix("--modules-path="))
        .unwrap_or("/usr/lib/nginx/modules");
    let file = Path::new(dir).join("ngx_stream_module.so");
    if exists(&file) {
        Ok(Some(file))
    } else {
        Err(StreamError::NotInstalled(file.display().to_string()))
    }
}

/// The stream module of `nginx` for a front answering TLS-ALPN-01 at
/// `alpn`.
pub fn detect(nginx: &Path, alpn: SocketAddr) -> Result<Front, StreamError> {
    let out = std::process::Command::new(nginx)
        .arg("-V")
        .output()
        .map_err(|source| StreamError::Run {
            nginx: nginx.display().to_string(),
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stderr);
    let module = stream_module(&text, Path::exists)?;
    Ok(Front { alpn, module })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn front() -> Front {
        Front {
            alpn: "127.0.0.1:40123".parse().unwrap(),
            module: Some("/usr/lib/nginx/modules/ngx_stream_module.so".into()),
        }
    }

    #[test]
    fn stream_front_golden() {
        let https: SocketAddr = "0.0.0.0:443".parse().unwrap();
        let text = render_stream(Some(&front()), https, Path::new("/d/nginx"));
        assert_eq!(
            text,
            "\
stream {
    log_format quarry_stream '$remote_addr [$time_local] $ssl_preread_server_name \"$ssl_preread_alpn_protocols\" $upstream_addr $status $session_time';
    access_log /d/nginx/stream.log quarry_stream;
    map $ssl_preread_alpn_protocols $quarry_tls_backend {
        \"~(^|,)acme-tls/1(,|$)\" 127.0.0.1:40123;
        default unix:/d/nginx/https.sock;
    }
    server {
        listen 0.0.0.0:443;
        ssl_preread on;
        preread_timeout 10s;
        proxy_pass $quarry_tls_backend;
        proxy_protocol on;
        proxy_connect_timeout 5s;
    }
}
"
        );
        assert_eq!(
            render_modules(Some(&front())),
            "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n"
        );
    }

    #[test]
    fn no_front_renders_nothing_and_listens_directly() {
        let https: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        assert_eq!(render_stream(None, https, Path::new("/s")), "");
        assert_eq!(render_modules(None), "");
        let direct = HttpsAt {
            public: https,
            behind_front: None,
        };
        assert_eq!(direct.listen(), "127.0.0.1:8443 ssl http2");
        assert_eq!(render_realip(&direct), "");
        let behind = HttpsAt {
            public: https,
            behind_front: Some("/d/nginx/https.sock".into()),
        };
        assert_eq!(
            behind.listen(),
            "unix:/d/nginx/https.sock ssl http2 proxy_protocol"
        );
        assert_eq!(
            render_realip(&behind),
            "set_real_ip_from unix:;\nreal_ip_header proxy_protocol;\n"
        );
    }

    #[test]
    fn old_vhosts_move_their_tls_listen_lines() {
        let direct = "server {\n    listen 127.0.0.1:8080;\n    listen 127.0.0.1:8443 ssl http2;\n    server_name a.example.com;\n}\n";
        let behind = HttpsAt {
            public: "127.0.0.1:8443".parse().unwrap(),
            behind_front: Some("/d/nginx/https.sock".into()),
        };
        let moved = relisten(direct, &behind);
        assert_eq!(
            moved,
            "server {\n    listen 127.0.0.1:8080;\n    listen unix:/d/nginx/https.sock ssl http2 proxy_protocol;\n    server_name a.example.com;\n}\n"
        );
        let back = HttpsAt {
            public: "127.0.0.1:8443".parse().unwrap(),
            behind_front: None,
        };
        assert_eq!(relisten(&moved, &back), direct);
        assert_eq!(relisten(direct, &back), direct);
    }

    #[test]
    fn the_stream_module_is_found_from_nginx_v() {
        let debian = "nginx version: nginx/1.22.1\nconfigure arguments: --with-cc-opt='-g -O2' --prefix=/usr/share/nginx --modules-path=/usr/lib/nginx/modules --with-stream_ssl_module --with-stream_ssl_preread_module --with-stream=dynamic --with-stream_geoip_module=dynamic";
        assert_eq!(
            stream_module(debian, |_| true).unwrap(),
            Some(PathBuf::from("/usr/lib/nginx/modules/ngx_stream_module.so"))
        );
        assert_eq!(
            stream_module(debian, |_| false).unwrap_err().to_string(),
            "nginx's stream module is not installed (/usr/lib/nginx/modules/ngx_stream_module.so is missing; Debian: apt-get install libnginx-mod-stream)"
        );
        assert_eq!(
            stream_module(
                "configure arguments: --with-stream --with-stream_ssl_preread_module",
                |_| false
            )
            .unwrap(),
            None
        );
        assert_eq!(
            stream_module("configure arguments: --with-http_ssl_module", |_| true)
                .unwrap_err()
                .to_string(),
            "nginx was built without the stream module (--with-stream)"
        );
        assert_eq!(
            stream_module("configure arguments: --with-stream=dynamic", |_| true)
                .unwrap_err()
                .to_string(),
            "nginx was built without ssl_preread (--with-stream_ssl_preread_module)"
        );
    }
}
