//! The SSH endpoint: authenticates keys against the db, parses each exec
//! request (never through a shell) and either bridges the channel to a real
//! `git receive-pack`/`git upload-pack` or runs a control command.
//!
//! It may touch: the network listener, git child processes, and the daemon's
//! command layer. It never builds or launches anything itself: a push reaches
//! the pipeline through the repo's pre-receive hook (see `hook.rs`).
//!
//! Layout: `listen` (accepting, under `gate`'s caps), `handler` (one
//! connection: auth, channels, pty, input), `exec` (one exec request: the
//! key as it is now, the line parsed, then git or a command), `git` (the
//! git child bridged to the channel), `redact` (command lines for the log).

use std::time::Duration;

use russh::{MethodKind, MethodSet};

use crate::daemon::Daemon;

mod exec;
pub mod gate;
mod git;
mod handler;
mod listen;
pub mod redact;

pub use crate::channel::{Closed, Input, Output, Terminal, read_input};
use handler::Connection;
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
