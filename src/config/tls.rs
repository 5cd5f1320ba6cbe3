//! The `tls:` section of config.yml: which ACME directory certificates come
//! from, the account's contact, a private CA to trust, redirects and HSTS.
//!
//! Parsed strictly with the rest of config.yml (`config::Config`): unknown
//! keys and bad values are refused with `config.yml:LINE: tls.…: reason`.
//! Pure; reads no files.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer, de};

/// Let's Encrypt's production directory, the default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (`tls.acme.staging: true`).
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// `tls:` in config.yml.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
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
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AcmeConfig {
    /// The ACME directory URL (Let's Encrypt's when unset).
    pub directory: Option<DirectoryUrl>,
    /// Use Let's Encrypt's staging directory (when `directory` is unset).
    pub staging: bool,
    /// Contact address given to the ACME server.
    pub email: Option<Email>,
    /// PEM file of the CA that signs the ACME server's own certificate.
    pub ca_bundle: Option<CaBundle>,
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

impl<'de> Deserialize<'de> for DirectoryUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let ok = s.len() <= 2048
            && s.strip_prefix("https://").is_some_and(|rest| {
                !rest.is_empty() && !rest.starts_with('/') && !rest.chars().any(char::is_control)
            })
            && !s.contains(char::is_whitespace);
        if ok {
            Ok(DirectoryUrl(s))
        } else {
            Err(de::Error::custom(format!(
                "tls.acme.directory: use an https:// URL, found {:?}",
                s.chars().take(80).collect::<String>()
            )))
        }
    }
}

/// A contact address: `local@domain`, no spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(pub String);

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let ok = s.len() <= 254
            && s.split_once('@').is_some_and(|(l, h)| {
                !l.is_empty() && h.contains('.') && !h.starts_with('.') && !h.ends_with('.')
            })
            && !s
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == ',');
        if ok {
            Ok(Email(s))
        } else {
            Err(de::Error::custom(format!(
                "tls.acme.email: not an email address: {:?}",
                s.chars().take(80).collect::<String>()
            )))
        }
    }
}

/// An absolute path to a PEM file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaBundle(pub PathBuf);

impl<'de> Deserialize<'de> for CaBundle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let p = PathBuf::deserialize(d)?;
        if p.is_absolute() {
            Ok(CaBundle(p))
        } else {
            Err(de::Error::custom(format!(
                "tls.acme.ca_bundle: use an absolute path, found {}",
                p.display()
            )))
        }
    }
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
            Config::parse("tls:\n  acme:\n    directory: http://example.com/dir\n").unwrap_err(),
            "config.yml:3: tls.acme.directory: use an https:// URL, found \"http://example.com/dir\""
        );
        assert_eq!(
            Config::parse("tls:\n  acme:\n    email: nobody\n").unwrap_err(),
            "config.yml:3: tls.acme.email: not an email address: \"nobody\""
        );
        assert_eq!(
            Config::parse("tls:\n  acme:\n    ca_bundle: ca.pem\n").unwrap_err(),
            "config.yml:3: tls.acme.ca_bundle: use an absolute path, found ca.pem"
        );
        assert_eq!(
            Config::parse("tls:\n  redirects: true\n").unwrap_err(),
            "config.yml:2: unknown field `redirects`, expected one of acme, redirect, hsts, auto"
        );
    }
}
