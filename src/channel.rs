//! One SSH channel as commands see it: where they write (stdout, stderr,
//! the exit status), what the client sends (stdin, bounded reads), the
//! terminal it asked for, and when it goes away. The SSH endpoint makes
//! these; commands and one-offs only use them. May touch: the channel.

use bytes::Bytes;
use russh::ChannelId;
use russh::server::Handle;
use tokio::sync::{mpsc, watch};

/// Where a command writes: stdout and stderr of one SSH channel.
#[derive(Clone)]
pub struct Output {
    handle: Handle,
    channel: ChannelId,
}

impl Output {
    pub fn new(handle: Handle, channel: ChannelId) -> Output {
        Output { handle, channel }
    }

    /// Write to the client's stdout. Errors mean the client went away; callers
    /// keep going and the work finishes regardless.
    pub async fn out(&self, data: impl Into<Bytes>) {
        let _ = self.handle.data(self.channel, data.into()).await;
    }

    /// Write to the client's stderr.
    pub async fn err(&self, data: impl Into<Bytes>) {
        let _ = self
            .handle
            .extended_data(self.channel, 1, data.into())
            .await;
    }

    /// Exit status, EOF, close: in that order, or `git` reports a failure
    /// even when the ref moved.
    pub async fn finish(&self, code: u32) {
        let _ = self.handle.exit_status_request(self.channel, code).await;
        let _ = self.handle.eof(self.channel).await;
        let _ = self.handle.close(self.channel).await;
    }
}

/// The client's stdin for one channel: chunks until EOF (`None`).
pub type Input = mpsc::Receiver<Bytes>;

/// Why a command's standard input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("standard input is longer than {limit} bytes")]
    TooLong { limit: usize },
}

/// Read all of stdin, up to `limit` bytes.
pub async fn read_input(input: &mut Input, limit: usize) -> Result<Vec<u8>, InputError> {
    let mut buf = Vec::new();
    while let Some(chunk) = input.recv().await {
        if buf.len() + chunk.len() > limit {
            return Err(InputError::TooLong { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// A terminal the client asked for (`ssh -t`): its type and its size,
/// which follows every window change.
#[derive(Clone)]
pub struct Terminal {
    pub term: String,
    /// (columns, rows).
    pub size: watch::Receiver<(u16, u16)>,
}

/// Resolves when the client closes the channel or the connection.
#[derive(Clone)]
pub struct Closed(watch::Receiver<()>);

impl Closed {
    pub fn new(closed: watch::Receiver<()>) -> Closed {
        Closed(closed)
    }

    pub async fn wait(&mut self) {
        while self.0.changed().await.is_ok() {}
    }
}
