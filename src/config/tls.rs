//! The `tls:` section of config.yml: which ACME directory certificates come
//! from, the account's contact, a private CA to trust, the challenge type
//! (HTTP-01 or TLS-ALPN-01), redirects and HSTS.
//!
//! Read from config.yml's YAML tree with the rest of the file
//! (`config::Config`): unknown keys and bad values are refused with
//! `config.yml:LINE: tls.…: reason`. Pure; reads no files.

use std::path::PathBuf;

use super::read::set;
use crate::yaml::{At, Error};

/// Let's Encrypt's production directory, the default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (`tls.acme.staging: true`).
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// `tls:` in config.yml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub acme: AcmeConfig,
    /// HTTP answers 308 to HTTPS on names with a certificate.
    pub redirect: bool,
    /// Send `Strict-Transport-Security: max-age=31536000` over HTTPS.
    pub hsts: bool,
    /// Every app gets certificates for its domains without `certs:enable`.
    pub auto: bool,
}

impl Default for TlsConfig {
    fn default() -> TlsConfig {
        TlsConfig {
            acme: AcmeConfig::default(),
            redirect: true,
            hsts: false,
            auto: false,
        }
    }
}

/// `tls.acme:` in config.yml.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcmeConfig {
    /// The ACME directory URL (Let's Encrypt's when unset).
    pub directory: Option<DirectoryUrl>,
    /// Use Let's Encrypt's staging directory (when `directory` is unset).
    pub staging: bool,
    /// Contact address given to the ACME server.
    pub email: Option<Email>,
    /// PEM file of the CA that signs the ACME server's own certificate.
    pub ca_bundle: Option<CaBundle>,
    /// How the ACME server checks that this server holds a name.
    pub challenge: ChallengeKind,
}

/// `tls.acme.challenge`: `http-01` (the default) or `tls-alpn-01`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ChallengeKind {
    /// A token served over plain HTTP on port 80 (RFC 8555 §8.3).
    #[default]
    Http01,
    /// A certificate shown on the HTTPS port to a ClientHello offering
    /// `acme-tls/1` (RFC 8737); needs nginx's stream module.
    TlsAlpn01,
}

impl ChallengeKind {
    /// The name in config.yml and in ACME.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

impl ChallengeKind {
    fn read(at: &At) -> Result<ChallengeKind, Error> {
        let s = at.text()?;
        match s {
            "http-01" => Ok(ChallengeKind::Http01),
            "tls-alpn-01" => Ok(ChallengeKind::TlsAlpn01),
            _ => Err(at.fail(format!(
                "use http-01 or tls-alpn-01, found {:?}",
                s.chars().take(80).collect::<String>()
            ))),
        }
    }
}

impl AcmeConfig {
    /// The directory URL to use.
    pub fn directory_url(&self) -> &str {
        match (&self.directory, self.staging) {
            (Some(d), _) => &d.0,
            (None, true) => LETS_ENCRYPT_STAGING,
            (None, false) => LETS_ENCRYPT,
        }
    }
}

/// An `https://` URL with no spaces or control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUrl(pub String);

impl DirectoryUrl {
    fn read(at: &At) -> Result<DirectoryUrl, Error> {
        let s = at.text()?;
        let ok = s.len() <= 2048
            && s.strip_prefix("https://").is_some_and(|rest| {
                !rest.is_empty() && !rest.starts_with('/') && !rest.chars().any(char::is_control)
            })
            && !s.contains(char::is_whitespace);
        if ok {
            Ok(DirectoryUrl(s.to_owned()))
        } else {
            Err(at.fail(format!(
                "use an https:// URL, found {:?}",
                s.chars().take(80).collect::<String>()
            )))
        }
    }
}

/// A contact address: `local@domain`, no spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(pub String);

impl Email {
    fn read(at: &At) -> Result<Email, Error> {
        let s = at.text()?;
        let ok = s.len() <= 254
            && s.split_once('@').is_some_and(|(l, h)| {
                !l.is_empty() && h.contains('.') && !h.starts_with('.') && !h.ends_with('.')
            })
            && !s
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == ',');
        if ok {
            Ok(Email(s.to_owned()))
        } else {
            Err(at.fail(format!(
                "not an email address: {:?}",
                s.chars().take(80).collect::<String>()
            )))
        }
    }
}

/// An absolute path to a PEM file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaBundle(pub PathBuf);

impl CaBundle {
    fn read(at: &At) -> Result<CaBundle, Error> {
        let p = PathBuf::from(at.string()?);
        if p.is_absolute() {
            Ok(CaBundle(p))
        } else {
            Err(at.fail(format!("use an absolute path, found {}", p.display())))
        }
    }
}

/// `tls:`, each key left out keeping its default.
pub(super) fn read(at: &At) -> Result<TlsConfig, Error> {
    let f = at.fields(&["acme", "redirect", "hsts", "auto"])?;
    let default = TlsConfig::default();
    Ok(TlsConfig {
        acme: set(&f, "acme", acme)?.unwrap_or_default(),
        redirect: set(&f, "redirect", At::bool)?.unwrap_or(default.redirect),
        hsts: set(&f, "hsts", At::bool)?.unwrap_or(default.hsts),
        auto: set(&f, "auto", At::bool)?.unwrap_or(default.auto),
    })
}

fn acme(at: &At) -> Result<AcmeConfig, Error> {
    let f = at.fields(&["directory", "staging", "email", "ca_bundle", "challenge"])?;
    Ok(AcmeConfig {
        directory: set(&f, "directory", DirectoryUrl::read)?,
        staging: set(&f, "staging", At::bool)?.unwrap_or_default(),
        email: set(&f, "email", Email::read)?,
        ca_bundle: set(&f, "ca_bundle", CaBundle::read)?,
        challenge: set(&f, "challenge", ChallengeKind::read)?.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn tls_section_is_read_with_its_defaults() {
        let c = Config::parse("grid:\n  min: 1\n").unwrap();
        assert_eq!(c.tls, super::TlsConfig::default());
        assert!(c.tls.redirect);
        assert_eq!(c.tls.acme.directory_url(), super::LETS_ENCRYPT);
        assert_eq!(c.tls.acme.challenge, super::ChallengeKind::Http01);
        let c = Config::parse("tls:\n  acme:\n    challenge: tls-alpn-01\n").unwrap();
        assert_eq!(c.tls.acme.challenge, super::ChallengeKind::TlsAlpn01);
        let c = Config::parse("tls:\n  acme:\n    challenge: http-01\n").unwrap();
        assert_eq!(c.tls.acme.challenge, super::ChallengeKind::Http01);
        let c = Config::parse("tls:\n  acme:\n    staging: true\n").unwrap();
        assert_eq!(c.tls.acme.directory_url(), super::LETS_ENCRYPT_STAGING);
        let c = Config::parse(
            "tls:\n  acme:\n    directory: https://127.0.0.1:14000/dir\n    email: ops@example.com\n    ca_bundle: /etc/quarry/ca.pem\n  redirect: false\n  hsts: true\n",
        )
        .unwrap();
        assert_eq!(c.tls.acme.directory_url(), "https://127.0.0.1:14000/dir");
        assert!(!c.tls.redirect && c.tls.hsts);
        assert_eq!(
            c.tls.acme.ca_bundle.unwrap().0,
            std::path::PathBuf::from("/etc/quarry/ca.pem")
        );
    }

    #[test]
    fn tls_errors_name_the_line_and_the_key() {
        assert_eq!(
            Config::parse("tls:\n  acme:\n    directory: http://example.com/dir\n")
                .unwrap_err()
                .to_string(),
            "config.yml:3: tls.acme.directory: use an https:// URL, found \"http://example.com/dir\""
        );
        assert_eq!(
            Config::parse("tls:\n  acme:\n    email: nobody\n")
                .unwrap_err()
                .to_string(),
            "config.yml:3: tls.acme.email: not an email address: \"nobody\""
        );
        assert_eq!(
            Config::parse("tls:\n  acme:\n    ca_bundle: ca.pem\n")
                .unwrap_err()
                .to_string(),
            "config.yml:3: tls.acme.ca_bundle: use an absolute path, found ca.pem"
        );
        assert_eq!(
            Config::parse("tls:\n  acme:\n    challenge: dns-01\n")
                .unwrap_err()
                .to_string(),
            "config.yml:3: tls.acme.challenge: use http-01 or tls-alpn-01, found \"dns-01\""
        );
        assert_eq!(
            Config::parse("tls:\n  redirects: true\n")
                .unwrap_err()
                .to_string(),
            "config.yml:2: tls.redirects: unknown field, expected one of acme, redirect, hsts, auto"
        );
    }
}
