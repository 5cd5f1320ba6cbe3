//! Servers reached over SSH: one persistent session from the HQ to each
//! (russh's client, authenticated with the HQ's own key pair), the server's
//! host key pinned and checked on every connect.
//!
//! The Docker API goes through [`bridge`]: a private unix socket under
//! `servers/<name>/docker.sock` whose every connection is one channel to the
//! server's engine (a `direct-streamlocal` channel to its socket, else one
//! running `docker system dial-stdio`), so bollard and everything the
//! fleet does work as with a local engine. [`Link::exec`] runs other commands
//! (provisioners, the hosts file) on the same session.
//! May touch: `<data>/hq_ed25519_key`, the server's SSH port, the sockets
//! under `servers/`.

pub mod bridge;
mod dial;
mod keys;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use russh::ChannelMsg;
use russh::client::{self, Handle};
use russh::keys::{PrivateKey, PublicKey};

use tokio::sync::mpsc;

pub use crate::endpoint::SshTarget;
pub use keys::{HQ_KEY, fingerprint, hq_key, hq_public_line, parse_host_key};

use dial::{Check, dial};

/// Why a server cannot be reached over SSH.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SshError {
    #[error("server {server}: cannot reach {target}: {reason}")]
    Unreachable {
        server: String,
        target: String,
        reason: String,
    },
    #[error(
        "server {server}: the host key of {target} changed: expected {expected}, offered {offered}; refusing to connect (if the server was rebuilt, remove it and add it again with --host-key)"
    )]
    HostKeyMismatch {
        server: String,
        target: String,
        expected: String,
        offered: String,
    },
    #[error(
        "server {server}: {target} refused the HQ's key (put the output of `quarry keys hq` in that user's authorized_keys)"
    )]
    Denied { server: String, target: String },
    #[error("server {server}: ssh session to {target}: {reason}")]
    Session {
        server: String,
        target: String,
        reason: String,
    },
    #[error("server {server}: {target} refused {what}: {reason}")]
    Refused {
        server: String,
        target: String,
        what: String,
        reason: String,
    },
    #[error("{what}: {reason}")]
    Key { what: String, reason: String },
}

/// What the first contact learned: the host key to pin.
pub struct Contact {
    pub host_key: PublicKey,
}

/// One logged-in connection and how many channels it carries now.
struct Session {
    handle: Handle<Check>,
    open: AtomicUsize,
    /// It refused a channel (sshd's `MaxSessions`): no new ones on it.
    full: AtomicBool,
}

/// A channel's claim on its session; given back when dropped.
pub struct Lease(Arc<Session>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Channels per connection: below OpenSSH's default `MaxSessions` (10),
/// since the Docker client keeps idle connections open. A burst beyond it
/// opens a second connection, closed again once idle.
const CHANNELS_PER_SESSION: usize = 8;

/// One server's session, opened on demand and again after it drops (with
/// backoff), never past a host key other than the pinned one.
pub struct Link {
    server: String,
    target: SshTarget,
    expected: PublicKey,
    hq: Arc<PrivateKey>,
    state: tokio::sync::Mutex<Vec<Arc<Session>>>,
    retry: Mutex<Retry>,
    /// Docker connections refused while set (a provisioner failed): the
    /// server stays unknown until it is provisioned again.
    held: Mutex<Option<String>>,
    /// The engine's socket on the server, once asked (`None`: not a unix
    /// socket, so the bridge runs `docker system dial-stdio`).
    docker_socket: tokio::sync::OnceCell<Option<String>>,
    /// sshd refused a `direct-streamlocal` channel (`DisableForwarding`,
    /// `AllowStreamLocalForwarding no`): dial-stdio from then on.
    streamlocal_refused: AtomicBool,
}

/// What a new channel carries.
#[derive(Debug, Clone, Copy)]
pub enum Open<'a> {
    /// A command (`exec`), its stdin and stdout the channel's data.
    Exec(&'a str),
    /// A connection sshd makes to a unix socket on the server
    /// (`direct-streamlocal@openssh.com`, as `ssh -L` does): no process.
    Socket(&'a str),
}

/// Asks the server's Docker CLI where its engine listens (honours the
/// session's `DOCKER_HOST` and the current context).
pub const DOCKER_HOST_QUERY: &str = "docker context inspect --format '{{.Endpoints.docker.Host}}'";

/// The socket path in the answer to [`DOCKER_HOST_QUERY`]: a `unix://`
/// endpoint with an absolute path, else `None` (tcp, ssh, odd text).
pub fn unix_socket_of(answer: &str) -> Option<String> {
    let path = answer.trim().strip_prefix("unix://")?;
    let ok = path.starts_with('/')
        && path.len() < 108
        && !path.chars().any(|c| c.is_control() || c.is_whitespace());
    ok.then(|| path.to_string())
}

struct Retry {
    next: Instant,
    delay: Duration,
    last_error: Option<SshError>,
}

/// How long a channel may take to open.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// The longest wait between two connect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Link {
    /// First contact: connect, log in and learn the host key (checked
    /// against `--host-key` when the target has one).
    pub async fn first_contact(
        server: &str,
        target: &SshTarget,
        hq: Arc<PrivateKey>,
    ) -> Result<(Link, Contact), SshError> {
        let expected = target.host_key.as_deref().map(parse_host_key).transpose()?;
        let (handle, shown) = dial(server, target, &hq, expected).await?;
        let mut pinned = target.clone();
        pinned.host_key = Some(shown.to_openssh().map_err(|e| SshError::Key {
            what: "host key".into(),
            reason: e.to_string(),
        })?);
        let link = Link::new(server, &pinned, hq)?;
        link.state.lock().await.push(Arc::new(Session {
            handle,
            open: AtomicUsize::new(0),
            full: AtomicBool::new(false),
        }));
        Ok((link, Contact { host_key: shown }))
    }

    /// A link to a server whose host key is pinned; connects on first use.
    pub fn new(server: &str, target: &SshTarget, hq: Arc<PrivateKey>) -> Result<Link, SshError> {
        let expected =
            parse_host_key(target.host_key.as_deref().ok_or_else(|| SshError::Key {
                what: format!("server {server}"),
                reason: "no host key is pinned".into(),
            })?)?;
        Ok(Link {
            server: server.to_string(),
            target: target.clone(),
            expected,
            hq,
            state: tokio::sync::Mutex::new(Vec::new()),
            retry: Mutex::new(Retry {
                next: Instant::now(),
                delay: Duration::from_secs(1),
                last_error: None,
            }),
            held: Mutex::new(None),
            docker_socket: tokio::sync::OnceCell::new(),
            streamlocal_refused: AtomicBool::new(false),
        })
    }

    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    /// The last connect failure, while the session is down.
    pub fn last_error(&self) -> Option<SshError> {
        self.retry.lock().expect("retry").last_error.clone()
    }

    /// Refuse Docker connections (`Some(why)`) or take them again (`None`).
    pub fn hold(&self, why: Option<String>) {
        *self.held.lock().expect("held") = why;
    }

    pub fn held(&self) -> Option<String> {
        self.held.lock().expect("held").clone()
    }

    /// A session with room for one more channel, connecting (again) when
    /// there is none (not sooner than the backoff allows).
    async fn lease(&self) -> Result<Lease, SshError> {
        let mut state = self.state.lock().await;
        state.retain(|s| !s.handle.is_closed());
        // At most one idle connection stays.
        let mut idle_kept = false;
        state.retain(|s| {
            if s.open.load(Ordering::SeqCst) > 0 {
                return true;
            }
            let keep = !idle_kept && !s.full.load(Ordering::SeqCst);
            idle_kept |= keep;
            keep
        });
        if let Some(s) = state.iter().find(|s| {
            !s.full.load(Ordering::SeqCst) && s.open.load(Ordering::SeqCst) < CHANNELS_PER_SESSION
        }) {
            s.open.fetch_add(1, Ordering::SeqCst);
            return Ok(Lease(s.clone()));
        }
        {
            let retry = self.retry.lock().expect("retry");
            if Instant::now() < retry.next
                && let Some(e) = &retry.last_error
            {
                return Err(e.clone());
            }
        }
        match dial(
            &self.server,
            &self.target,
            &self.hq,
            Some(self.expected.clone()),
        )
        .await
        {
            Ok((handle, _)) => {
                let session = Arc::new(Session {
                    handle,
                    open: AtomicUsize::new(1),
                    full: AtomicBool::new(false),
                });
                state.push(session.clone());
                let mut retry = self.retry.lock().expect("retry");
                retry.delay = Duration::from_secs(1);
                retry.last_error = None;
                tracing::info!(server = %self.server, sessions = state.len(), "ssh session up");
                Ok(Lease(session))
            }
            Err(e) => {
                let mut retry = self.retry.lock().expect("retry");
                retry.next = Instant::now() + retry.delay;
                retry.delay = (retry.delay * 2).min(MAX_BACKOFF);
                if retry.last_error.as_ref() != Some(&e) {
                    tracing::warn!(server = %self.server, "{e}");
                }
                retry.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    fn session_error(&self, reason: impl ToString) -> SshError {
        SshError::Session {
            server: self.server.clone(),
            target: self.target.display(),
            reason: reason.to_string(),
        }
    }

    /// A channel running `command` on the server, with its lease (keep
    /// it as long as the channel).
    pub async fn channel(
        &self,
        command: &str,
    ) -> Result<(russh::Channel<client::Msg>, Lease), SshError> {
        self.open(Open::Exec(command)).await
    }

    /// A channel to the server's Docker engine: straight to its unix socket
    /// when sshd forwards to sockets (one round trip, no process on the
    /// server), else `docker system dial-stdio`.
    pub async fn docker_channel(&self) -> Result<(russh::Channel<client::Msg>, Lease), SshError> {
        if !self.streamlocal_refused.load(Ordering::SeqCst)
            && let Some(path) = self.docker_socket().await?
        {
            match self.open(Open::Socket(&path)).await {
                Ok(c) => return Ok(c),
                Err(SshError::Refused { .. }) => {
                    self.streamlocal_refused.store(true, Ordering::SeqCst);
                    tracing::info!(
                        server = %self.server,
                        "sshd does not forward to {path}: the Docker API goes through dial-stdio"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        self.open(Open::Exec(bridge::DIAL_STDIO)).await
    }

    /// Where the server's engine listens, asked once per link.
    async fn docker_socket(&self) -> Result<Option<String>, SshError> {
        self.docker_socket
            .get_or_try_init(|| async {
                let (tx, mut rx) = mpsc::unbounded_channel();
                let status = self.exec(DOCKER_HOST_QUERY, b"", &tx).await?;
                drop(tx);
                let mut answer = Vec::new();
                while let Some(b) = rx.recv().await {
                    // Only a path is expected; more is not one.
                    if answer.len() + b.len() > 4096 {
                        return Ok(None);
                    }
                    answer.extend_from_slice(&b);
                }
                Ok((status == 0)
                    .then(|| unix_socket_of(&String::from_utf8_lossy(&answer)))
                    .flatten())
            })
            .await
            .cloned()
    }

    /// A channel of kind `what`, with its lease (keep it as long as the
    /// channel).
    pub async fn open(
        &self,
        what: Open<'_>,
    ) -> Result<(russh::Channel<client::Msg>, Lease), SshError> {
        let mut last = None;
        // A refused or dead session is found out here: one more try, on
        // another session.
        for _ in 0..2 {
            let lease = self.lease().await?;
            let opened = match what {
                Open::Exec(_) => {
                    tokio::time::timeout(OPEN_TIMEOUT, lease.0.handle.channel_open_session()).await
                }
                Open::Socket(path) => {
                    let opened = tokio::time::timeout(
                        OPEN_TIMEOUT,
                        lease.0.handle.channel_open_direct_streamlocal(path),
                    )
                    .await;
                    // A refusal here is sshd's forwarding policy, not a
                    // full session.
                    if let Ok(Err(e @ russh::Error::ChannelOpenFailure(_))) = &opened {
                        return Err(SshError::Refused {
                            server: self.server.clone(),
                            target: self.target.display(),
                            what: format!("a channel to {path}"),
                            reason: e.to_string(),
                        });
                    }
                    opened
                }
            };
            match opened {
                Ok(Ok(channel)) => {
                    if let Open::Exec(command) = what {
                        channel
                            .exec(false, command)
                            .await
                            .map_err(|e| self.session_error(e))?;
                    }
                    return Ok((channel, lease));
                }
                Ok(Err(e)) => {
                    lease.0.full.store(true, Ordering::SeqCst);
                    last = Some(self.session_error(e));
                }
                Err(_) => {
                    lease.0.full.store(true, Ordering::SeqCst);
                    last = Some(self.session_error("no channel within 15 s"));
                }
            }
        }
        Err(last.expect("tried"))
    }

    /// Run `command` with `stdin`, sending its output (stdout and stderr,
    /// as they come) to `output`; returns its exit status.
    pub async fn exec(
        &self,
        command: &str,
        stdin: &[u8],
        output: &mpsc::UnboundedSender<Bytes>,
    ) -> Result<u32, SshError> {
        let (mut channel, _lease) = self.channel(command).await?;
        let (writer, stdin) = (channel.make_writer(), stdin.to_vec());
        // Fed beside the reading: a script may talk before it has all been
        // read. The writer's shutdown is the channel's EOF.
        let feed = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut writer = writer;
            let _ = writer.write_all(&stdin).await;
            let _ = writer.shutdown().await;
        });
        let mut status = None;
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => {
                    let _ = output.send(data);
                }
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    let _ = output.send(Bytes::from(format!("killed by signal {signal_name:?}\n")));
                    status = Some(128);
                }
                _ => {}
            }
        }
        feed.abort();
        status
            .ok_or_else(|| self.session_error(format!("{command:?} ended without an exit status")))
    }

    /// End the session (the server left the fleet).
    pub async fn close(&self) {
        for s in self.state.lock().await.drain(..) {
            let _ = s
                .handle
                .disconnect(russh::Disconnect::ByApplication, "server removed", "en")
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::unix_socket_of;

    #[test]
    fn only_an_absolute_unix_socket_is_dialled_directly() {
        assert_eq!(
            unix_socket_of("unix:///var/run/docker.sock\n"),
            Some("/var/run/docker.sock".into())
        );
        assert_eq!(unix_socket_of("tcp://10.0.0.2:2375"), None);
        assert_eq!(unix_socket_of("unix://relative.sock"), None);
        assert_eq!(unix_socket_of("unix:///a b"), None);
        assert_eq!(unix_socket_of("unix:///a\n/b"), None);
        assert_eq!(unix_socket_of(""), None);
    }
}
