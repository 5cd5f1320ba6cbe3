//! Connecting to one server: TCP with a deadline, the SSH handshake with the
//! pinned host key checked (or the first one offered, remembered), then the
//! HQ's key offered for the login. May touch: the server's SSH port.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};

use super::{SshError, SshTarget, fingerprint};

/// The host key check: the pinned key, or the first one offered.
pub(super) struct Check {
    expected: Option<PublicKey>,
    offered: Arc<Mutex<Option<PublicKey>>>,
}

impl client::Handler for Check {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(c) => PublicKey::from(c.public_key().clone()),
        };
        let ok = self
            .expected
            .as_ref()
            .is_none_or(|e| e.key_data() == key.key_data());
        *self.offered.lock().expect("offered") = Some(key);
        Ok(ok)
    }
}

/// Connect and log in; returns the session and the host key it showed.
pub(super) async fn dial(
    server: &str,
    target: &SshTarget,
    hq: &Arc<PrivateKey>,
    expected: Option<PublicKey>,
) -> Result<(Handle<Check>, PublicKey), SshError> {
    let where_ = target.display();
    let unreachable = |reason: String| SshError::Unreachable {
        server: server.to_string(),
        target: where_.clone(),
        reason,
    };
    let config = Arc::new(client::Config {
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(10)),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    });
    let offered = Arc::new(Mutex::new(None));
    let check = Check {
        expected: expected.clone(),
        offered: offered.clone(),
    };
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect((target.host.as_str(), target.port)),
    )
    .await
    .map_err(|_| unreachable("no answer within 10 s".into()))?
    .map_err(|e| unreachable(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let connected = tokio::time::timeout(
        Duration::from_secs(20),
        client::connect_stream(config, tcp, check),
    )
    .await
    .map_err(|_| unreachable("no SSH handshake within 20 s".into()))?;
    let shown = offered.lock().expect("offered").clone();
    let mut handle = match (connected, expected, shown) {
        (Ok(h), _, _) => h,
        (Err(_), Some(e), Some(o)) if e.key_data() != o.key_data() => {
            return Err(SshError::HostKeyMismatch {
                server: server.to_string(),
                target: where_,
                expected: fingerprint(&e),
                offered: fingerprint(&o),
            });
        }
        (Err(e), _, _) => return Err(unreachable(e.to_string())),
    };
    let shown = offered
        .lock()
        .expect("offered")
        .clone()
        .ok_or_else(|| unreachable("the server showed no host key".into()))?;
    let hash = handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    let auth = handle
        .authenticate_publickey(
            target.user.clone(),
            PrivateKeyWithHashAlg::new(hq.clone(), hash),
        )
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if !auth.success() {
        return Err(SshError::Denied {
            server: server.to_string(),
            target: where_,
        });
    }
    Ok((handle, shown))
}
