//! One SSH connection: public-key auth against the db (and the key's cap
//! of sessions), its channels, env, pty and window changes, and the client's
//! input queued for the child. An exec request is handed to `exec` on its
//! own task, so slow work never runs on the connection's event loop.
//!
//! It may touch: the daemon's store (keys) and live sessions, the channels
//! of its own connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use russh::keys::ssh_key::HashAlg;
use russh::server::{Auth, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::exec;
use super::gate::{Switch, Ticket};
use super::{Closed, INPUT_QUEUE, Output, Terminal};
use crate::command;
use crate::daemon::Daemon;
use crate::sessions::Live;
use crate::store::KeyRecord;

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

pub(super) struct Connection {
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

impl Connection {
    /// A connection not yet authenticated, holding its place under the caps.
    pub(super) fn new(
        daemon: Arc<Daemon>,
        peer: SocketAddr,
        switch: Arc<Switch>,
        ticket: Ticket,
        max_sessions_per_key: usize,
    ) -> Connection {
        Connection {
            daemon,
            peer,
            key: None,
            channels: HashMap::new(),
            switch,
            ticket: Some(ticket),
            live: None,
            max_sessions_per_key,
        }
    }
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
        let line = exec::line(data);
        // Slow work never runs on the connection's event loop.
        tokio::spawn(
            exec::Exec {
                daemon: self.daemon.clone(),
                authenticated,
                current,
                git_protocol: state.git_protocol.clone(),
                stdin: stdin_rx,
                out,
                closed,
                terminal,
            }
            .run(line),
        );
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
