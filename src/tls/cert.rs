//! Certificates as Quarry reads them: the facts of a PEM chain (names,
//! issuer, not-after, serial), the check that a key belongs to it, and the
//! check that it covers only names of one app.
//!
//! Pure: bytes in, facts or a one-line reason out.

use serde::{Deserialize, Serialize};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::TlsError;

/// Upper bound of a chain or key a user may hand over.
pub const MAX_PEM: usize = 64 * 1024;

/// What `certs` shows of one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertInfo {
    /// DNS names of the leaf (subjectAltName).
    pub domains: Vec<String>,
    /// The issuer's distinguished name.
    pub issuer: String,
    /// Expiry, RFC 3339 and Unix seconds.
    pub not_after: String,
    pub not_after_unix: i64,
    /// Serial number, hex.
    pub serial: String,
}

/// The DER certificates of a PEM chain, leaf first.
fn chain_der(pem: &str) -> Result<Vec<Vec<u8>>, TlsError> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| TlsError::BadCert(format!("not PEM: {e}")))?;
        if block.label == "CERTIFICATE" {
            out.push(block.contents);
        }
    }
    if out.is_empty() {
        return Err(TlsError::BadCert("no CERTIFICATE block in the PEM".into()));
    }
    Ok(out)
}

/// The leaf's facts.
pub fn info(pem: &str) -> Result<CertInfo, TlsError> {
    let chain = chain_der(pem)?;
    let (_, cert) = X509Certificate::from_der(&chain[0])
        .map_err(|e| TlsError::BadCert(format!("cannot parse the certificate: {e}")))?;
    Ok(facts(&cert))
}

fn facts(cert: &X509Certificate<'_>) -> CertInfo {
    let mut domains = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(d) = name {
                domains.push(d.to_ascii_lowercase());
            }
        }
    }
    let not_after = cert.validity().not_after;
    CertInfo {
        domains,
        issuer: cert.issuer().to_string(),
        not_after: crate::clock::unix_to_rfc3339(not_after.timestamp()).unwrap_or_default(),
        not_after_unix: not_after.timestamp(),
        serial: cert.raw_serial_as_string().replace(':', ""),
    }
}

/// Check a user's certificate and key: the key is the leaf's, the leaf is
/// valid now, and every name it holds is one of `allowed`.
pub fn check_custom(
    cert_pem: &str,
    key_pem: &str,
    allowed: &[String],
    now_unix: i64,
) -> Result<CertInfo, TlsError> {
    let chain = chain_der(cert_pem)?;
    let (_, cert) = X509Certificate::from_der(&chain[0])
        .map_err(|e| TlsError::BadCert(format!("cannot parse the certificate: {e}")))?;
    let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| {
        TlsError::BadKey(format!(
            "cannot read the key ({e}); give an unencrypted PKCS#8 PEM (BEGIN PRIVATE KEY)"
        ))
    })?;
    let cert_public: &[u8] = &cert.public_key().subject_public_key.data;
    if rcgen::PublicKeyData::der_bytes(&key) != cert_public {
        return Err(TlsError::KeyMismatch);
    }
    let info = facts(&cert);
    if info.not_after_unix <= now_unix {
        return Err(TlsError::BadCert(format!(
            "the certificate expired at {}",
            info.not_after
        )));
    }
    if cert.validity().not_before.timestamp() > now_unix {
        return Err(TlsError::BadCert("the certificate is not valid yet".into()));
    }
    if info.domains.is_empty() {
        return Err(TlsError::BadCert(
            "the certificate names no DNS domain (subjectAltName)".into(),
        ));
    }
    check_names(&info.domains, allowed)?;
    Ok(info)
}

/// Every name is one the app routes; a wildcard counts only when it covers
/// nothing but the app's own names below it.
pub fn check_names(names: &[String], allowed: &[String]) -> Result<(), TlsError> {
    for name in names {
        let ok = if let Some(base) = name.strip_prefix("*.") {
            // A wildcard is a claim on every sibling: only when the app owns
            // the parent zone's names it covers.
            allowed.iter().any(|a| a == base)
        } else {
            allowed.contains(name)
        };
        if !ok {
            return Err(TlsError::ForeignDomain(name.clone()));
        }
    }
    Ok(())
}

/// Whether the certificate's names cover `domain`.
pub fn covers(names: &[String], domain: &str) -> bool {
    names.iter().any(|n| {
        n == domain
            || n.strip_prefix("*.").is_some_and(|base| {
                domain
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == base)
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_matching_key_and_own_names_are_accepted() {
        let (cert, key) = self_signed(&["shop.example.com"]);
        let info = check_custom(&cert, &key, &["shop.example.com".into()], 1_700_000_000).unwrap();
        assert_eq!(info.domains, vec!["shop.example.com".to_string()]);
        assert!(!info.serial.is_empty());
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (cert, _) = self_signed(&["shop.example.com"]);
        let (_, other) = self_signed(&["shop.example.com"]);
        let e =
            check_custom(&cert, &other, &["shop.example.com".into()], 1_700_000_000).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the key does not belong to the certificate (their public keys differ)"
        );
    }

    #[test]
    fn names_of_other_apps_are_refused() {
        let (cert, key) = self_signed(&["shop.example.com", "bank.example.com"]);
        let e = check_custom(&cert, &key, &["shop.example.com".into()], 1_700_000_000).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the certificate names bank.example.com, which is not a domain of this app"
        );
        assert!(check_names(&["*.example.com".into()], &["shop.example.com".into()]).is_err());
    }

    #[test]
    fn coverage_of_wildcards_is_one_label() {
        let names = vec!["*.example.com".to_string(), "example.org".to_string()];
        assert!(covers(&names, "shop.example.com"));
        assert!(!covers(&names, "a.b.example.com"));
        assert!(!covers(&names, "example.com"));
        assert!(covers(&names, "example.org"));
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(
            info("hello").unwrap_err().to_string(),
            "bad certificate: no CERTIFICATE block in the PEM"
        );
    }
}
