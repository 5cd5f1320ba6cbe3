//! The TLS side of Quarry's nginx: HTTPS server lines and HTTP→HTTPS
//! redirects added to an app's vhost, the ACME HTTP-01 answers, and the
//! default HTTPS server that refuses names no app has a certificate for.
//!
//! [`decorate`] is pure (golden tested): it takes the text [`render_app`]
//! made and adds, to every server block, the ACME challenge include and —
//! for an app with a certificate — the `listen … ssl` lines, the optional
//! HSTS header and the redirect of the names the certificate covers. Names
//! it does not cover keep plain HTTP, so a domain added later goes on
//! answering while its certificate is issued. The [`Router`] methods here
//! write only files under `<data>/nginx/`, through the same test-and-reload
//! path as the vhosts.
//!
//! [`render_app`]: super::render_app

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::stream::{self, Front, HttpsAt};
use super::{NodeRoute, RouteError, Router, render_app};
use crate::store::write_atomic;

/// Where the ACME HTTP-01 answers live (included in every app's servers).
pub const CHALLENGES: &str = "acme-challenges.conf";
/// The default HTTPS server (included by nginx.conf).
pub const HTTPS_DEFAULT: &str = "https.conf";

/// How one app is served over HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteTls {
    /// Certificate chain and key (PEM), read by the nginx master (root).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The names the certificate covers.
    pub domains: Vec<String>,
    /// Answer HTTP on the covered names with a 308 to HTTPS.
    pub redirect: bool,
    /// Send `Strict-Transport-Security` over HTTPS.
    pub hsts: bool,
}

/// One HTTP-01 answer: the token in the URL and the key authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub token: String,
    pub key_authorization: String,
}

/// nginx variables cannot hold '-'; app names hold no '_', so this is 1:1.
fn ident(app: &str) -> String {
    app.replace('-', "_")
}

/// The vhost of `app` with the ACME include and, with `tls`, HTTPS.
pub fn decorate(
    text: &str,
    dir: &Path,
    app: &str,
    http: SocketAddr,
    https: Option<&HttpsAt>,
    tls: Option<&SiteTls>,
) -> String {
    let tls = tls.zip(https);
    let id = ident(app);
    let listen_line = format!("    listen {http};");
    let mut out = String::with_capacity(text.len() + 512);
    let mut lines = text.lines();
    if let Some(first) = lines.next() {
        let _ = writeln!(out, "{first}");
    }
    if let Some((t, _)) = tls {
        let _ = writeln!(out, "map \"$scheme:$host\" $quarry_redirect_{id} {{");
        let _ = writeln!(out, "    default 0;");
        if t.redirect {
            for d in &t.domains {
                let _ = writeln!(out, "    \"http:{d}\" 1;");
            }
        }
        let _ = writeln!(out, "}}");
        let hsts = if t.hsts {
            "\"max-age=31536000\""
        } else {
            "\"\""
        };
        let _ = writeln!(
            out,
            "map $scheme $quarry_hsts_{id} {{ https {hsts}; default \"\"; }}"
        );
    }
    for line in lines {
        let _ = writeln!(out, "{line}");
        if line == listen_line {
            if let Some((t, https)) = tls {
                let _ = writeln!(out, "    listen {};", https.listen());
                let _ = writeln!(out, "    ssl_certificate {};", t.cert.display());
                let _ = writeln!(out, "    ssl_certificate_key {};", t.key.display());
                let _ = writeln!(
                    out,
                    "    add_header Strict-Transport-Security $quarry_hsts_{id} always;"
                );
            }
            let _ = writeln!(out, "    include {};", dir.join(CHALLENGES).display());
        } else if line == "    location / {"
            && let Some((_, https)) = tls
        {
            let port = match https.public.port() {
                443 => String::new(),
                p => format!(":{p}"),
            };
            let _ = writeln!(
                out,
                "        if ($quarry_redirect_{id}) {{ return 308 https://$host{port}$request_uri; }}"
            );
        }
    }
    out
}

/// acme-challenges.conf: the pending HTTP-01 answers; any other token 404s
/// rather than reaching the app.
pub fn render_challenges(challenges: &[Challenge]) -> String {
    let mut out = String::from(
        "location ^~ /.well-known/acme-challenge/ { default_type text/plain; return 404; }\n",
    );
    for c in challenges {
        debug_assert!(is_token(&c.token) && is_token_or_dot(&c.key_authorization));
        let _ = writeln!(
            out,
            "location = /.well-known/acme-challenge/{} {{ default_type text/plain; return 200 \"{}\"; }}",
            c.token, c.key_authorization
        );
    }
    out
}

/// https.conf: names with no certificate get no handshake at all.
pub fn render_https_default(https: Option<&HttpsAt>) -> String {
    match https {
        Some(a) => format!(
            "{}server {{\n    listen {} default_server;\n    server_name _;\n    ssl_reject_handshake on;\n}}\n",
            stream::render_realip(a),
            a.listen()
        ),
        None => String::new(),
    }
}

/// base64url, as ACME tokens are (RFC 8555 §8.3); nothing nginx would parse.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_token_or_dot(s: &str) -> bool {
    s.split('.').all(is_token)
}

impl Router {
    /// The HTTPS listener, when there is one.
    pub fn https(&self) -> Option<SocketAddr> {
        self.https
    }

    /// Where the TLS servers listen (behind the stream front when it is on).
    pub(super) fn https_at(&self) -> Option<HttpsAt> {
        https_at(&self.dir, self.https, self.front.as_ref())
    }

    /// Render `app`'s vhost from its routes and its TLS settings.
    pub(super) fn render_site(&self, app: &str, routes: &[NodeRoute]) -> String {
        let tls = self.tls.lock().expect("tls map").get(app).cloned();
        let base = if self.lua {
            super::dynamic::render_site(app, self.listen, routes)
        } else {
            render_app(app, self.listen, routes)
        };
        decorate(
            &base,
            &self.dir,
            app,
            self.listen,
            self.https_at().as_ref(),
            tls.as_ref(),
        )
    }

    /// Serve `app` over HTTPS with `tls` (or stop, with `None`). Takes effect
    /// at once when the app is routed, else at its next route; on failure
    /// nginx keeps the previous config and the previous setting stays.
    pub async fn set_tls(&self, app: &str, tls: Option<SiteTls>) -> Result<(), RouteError> {
        if tls.is_some() && self.https.is_none() {
            return Err(RouteError::NoHttps);
        }
        let previous = {
            let mut map = self.tls.lock().expect("tls map");
            match &tls {
                Some(t) => map.insert(app.to_string(), t.clone()),
                None => map.remove(app),
            }
        };
        let routes = self.routes.lock().expect("routes").get(app).cloned();
        let Some(routes) = routes else {
            return Ok(());
        };
        // In lua mode a plain-HTTP app needs no vhost (the table routes it).
        let text = (!self.lua || tls.is_some()).then(|| self.render_site(app, &routes));
        if let Err(e) = self.apply(app, text).await {
            let mut map = self.tls.lock().expect("tls map");
            match previous {
                Some(p) => map.insert(app.to_string(), p),
                None => map.remove(app),
            };
            return Err(e);
        }
        Ok(())
    }

    /// The TLS setting nginx has for `app`.
    pub fn tls_of(&self, app: &str) -> Option<SiteTls> {
        self.tls.lock().expect("tls map").get(app).cloned()
    }

    /// The domains nginx routes to `app` (empty when it is not routed).
    pub fn routed_domains(&self, app: &str) -> Vec<String> {
        let routes = self.routes.lock().expect("routes");
        let mut out: Vec<String> = routes
            .get(app)
            .into_iter()
            .flatten()
            .flat_map(|r| r.domains.iter().map(|d| d.to_string()))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Answer these HTTP-01 challenges (replacing the previous set); returns
    /// once nginx serves them.
    pub async fn set_challenges(&self, challenges: &[Challenge]) -> Result<(), RouteError> {
        if let Some(bad) = challenges
            .iter()
            .find(|c| !is_token(&c.token) || !is_token_or_dot(&c.key_authorization))
        {
            return Err(RouteError::BadToken(
                bad.token.chars().take(80).collect::<String>(),
            ));
        }
        let _guard = self.lock.lock().await;
        let path = self.dir.join(CHALLENGES);
        write_atomic(&path, render_challenges(challenges).as_bytes(), 0o644)
            .map_err(RouteError::write(&path))?;
        self.test().await?;
        self.reload().await
    }

    /// Write the TLS files nginx.conf and the vhosts include.
    pub(super) fn write_tls_files(
        dir: &Path,
        https: Option<SocketAddr>,
        front: Option<&Front>,
    ) -> Result<(), RouteError> {
        // A front needs an HTTPS address to hold.
        let front = front.filter(|_| https.is_some());
        let at = https_at(dir, https, front);
        let write = |name: &str, text: String| {
            write_atomic(&dir.join(name), text.as_bytes(), 0o644)
                .map_err(RouteError::write(dir.join(name)))
        };
        write(stream::MODULES, stream::render_modules(front))?;
        write(
            stream::STREAM,
            match https {
                Some(a) => stream::render_stream(front, a, dir),
                None => String::new(),
            },
        )?;
        write(HTTPS_DEFAULT, render_https_default(at.as_ref()))?;
        if let Some(at) = &at
            && let Ok(entries) = std::fs::read_dir(dir.join("sites"))
        {
            for e in entries.flatten() {
                let path = e.path();
                let Ok(old) = std::fs::read_to_string(&path) else {
                    continue;
                };
                let new = stream::relisten(&old, at);
                if new != old {
                    write_atomic(&path, new.as_bytes(), 0o644).map_err(RouteError::write(&path))?;
                }
            }
        }
        write_atomic(
            &dir.join(CHALLENGES),
            render_challenges(&[]).as_bytes(),
            0o644,
        )
        .map_err(RouteError::Store)
    }
}

fn https_at(dir: &Path, https: Option<SocketAddr>, front: Option<&Front>) -> Option<HttpsAt> {
    https.map(|public| HttpsAt {
        public,
        behind_front: front.map(|_| dir.join(stream::SOCKET)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(a: SocketAddr) -> HttpsAt {
        HttpsAt {
            public: a,
            behind_front: None,
        }
    }

    fn route() -> Vec<NodeRoute> {
        vec![NodeRoute {
            node: "web".into(),
            domains: vec!["shop.example.com".into(), "new.example.com".into()],
            upstreams: vec!["127.0.0.1:49153".parse().unwrap()],
        }]
    }

    #[test]
    fn plain_vhost_gets_only_the_acme_include() {
        let http: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let base = render_app("shop", http, &route());
        let text = decorate(&base, Path::new("/d/nginx"), "shop", http, None, None);
        let want = base.replace(
            "    listen 127.0.0.1:8080;\n",
            "    listen 127.0.0.1:8080;\n    include /d/nginx/acme-challenges.conf;\n",
        );
        assert_eq!(text, want);
    }

    #[test]
    fn tls_vhost_golden() {
        let http: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let https: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let tls = SiteTls {
            cert: "/d/tls/my-shop/cert-01.pem".into(),
            key: "/d/tls/my-shop/key-01.pem".into(),
            domains: vec!["shop.example.com".into()],
            redirect: true,
            hsts: true,
        };
        let base = render_app("my-shop", http, &route());
        let text = decorate(
            &base,
            Path::new("/d/nginx"),
            "my-shop",
            http,
            Some(&direct(https)),
            Some(&tls),
        );
        let head = "\
# Routes of app my-shop, written by quarry; edits are overwritten.
map \"$scheme:$host\" $quarry_redirect_my_shop {
    default 0;
    \"http:shop.example.com\" 1;
}
map $scheme $quarry_hsts_my_shop { https \"max-age=31536000\"; default \"\"; }
";
        assert!(text.starts_with(head), "{text}");
        let server = "\
    listen 127.0.0.1:8080;
    listen 127.0.0.1:8443 ssl http2;
    ssl_certificate /d/tls/my-shop/cert-01.pem;
    ssl_certificate_key /d/tls/my-shop/key-01.pem;
    add_header Strict-Transport-Security $quarry_hsts_my_shop always;
    include /d/nginx/acme-challenges.conf;
    server_name shop.example.com new.example.com;
    location / {
        if ($quarry_redirect_my_shop) { return 308 https://$host:8443$request_uri; }
";
        assert!(text.contains(server), "{text}");
        // Everything render_app wrote is still there, in order.
        let head_lines = head.lines().count();
        let kept: Vec<&str> = text
            .lines()
            .skip(head_lines)
            .filter(|l| !server.contains(l) || base.contains(l))
            .collect();
        let mut want: Vec<&str> = base.lines().collect();
        want.remove(0);
        assert_eq!(kept, want);
    }

    #[test]
    fn no_redirect_and_no_hsts_when_switched_off() {
        let http: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let https: SocketAddr = "0.0.0.0:443".parse().unwrap();
        let tls = SiteTls {
            cert: "/c".into(),
            key: "/k".into(),
            domains: vec!["shop.example.com".into()],
            redirect: false,
            hsts: false,
        };
        let base = render_app("shop", http, &route());
        let text = decorate(
            &base,
            Path::new("/n"),
            "shop",
            http,
            Some(&direct(https)),
            Some(&tls),
        );
        assert!(!text.contains("\"http:shop.example.com\" 1;"));
        assert!(text.contains("map $scheme $quarry_hsts_shop { https \"\"; default \"\"; }"));
        assert!(text.contains("return 308 https://$host$request_uri;"));
    }

    #[test]
    fn behind_the_front_tls_servers_listen_on_the_socket_with_proxy_protocol() {
        let http: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let at = HttpsAt {
            public: "127.0.0.1:8443".parse().unwrap(),
            behind_front: Some("/d/nginx/https.sock".into()),
        };
        let tls = SiteTls {
            cert: "/c".into(),
            key: "/k".into(),
            domains: vec!["shop.example.com".into()],
            redirect: true,
            hsts: false,
        };
        let base = render_app("shop", http, &route());
        let text = decorate(
            &base,
            Path::new("/d/nginx"),
            "shop",
            http,
            Some(&at),
            Some(&tls),
        );
        assert!(
            text.contains(
                "    listen 127.0.0.1:8080;\n    listen unix:/d/nginx/https.sock ssl http2 proxy_protocol;\n"
            ),
            "{text}"
        );
        // Redirects name the public port, not the socket.
        assert!(text.contains("return 308 https://$host:8443$request_uri;"));
        assert_eq!(
            render_https_default(Some(&at)),
            "set_real_ip_from unix:;\nreal_ip_header proxy_protocol;\nserver {\n    listen unix:/d/nginx/https.sock ssl http2 proxy_protocol default_server;\n    server_name _;\n    ssl_reject_handshake on;\n}\n"
        );
    }

    #[test]
    fn challenges_golden() {
        let text = render_challenges(&[Challenge {
            token: "tok_1-A".into(),
            key_authorization: "tok_1-A.thumb".into(),
        }]);
        assert_eq!(
            text,
            "location ^~ /.well-known/acme-challenge/ { default_type text/plain; return 404; }\n\
location = /.well-known/acme-challenge/tok_1-A { default_type text/plain; return 200 \"tok_1-A.thumb\"; }\n"
        );
        assert!(!is_token("a\"; return 200 x"));
        assert!(!is_token_or_dot("a.b c"));
    }
}
