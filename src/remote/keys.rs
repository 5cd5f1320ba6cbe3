//! The HQ's own SSH key pair (made on first use under the data dir) and the
//! host keys it pins: parsing `--host-key` text and printing fingerprints.
//! May touch: `<data>/hq_ed25519_key`.

use std::path::Path;

use russh::keys::{HashAlg, PrivateKey, PublicKey};

use super::SshError;
/// The file of the HQ's key pair under the data dir.
pub const HQ_KEY: &str = "hq_ed25519_key";

/// The HQ's key pair, made on first use (0600).
pub fn hq_key(root: &Path) -> Result<PrivateKey, SshError> {
    let path = root.join(HQ_KEY);
    let bad = |reason: String| SshError::Key {
        what: path.display().to_string(),
        reason,
    };
    if !path.exists() {
        let key = PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
            .map_err(|e| bad(format!("cannot generate: {e}")))?;
        let text = key
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .map_err(|e| bad(e.to_string()))?;
        // Written beside, then linked: two first starts never overwrite
        // each other's key.
        let tmp = root.join(format!(".tmp-hq-key-{}", std::process::id()));
        crate::store::write_atomic(&tmp, text.as_bytes(), 0o600).map_err(|e| bad(e.to_string()))?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(bad(e.to_string())),
        }
    }
    PrivateKey::read_openssh_file(&path).map_err(|e| bad(e.to_string()))
}

/// The HQ's public key as one `authorized_keys` line.
pub fn hq_public_line(key: &PrivateKey) -> String {
    let text = key
        .public_key()
        .to_openssh()
        .unwrap_or_else(|_| String::from("?"));
    format!("{text} quarry-hq\n")
}

/// `SHA256:…` of a key.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Parse `--host-key` text (`ssh-ed25519 AAAA… [comment]`).
pub fn parse_host_key(text: &str) -> Result<PublicKey, SshError> {
    PublicKey::from_openssh(text.trim()).map_err(|e| SshError::Key {
        what: "--host-key".into(),
        reason: format!("not an OpenSSH public key ({e})"),
    })
}
