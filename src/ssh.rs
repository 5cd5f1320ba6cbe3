//! The SSH endpoint: authenticates keys against the db, parses each exec
//! request (never through a shell) and either bridges the channel to a real
//! `git receive-pack`/`git upload-pack` or runs a control command.
//!
//! It may touch: the network listener, git child processes, and the daemon's
//! command layer. It never builds or launches anything itself: a push reaches
//! the pipeline through the repo's pre-receive hook (see `hook.rs`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use russh::keys::ssh_key::HashAlg;
use russh::server::{Auth, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::command::{self, GitService, Request};
use crate::daemon::Daemon;
use crate::store::KeyRecord;
use crate::validate;

pub mod gate;
mod listen;
pub mod redact;

pub use crate::channel::{Closed, Input, Output, Terminal, read_input};
use crate::sessions::Live;
use gate::{Switch, Ticket};
pub use listen::run;

/// Chunks of a client's input held for a child that reads slower than the
/// client sends (at most ~8 MiB with 32 KiB packets). When full, the
/// connection's event loop waits for the child: a fast pusher is slowed to
/// the speed of `git receive-pack` instead of filling memory.
const INPUT_QUEUE: usize = 256;

fn server_config(daemon: &Daemon) -> anyhow::Result<russh::server::Config> {
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    Ok(russh::server::Config {
        server_id: russh::SshId::Standard(
            format!("SSH-2.0-Quarry_{}", env!("CARGO_PKG_VERSION")).into(),
        ),
        methods,
        keys: vec![daemon.host_key.clone()],
        // OpenSSH probes with `none` first; answering at once saves a second
        // on every command. Real rejections keep the constant delay.
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::ZERO),
        // Builds can be silent for minutes: keep the connection alive rather
        // than timing it out, and notice a vanished client.
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 4,
        nodelay: true,
        ..Default::default()
    })
}

struct ChannelState {
    stdin: Option<mpsc::Sender<Bytes>>,
    /// Dropped when the channel closes, which wakes every [`Closed`].
    _closed: watch::Sender<()>,
    closed_rx: watch::Receiver<()>,
    git_protocol: Option<String>,
    started: bool,
    /// Set by a pty request before the exec; window changes update it.
    terminal: Option<(String, watch::Sender<(u16, u16)>)>,
}

struct Connection {
    daemon: Arc<Daemon>,
    peer: SocketAddr,
    /// As of the last exec (re-read from the db at each).
    key: Option<KeyRecord>,
    channels: HashMap<ChannelId, ChannelState>,
    /// Fails the stream: at the auth deadline, or when the key is removed.
    switch: Arc<Switch>,
    /// The connection's place under the unauthenticated caps, until it authenticates.
    ticket: Option<Ticket>,
    /// Its entry in the daemon's live sessions, once authenticated.
    live: Option<(u64, Arc<Live>)>,
    max_sessions_per_key: usize,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some((id, _)) = &self.live {
            self.daemon.sessions.remove(*id);
        }
    }
}

impl russh::server::Handler for Connection {
    type Error = anyhow::Error;

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let fingerprint = key.public_key.fingerprint(HashAlg::Sha256).to_string();
        match self.daemon.store.key_by_fingerprint(&fingerprint)? {
            Some(record) => {
                let cap =
                    (record.role != crate::store::Role::Admin).then_some(self.max_sessions_per_key);
                self.live = self.daemon.sessions.add_within(
                    &record.name,
                    &record.fingerprint,
                    self.switch.clone(),
                    cap,
                );
                if self.live.is_some() {
                    info!(peer = %self.peer, user, key = %record.name, "authenticated");
                    self.switch.set_authenticated();
                    self.ticket = None;
                } else {
                    // Logged in but over its key's cap: it stays under the
                    // unauthenticated rules (deadline, caps) and its first
                    // exec is answered with the reason.
                    warn!(peer = %self.peer, key = %record.name, "connection over the key's cap of {} sessions", self.max_sessions_per_key);
                }
                self.key = Some(record);
                Ok(Auth::Accept)
            }
            None => {
                warn!(peer = %self.peer, user, %fingerprint, "unknown key refused");
                Ok(Auth::reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (tx, rx) = watch::channel(());
        self.channels.insert(
            channel.id(),
            ChannelState {
                stdin: None,
                _closed: tx,
                closed_rx: rx,
                git_protocol: None,
                started: false,
                terminal: None,
            },
        );
        // The `Channel` itself is dropped: all traffic goes through the
        // handler callbacks, and an unread channel would stall the session.
        drop(channel);
        reply.accept().await;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Only git's protocol version is honoured; other variables never
        // reach a child process.
        if name == "GIT_PROTOCOL"
            && value.len() < 64
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"=:.".contains(&b))
            && let Some(state) = self.channels.get_mut(&channel)
        {
            state.git_protocol = Some(value.to_string());
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let out = Output::new(session.handle(), channel);
        tokio::spawn(async move {
            out.err("quarry: interactive shells are not offered; run `ssh … help` to see the commands\n")
                .await;
            out.finish(command::EXIT_USAGE).await;
        });
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(authenticated) = self.key.clone() else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        // Role and grants as they are now, not as they were at login.
        let current = self
            .daemon
            .store
            .key_by_fingerprint(&authenticated.fingerprint);
        if let Ok(Some(k)) = &current {
            self.key = Some(k.clone());
        }
        if let Some((_, live)) = &self.live {
            live.open_channel(&session.handle(), channel);
        } else {
            session.channel_success(channel)?;
            let out = Output::new(session.handle(), channel);
            let (name, cap) = (authenticated.name.clone(), self.max_sessions_per_key);
            // The client leaves after the exit status; one that stays is
            // closed at the auth deadline, as it never counted as logged in.
            tokio::spawn(async move {
                out.err(format!(
                    "quarry: key {name} has {cap} connections open already; close one and try again\n"
                ))
                .await;
                out.finish(command::EXIT_DENIED).await;
            });
            return Ok(());
        }
        let Some(state) = self.channels.get_mut(&channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        if state.started {
            session.channel_failure(channel)?;
            return Ok(());
        }
        state.started = true;
        session.channel_success(channel)?;
        let (stdin_tx, stdin_rx) = mpsc::channel(INPUT_QUEUE);
        state.stdin = Some(stdin_tx);
        let out = Output::new(session.handle(), channel);
        let closed = Closed::new(state.closed_rx.clone());
        let terminal = state.terminal.as_ref().map(|(term, size)| Terminal {
            term: term.clone(),
            size: size.subscribe(),
        });
        let git_protocol = state.git_protocol.clone();
        let daemon = self.daemon.clone();
        let line = if data.len() > validate::MAX_COMMAND_LEN {
            Err(format!(
                "command line is longer than {} bytes",
                validate::MAX_COMMAND_LEN
            ))
        } else {
            String::from_utf8(data.to_vec()).map_err(|_| "command line is not UTF-8".to_string())
        };
        // Slow work never runs on the connection's event loop.
        tokio::spawn(async move {
            let key = match current {
                Ok(Some(k)) => k,
                Ok(None) => {
                    warn!(key = %authenticated.name, "exec refused: the key was removed");
                    out.err(format!("quarry: key {} was removed\n", authenticated.name))
                        .await;
                    out.finish(command::EXIT_DENIED).await;
                    daemon.sessions.close_removed(&daemon.store).await;
                    return;
                }
                Err(e) => {
                    out.err(format!(
                        "quarry: cannot read key {}: {e}\n",
                        authenticated.name
                    ))
                    .await;
                    out.finish(command::EXIT_FAILURE).await;
                    return;
                }
            };
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    out.err(format!("quarry: {e}\n")).await;
                    out.finish(command::EXIT_USAGE).await;
                    return;
                }
            };
            info!(key = %key.name, command = %redact::loggable(&line), "exec");
            match command::parse_line(&line) {
                Ok(Request::Git { service, app }) => {
                    let code =
                        git_service(&daemon, &key, service, &app, git_protocol, stdin_rx, &out)
                            .await;
                    out.finish(code).await;
                }
                Ok(Request::Command(cmd)) => {
                    let code = crate::commands::run(
                        &daemon,
                        &key,
                        cmd,
                        stdin_rx,
                        out.clone(),
                        closed,
                        terminal,
                    )
                    .await;
                    out.finish(code).await;
                }
                Err(e) => {
                    out.err(format!("quarry: {e}\n")).await;
                    out.finish(e.code()).await;
                }
            }
        });
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get_mut(&channel) {
            Some(state) if !state.started => {
                let term: String = term
                    .chars()
                    .filter(|c| c.is_ascii_graphic())
                    .take(64)
                    .collect();
                let (tx, _) = watch::channel(terminal_size(col_width, row_height));
                state.terminal = Some((term, tx));
                session.channel_success(channel)?;
            }
            _ => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some((_, size)) = self
            .channels
            .get(&channel)
            .and_then(|s| s.terminal.as_ref())
        {
            size.send_replace(terminal_size(col_width, row_height));
        }
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(tx) = self.channels.get(&channel).and_then(|s| s.stdin.clone()) {
            // Waits while the queue is full; fails at once when nobody reads.
            let _ = tx.send(Bytes::copy_from_slice(data)).await;
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Client EOF ends the child's stdin only; the channel lives on.
        if let Some(state) = self.channels.get_mut(&channel) {
            state.stdin = None;
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        if let Some((_, live)) = &self.live {
            live.close_channel(channel);
        }
        Ok(())
    }
}

/// A window size as the engine takes it, clamped to something sane.
fn terminal_size(cols: u32, rows: u32) -> (u16, u16) {
    let clamp = |v: u32, default: u16| match v {
        0 => default,
        v => u16::try_from(v.min(1000)).unwrap_or(1000),
    };
    (clamp(cols, 80), clamp(rows, 24))
}

/// Run `git receive-pack` or `git upload-pack` for `app`, bridged to the channel.
async fn git_service(
    daemon: &Arc<Daemon>,
    key: &KeyRecord,
    service: GitService,
    app: &str,
    git_protocol: Option<String>,
    mut stdin: Input,
    out: &Output,
) -> u32 {
    let exists = daemon.store.app_exists(app);
    // A deployer allowed to create apps may push to a name that does not exist yet.
    let may_create = service == GitService::ReceivePack && !exists && key.create;
    if !(key.may_manage(app) || may_create) {
        out.err(format!(
            "quarry: permission denied: key {} may not push to or fetch app {app}\n",
            key.name
        ))
        .await;
        return command::EXIT_DENIED;
    }
    if !exists {
        if service == GitService::UploadPack {
            out.err(format!("quarry: app {app} does not exist\n")).await;
            return command::EXIT_NOT_FOUND;
        }
        if key.role != crate::store::Role::Admin && !key.create {
            out.err(format!(
                "quarry: permission denied: key {} may not create apps (app {app} does not exist)\n",
                key.name
            ))
            .await;
            return command::EXIT_DENIED;
        }
        if let Err(e) = crate::receive::create_app(&daemon.store, app) {
            out.err(format!("quarry: cannot create app {app}: {e}\n"))
                .await;
            return command::EXIT_FAILURE;
        }
        if key.role != crate::store::Role::Admin {
            let _ = daemon.store.grant(&key.name, app);
        }
        daemon
            .store
            .audit(Some(app), key, "apps:create", "by first push");
        info!(app, key = %key.name, "app created by first push");
    }

    let repo = daemon.store.repo_dir(app);
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg(service.subcommand())
        .arg(&repo)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", daemon.store.root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(p) = git_protocol {
        cmd.env("GIT_PROTOCOL", p);
    }
    let push = (service == GitService::ReceivePack).then(|| daemon.pushes.begin(app, key));
    if let Some(push) = &push {
        cmd.env("QUARRY_SOCKET", daemon.hook_socket())
            .env("QUARRY_BIN", &daemon.bin)
            .env("QUARRY_PUSH_TOKEN", push.token());
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            out.err(format!("quarry: cannot run git: {e}\n")).await;
            return command::EXIT_FAILURE;
        }
    };
    let mut child_in = child.stdin.take().expect("piped");
    let mut child_out = child.stdout.take().expect("piped");
    let mut child_err = child.stderr.take().expect("piped");
    let pump_in = tokio::spawn(async move {
        while let Some(chunk) = stdin.recv().await {
            if child_in.write_all(&chunk).await.is_err() {
                break;
            }
        }
        // Dropping child_in closes git's stdin.
    });
    let o = out.clone();
    let pump_out = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match child_out.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => o.out(Bytes::copy_from_slice(&buf[..n])).await,
            }
        }
    });
    let o = out.clone();
    let pump_err = tokio::spawn(async move {
        let mut buf = vec![0u8; 8 * 1024];
        loop {
            match child_err.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => o.err(Bytes::copy_from_slice(&buf[..n])).await,
            }
        }
    });
    // Drain stdout and stderr fully before the exit status goes out.
    let _ = pump_out.await;
    let _ = pump_err.await;
    let status = child.wait().await;
    pump_in.abort();
    drop(push);
    match status {
        Ok(s) => s.code().map_or(command::EXIT_FAILURE, |c| c as u32),
        Err(e) => {
            out.err(format!("quarry: git failed: {e}\n")).await;
            command::EXIT_FAILURE
        }
    }
}
