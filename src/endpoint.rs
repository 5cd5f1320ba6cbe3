//! How a server's Docker engine is reached: the `servers:add` request, the
//! TLS files of a `tcp://` engine, and the rule that a plain `tcp://` engine
//! needs `--insecure`. Pure; shared by the parser, the fleet and providers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The name of the server Quarry itself runs on (its own engine).
pub const LOCAL: &str = "local";

/// `servers:add` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewServer {
    pub name: String,
    /// `unix:///path.sock` or `tcp://host:port`.
    pub docker: String,
    pub address: std::net::IpAddr,
    /// MiB for the grid.
    pub memory: u64,
    pub labels: BTreeMap<String, String>,
    /// PEM files for a `tcp://` engine with TLS.
    pub tls: Option<TlsFiles>,
    /// A plain `tcp://` engine without TLS, on purpose (`--insecure`).
    pub insecure: bool,
    /// Reached over SSH (`--ssh`); `docker` is then set when it is added.
    pub ssh: Option<Box<SshTarget>>,
    /// Provisioners to run once it joined (`--provision`, in order).
    pub provision: Vec<String>,
}

/// Where a server's sshd is, and the host key it must show
/// (`servers/<name>/settings.json` → `ssh`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SshTarget {
    pub user: String,
    pub host: String,
    pub port: u16,
    /// OpenSSH text (`ssh-ed25519 AAAA…`): given with `--host-key`, or
    /// pinned on first contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
}

impl SshTarget {
    /// `[USER@]HOST[:PORT]` (user `root`, port 22 by default; `[v6]:port`).
    pub fn parse(text: &str) -> Result<SshTarget, &'static str> {
        let (user, rest) = text.split_once('@').unwrap_or(("root", text));
        let user_ok = !user.is_empty()
            && user.len() <= 32
            && !user.starts_with('-')
            && user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !user_ok {
            return Err("the user is letters, digits, '-', '_' and '.'");
        }
        let (host, port) = match rest.strip_prefix('[') {
            Some(inner) => {
                let (h, after) = inner
                    .split_once(']')
                    .ok_or("an IPv6 address is written [addr]:port")?;
                (h, after.strip_prefix(':'))
            }
            None => match rest.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h, Some(p)),
                _ => (rest, None),
            },
        };
        let port = match port {
            None => 22,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or("the port is a number from 1 to 65535")?,
        };
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && (host.parse::<std::net::IpAddr>().is_ok()
                || (!host.starts_with('-')
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))));
        if !host_ok {
            return Err("the host is a name or an IP address");
        }
        Ok(SshTarget {
            user: user.to_string(),
            host: host.to_string(),
            port,
            host_key: None,
        })
    }

    /// `user@host:port`.
    pub fn display(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

/// PEM files for a Docker engine behind TLS (`--tlsverify`): the CA that
/// signed the engine's certificate, and the client's certificate and key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Why an engine's endpoint was refused, naming the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error(
        "{endpoint} has no TLS: anyone who reaches it controls that Docker engine; give --tls-ca, --tls-cert and --tls-key (dockerd --tlsverify), or --insecure for an engine on a trusted private network"
    )]
    NoTls { endpoint: String },
    #[error("--insecure is for a tcp:// engine without TLS, and {endpoint} has TLS files")]
    InsecureWithTls { endpoint: String },
    #[error("--insecure is for a tcp:// engine without TLS, not {endpoint}")]
    InsecureNotTcp { endpoint: String },
}

/// Why a new server's endpoint may not be used as given: a plain `tcp://`
/// engine hands root on that machine to anyone who can reach the port, so
/// it takes TLS files, or an explicit `insecure` for a trusted network.
pub fn check_transport(endpoint: &str, tls: bool, insecure: bool) -> Result<(), TransportError> {
    let tcp = endpoint.starts_with("tcp://");
    let endpoint = endpoint.to_owned();
    match (tcp, tls, insecure) {
        (true, false, false) => Err(TransportError::NoTls { endpoint }),
        (true, true, true) => Err(TransportError::InsecureWithTls { endpoint }),
        (false, _, true) => Err(TransportError::InsecureNotTcp { endpoint }),
        (true, false, true) | (true, true, false) | (false, _, false) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_targets_default_to_root_on_22() {
        let t = SshTarget::parse("10.0.0.9").unwrap();
        assert_eq!((t.user.as_str(), t.port), ("root", 22));
        let t = SshTarget::parse("ops@[fd00::9]:2200").unwrap();
        assert_eq!(
            (t.user.as_str(), t.host.as_str(), t.port),
            ("ops", "fd00::9", 2200)
        );
        assert!(SshTarget::parse("-oProxyCommand=x@h").is_err());
        assert!(SshTarget::parse("root@-h").is_err());
    }
}
