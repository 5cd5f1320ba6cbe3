//! HTTPS for apps: certificates from an ACME server (HTTP-01 through
//! Quarry's nginx, or TLS-ALPN-01 through [`alpn`] behind its stream front)
//! or given by the user, kept under `<data>/tls/`, served by
//! the router, renewed by [`renew`] before they expire.
//!
//! Layout (every file written atomically; keys and certificates 0600):
//!
//! ```text
//! tls/account.json                  ACME account key and URL, per directory
//! tls/apps/<app>/state.json         mode, current certificate, last failure
//! tls/apps/<app>/cert-<serial>.pem  chain, leaf first
//! tls/apps/<app>/key-<serial>.pem   its key
//! ```
//!
//! A new certificate gets new file names, so nginx swaps to it in one reload
//! and a refused config leaves the old pair in place. A failed issuance
//! changes nothing nginx serves: the app keeps its HTTP route and its
//! previous certificate. Certificates are only ever for names the router
//! routes to the app.

pub mod acme;
pub use crate::alpn;
pub mod cert;
pub use crate::config::tls as config;
pub mod renew;

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::config::Config;
use crate::daemon::Daemon;
use crate::route::SiteTls;
use crate::store::{now_rfc3339, read_json, write_atomic, write_json};
use cert::CertInfo;
use config::{ChallengeKind, TlsConfig};

/// Everything that can go wrong with a certificate, in one line.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0} has no routed domains yet: push it first")]
    NotRouted(String),
    #[error("quarry serve runs without an HTTPS listener (--https)")]
    NoHttps,
    /// config.yml could not be read.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// config.yml's tls block asks for what cannot be done now.
    #[error("{0}")]
    Setting(String),
    /// The tls-alpn-01 responder.
    #[error(transparent)]
    Alpn(#[from] crate::alpn::AlpnError),
    #[error("tls.acme.challenge: tls-alpn-01: {0}")]
    Stream(#[source] crate::route::stream::StreamError),
    #[error("the ACME server refused: {0}")]
    Acme(String),
    #[error("rate limited by the ACME server: {0}; quarry retries later")]
    RateLimited(String),
    #[error("validation of {domain} failed: {reason}")]
    Validation { domain: String, reason: String },
    #[error("bad certificate: {0}")]
    BadCert(String),
    #[error("bad key: {0}")]
    BadKey(String),
    #[error("the key does not belong to the certificate (their public keys differ)")]
    KeyMismatch,
    #[error("the certificate names {0}, which is not a domain of this app")]
    ForeignDomain(String),
    /// A file of the data dir (the error names it).
    #[error(transparent)]
    Store(#[from] std::io::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("nginx did not take the certificate: {0}")]
    Route(crate::route::RouteError),
}

/// Where an app's certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Issued and renewed by Quarry through ACME.
    Acme,
    /// Given with `certs:add`; never renewed by Quarry.
    Custom,
}

/// The certificate nginx serves for an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Current {
    pub info: CertInfo,
    pub cert_file: String,
    pub key_file: String,
    pub installed: String,
}

/// `tls/apps/<app>/state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppTls {
    pub mode: Mode,
    pub current: Option<Current>,
    /// Why the last issuance failed (cleared by a success).
    pub last_error: Option<String>,
    pub failures: u32,
    /// No automatic attempt before this (Unix seconds).
    pub retry_at: Option<i64>,
}

impl AppTls {
    fn new(mode: Mode) -> AppTls {
        AppTls {
            mode,
            current: None,
            last_error: None,
            failures: 0,
            retry_at: None,
        }
    }
}

/// One issuance at a time: the challenge file holds one order's answers.
static ISSUING: Mutex<()> = Mutex::const_new(());

pub fn tls_dir(d: &Daemon) -> PathBuf {
    d.store.root().join("tls")
}

fn app_dir(d: &Daemon, app: &str) -> PathBuf {
    tls_dir(d).join("apps").join(app)
}

pub use crate::clock::now_unix;

/// The app's TLS state; `None` when TLS is off for it.
pub fn state(d: &Daemon, app: &str) -> Result<Option<AppTls>, TlsError> {
    let path = app_dir(d, app).join("state.json");
    Ok(read_json(&path)?)
}

fn save(d: &Daemon, app: &str, s: &AppTls) -> Result<(), TlsError> {
    let path = app_dir(d, app).join("state.json");
    Ok(write_json(&path, s, 0o600)?)
}

/// config.yml's `tls:` section.
pub fn settings(d: &Daemon) -> Result<TlsConfig, TlsError> {
    Ok(Config::load(&d.store)?.tls)
}

fn site(d: &Daemon, app: &str, cur: &Current, cfg: &TlsConfig) -> SiteTls {
    let dir = app_dir(d, app);
    SiteTls {
        cert: dir.join(&cur.cert_file),
        key: dir.join(&cur.key_file),
        domains: cur.info.domains.clone(),
        redirect: cfg.redirect,
        hsts: cfg.hsts,
    }
}

/// At start, before nginx: with `tls.acme.challenge: tls-alpn-01` and an
/// HTTPS listener, the responder and the stream front that reaches it.
/// A config.yml that does not parse is left to the commands that read it.
pub async fn front_at_start(
    store: &crate::store::Store,
    https: Option<std::net::SocketAddr>,
    nginx: &std::path::Path,
) -> Result<Option<(alpn::Responder, crate::route::stream::Front)>, TlsError> {
    let cfg = match Config::load(store) {
        Ok(c) => c.tls,
        Err(e) => {
            tracing::warn!("{e}");
            return Ok(None);
        }
    };
    match (cfg.acme.challenge, https) {
        (ChallengeKind::Http01, _) => Ok(None),
        (ChallengeKind::TlsAlpn01, None) => {
            tracing::warn!("tls.acme.challenge: tls-alpn-01 needs an HTTPS listener (--https)");
            Ok(None)
        }
        (ChallengeKind::TlsAlpn01, Some(_)) => {
            let responder = alpn::Responder::start().await?;
            let front =
                crate::route::stream::detect(nginx, responder.addr()).map_err(TlsError::Stream)?;
            Ok(Some((responder, front)))
        }
    }
}

/// At start, before the routes are written: every app's certificate.
pub async fn load_all(d: &Daemon) {
    let cfg = settings(d).unwrap_or_default();
    for app in d.store.apps().unwrap_or_default() {
        match state(d, &app) {
            Ok(Some(AppTls {
                current: Some(cur), ..
            })) => {
                if let Err(e) = d
                    .router
                    .set_tls(&app, Some(site(d, &app, &cur, &cfg)))
                    .await
                {
                    tracing::warn!(app, "cannot serve HTTPS: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(app, "{e}"),
        }
    }
}

/// Turn ACME certificates on for `app` (state only; see [`issue`]).
pub fn enable(d: &Daemon, app: &str) -> Result<AppTls, TlsError> {
    if d.router.https().is_none() {
        return Err(TlsError::NoHttps);
    }
    let mut s = state(d, app)?.unwrap_or_else(|| AppTls::new(Mode::Acme));
    s.mode = Mode::Acme;
    s.retry_at = None;
    save(d, app, &s)?;
    Ok(s)
}

/// Issue a certificate for every domain routed to `app` and serve it. On
/// failure the state records why and when to try again; nginx is untouched.
pub async fn issue(d: &Daemon, app: &str) -> Result<CertInfo, TlsError> {
    let _one = ISSUING.lock().await;
    let cfg = settings(d)?;
    let domains = d.router.routed_domains(app);
    if domains.is_empty() {
        return Err(TlsError::NotRouted(app.to_string()));
    }
    let result = match solver(d, &cfg) {
        Ok(solver) => acme::issue(solver, &tls_dir(d), &cfg.acme, &domains).await,
        Err(e) => Err(e),
    };
    let result = match result {
        Ok(issued) => install(d, app, Mode::Acme, &issued.chain_pem, &issued.key_pem, &cfg).await,
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        let mut s = state(d, app)?.unwrap_or_else(|| AppTls::new(Mode::Acme));
        s.failures += 1;
        s.retry_at = Some(now_unix() + renew::backoff(s.failures).as_secs() as i64);
        s.last_error = Some(format!("{}: {e}", now_rfc3339()));
        save(d, app, &s)?;
    }
    result
}

/// Who answers `tls.acme.challenge`. TLS-ALPN-01 needs the stream front,
/// which `quarry serve` sets up at start from config.yml.
fn solver<'a>(d: &'a Daemon, cfg: &TlsConfig) -> Result<acme::Solver<'a>, TlsError> {
    match cfg.acme.challenge {
        ChallengeKind::Http01 => Ok(acme::Solver::Http01(&d.router)),
        ChallengeKind::TlsAlpn01 => d.alpn.as_ref().map(acme::Solver::TlsAlpn01).ok_or_else(|| {
            TlsError::Setting(
                "tls.acme.challenge: tls-alpn-01 was set after quarry serve started; restart it to put the stream front on the HTTPS port".into(),
            )
        }),
    }
}

/// Check and serve a user's certificate for `app`.
pub async fn add_custom(
    d: &Daemon,
    app: &str,
    chain_pem: &str,
    key_pem: &str,
) -> Result<CertInfo, TlsError> {
    if d.router.https().is_none() {
        return Err(TlsError::NoHttps);
    }
    let domains = d.router.routed_domains(app);
    if domains.is_empty() {
        return Err(TlsError::NotRouted(app.to_string()));
    }
    cert::check_custom(chain_pem, key_pem, &domains, now_unix())?;
    let cfg = settings(d)?;
    let _one = ISSUING.lock().await;
    install(d, app, Mode::Custom, chain_pem, key_pem, &cfg).await
}

/// Write the pair under new names, switch nginx to it, then drop the old.
async fn install(
    d: &Daemon,
    app: &str,
    mode: Mode,
    chain_pem: &str,
    key_pem: &str,
    cfg: &TlsConfig,
) -> Result<CertInfo, TlsError> {
    let info = cert::info(chain_pem)?;
    let dir = app_dir(d, app);
    let stamp = now_unix();
    let cur = Current {
        cert_file: format!("cert-{}-{stamp}.pem", info.serial),
        key_file: format!("key-{}-{stamp}.pem", info.serial),
        info: info.clone(),
        installed: now_rfc3339(),
    };
    let io = TlsError::Store;
    write_atomic(&dir.join(&cur.key_file), key_pem.as_bytes(), 0o600).map_err(io)?;
    write_atomic(&dir.join(&cur.cert_file), chain_pem.as_bytes(), 0o600).map_err(io)?;
    let previous = state(d, app)?;
    if let Err(e) = d.router.set_tls(app, Some(site(d, app, &cur, cfg))).await {
        let _ = fs::remove_file(dir.join(&cur.key_file));
        let _ = fs::remove_file(dir.join(&cur.cert_file));
        return Err(TlsError::Route(e));
    }
    let mut s = previous.clone().unwrap_or_else(|| AppTls::new(mode));
    s.mode = mode;
    s.current = Some(cur.clone());
    s.last_error = None;
    s.failures = 0;
    s.retry_at = None;
    save(d, app, &s)?;
    if let Some(old) = previous.and_then(|p| p.current) {
        let _ = fs::remove_file(dir.join(old.cert_file));
        let _ = fs::remove_file(dir.join(old.key_file));
    }
    Ok(info)
}

/// Stop serving `app` over HTTPS and forget its certificates.
pub async fn disable(d: &Daemon, app: &str) -> Result<(), TlsError> {
    let _one = ISSUING.lock().await;
    d.router.set_tls(app, None).await.map_err(TlsError::Route)?;
    let dir = app_dir(d, app);
    match fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(TlsError::Io { path: dir, source }),
    }
}

/// The names routed to `app` that its certificate does not cover.
pub fn uncovered(d: &Daemon, app: &str, s: &AppTls) -> Vec<String> {
    let names = s
        .current
        .as_ref()
        .map(|c| c.info.domains.clone())
        .unwrap_or_default();
    d.router
        .routed_domains(app)
        .into_iter()
        .filter(|x| !cert::covers(&names, x))
        .collect()
}

/// One word for `certs`: none, pending, valid, expiring, expired, failing.
pub fn describe(s: &AppTls, now: i64) -> &'static str {
    match (&s.current, &s.last_error) {
        (None, None) => "pending",
        (None, Some(_)) => "failing",
        (Some(c), _) if c.info.not_after_unix <= now => "expired",
        (Some(_), Some(_)) => "failing",
        (Some(c), None) if c.info.not_after_unix - now <= renew::RENEW_BEFORE.as_secs() as i64 => {
            "expiring"
        }
        (Some(_), None) => "valid",
    }
}
