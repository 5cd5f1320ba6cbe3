//! The TLS-ALPN-01 responder (RFC 8737): a TLS server on a loopback port
//! that nginx's stream front hands every ClientHello offering `acme-tls/1`.
//! For a name with a pending challenge it completes the handshake with a
//! self-signed certificate for that name carrying the critical
//! acmeIdentifier extension (the SHA-256 of the key authorization), then
//! closes; any other name, or a hello without `acme-tls/1`, gets a failed
//! handshake. Challenge certificates live in memory only.
//!
//! Touches its loopback listener and nothing else. Each connection starts
//! with nginx's PROXY protocol v1 line, read and dropped. Connections are
//! capped in number and time: anyone on the internet can offer
//! `acme-tls/1`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// The ALPN protocol of TLS-ALPN-01.
pub const ACME_TLS_1: &[u8] = b"acme-tls/1";
/// Connections handled at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 64;
/// Time from accept to the end of the handshake.
const DEADLINE: Duration = Duration::from_secs(10);
/// A PROXY v1 line is at most 107 bytes with its CRLF.
const PROXY_LINE_MAX: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum AlpnError {
    #[error("cannot listen for TLS-ALPN-01 on 127.0.0.1: {0}")]
    Listen(std::io::Error),
    #[error("cannot make the TLS-ALPN-01 certificate for {domain}: {reason}")]
    Cert { domain: String, reason: String },
    #[error("cannot set up the TLS-ALPN-01 responder: {0}")]
    Tls(rustls::Error),
}

/// One pending TLS-ALPN-01 challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The name validated (lower case).
    pub domain: String,
    /// SHA-256 of the key authorization.
    pub digest: [u8; 32],
}

type Certs = Arc<Mutex<HashMap<String, Arc<CertifiedKey>>>>;

/// The running responder; stops when dropped.
pub struct Responder {
    addr: SocketAddr,
    certs: Certs,
    task: JoinHandle<()>,
}

impl Responder {
    /// Listen on a free loopback port.
    pub async fn start() -> Result<Responder, AlpnError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(AlpnError::Listen)?;
        let addr = listener.local_addr().map_err(AlpnError::Listen)?;
        let certs = Certs::default();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(AlpnError::Tls)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(certs.clone())));
        config.alpn_protocols = vec![ACME_TLS_1.to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let task = tokio::spawn(accept_loop(listener, acceptor));
        Ok(Responder { addr, certs, task })
    }

    /// Where nginx's front sends `acme-tls/1` hellos.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answer exactly these challenges (an empty list clears them).
    pub fn set(&self, answers: &[Answer]) -> Result<(), AlpnError> {
        let mut made = HashMap::new();
        for a in answers {
            made.insert(a.domain.to_ascii_lowercase(), Arc::new(certified(a)?));
        }
        *self.certs.lock().expect("alpn certs") = made;
        Ok(())
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The challenge certificate of RFC 8737 §3: self-signed, one dNSName,
/// the critical acmeIdentifier extension. Its key is new each time.
pub fn challenge_cert(a: &Answer) -> Result<(rcgen::Certificate, KeyPair), AlpnError> {
    let err = |e: rcgen::Error| AlpnError::Cert {
        domain: a.domain.clone(),
        reason: e.to_string(),
    };
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(vec![a.domain.clone()]).map_err(err)?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(&a.digest)];
    let cert = params.self_signed(&key).map_err(err)?;
    Ok((cert, key))
}

fn certified(a: &Answer) -> Result<CertifiedKey, AlpnError> {
    let (cert, key) = challenge_cert(a)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = rustls::crypto::ring::sign::any_supported_type(&der).map_err(AlpnError::Tls)?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing))
}

/// Picks the challenge certificate by SNI, only for `acme-tls/1`.
#[derive(Debug)]
struct Resolver(Certs);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let offers_acme = hello.alpn()?.any(|p| p == ACME_TLS_1);
        if !offers_acme {
            return None;
        }
        let name = hello.server_name()?.to_ascii_lowercase();
        self.0.lock().expect("alpn certs").get(&name).cloned()
    }
}

async fn accept_loop(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("tls-alpn-01 responder: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(DEADLINE, answer(stream, acceptor)).await;
        });
    }
}

async fn answer(mut stream: tokio::net::TcpStream, acceptor: tokio_rustls::TlsAcceptor) {
    if let Err(e) = skip_proxy_line(&mut stream).await {
        tracing::debug!("tls-alpn-01 responder: {e}");
        return;
    }
    match acceptor.accept(stream).await {
        // The validator only needs the handshake (RFC 8737 §3).
        Ok(mut tls) => {
            let _ = tls.shutdown().await;
        }
        Err(e) => tracing::debug!("tls-alpn-01 handshake: {e}"),
    }
}

/// Why a connection from the stream front was dropped before TLS.
#[derive(Debug, thiserror::Error)]
enum ProxyLineError {
    #[error("the PROXY line is too long")]
    TooLong,
    #[error("the connection does not start with a PROXY line")]
    Missing,
    #[error("{0}")]
    Read(#[from] std::io::Error),
}

/// Read nginx's `PROXY …\r\n` line byte by byte, so no TLS byte is taken.
async fn skip_proxy_line(r: &mut (impl AsyncRead + Unpin)) -> Result<(), ProxyLineError> {
    let mut line = Vec::with_capacity(PROXY_LINE_MAX);
    while !line.ends_with(b"\r\n") {
        if line.len() >= PROXY_LINE_MAX {
            return Err(ProxyLineError::TooLong);
        }
        line.push(r.read_u8().await?);
    }
    if line.starts_with(b"PROXY ") {
        Ok(())
    } else {
        Err(ProxyLineError::Missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    #[test]
    fn the_challenge_cert_names_the_domain_and_carries_the_digest() {
        let a = Answer {
            domain: "shop.example.com".into(),
            digest: [7; 32],
        };
        let (cert, _) = challenge_cert(&a).unwrap();
        let (_, x) = X509Certificate::from_der(cert.der()).unwrap();
        let san = x.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            san.value.general_names,
            vec![GeneralName::DNSName("shop.example.com")]
        );
        // id-pe-acmeIdentifier, critical, an OCTET STRING of the digest.
        let ext = x
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier");
        assert!(ext.critical);
        let mut want = vec![0x04, 32];
        want.extend_from_slice(&[7; 32]);
        assert_eq!(ext.value, want.as_slice());
    }

    #[tokio::test]
    async fn the_proxy_line_is_read_and_nothing_after_it() {
        let mut input: &[u8] = b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 443\r\n\x16\x03\x01";
        skip_proxy_line(&mut input).await.unwrap();
        assert_eq!(input, b"\x16\x03\x01");
        let mut bad: &[u8] = b"\x16\x03\x01\x02\x00";
        assert!(skip_proxy_line(&mut bad).await.is_err());
        let long = [b'A'; 200];
        assert_eq!(
            skip_proxy_line(&mut &long[..])
                .await
                .unwrap_err()
                .to_string(),
            "the PROXY line is too long"
        );
    }
}
