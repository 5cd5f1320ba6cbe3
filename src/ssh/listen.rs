//! The SSH listener: accepts connections for as long as the daemon runs,
//! admits each under the unauthenticated caps ([`Gate`]) and starts its
//! russh session on a [`Guarded`] stream with an auth deadline.
//!
//! It touches the listening socket; sessions are `handler`'s [`Connection`].

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::gate::{self, Gate, Guarded, Limits, Refusal, Switch};
use super::{Connection, server_config};
use crate::daemon::Daemon;

/// Accept connections until `shutdown` fires. Accept errors (a full
/// descriptor table above all) are logged and retried after a short pause:
/// the listener ends only with the daemon.
pub async fn run(
    daemon: Arc<Daemon>,
    listener: TcpListener,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let config = Arc::new(server_config(&daemon)?);
    let gate = Gate::new(limits);
    let mut pause = ACCEPT_PAUSE_MIN;
    let mut accept_errors = gate::Throttle::new(Duration::from_secs(5));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => return Ok(()),
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                pause = ACCEPT_PAUSE_MIN;
                a
            }
            Err(e) => {
                if let Some(n) = accept_errors.hit(std::time::Instant::now()) {
                    warn!(
                        "ssh listener: accept failed ({n} time(s) since the last report): {e}; retrying"
                    );
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
                pause = (pause * 2).min(ACCEPT_PAUSE_MAX);
                continue;
            }
        };
        let ticket = match gate.admit(peer.ip()) {
            Ok(t) => t,
            Err(refusal) => {
                if let Some(n) = gate.log_refusal() {
                    let why = match refusal {
                        Refusal::Global => format!(
                            "{} unauthenticated connections in all",
                            gate.limits().max_unauthenticated
                        ),
                        Refusal::PerAddress => format!(
                            "{} unauthenticated connections from this address",
                            gate.limits().max_unauthenticated_per_address
                        ),
                    };
                    warn!(%peer, refused = n, "ssh connection closed at accept: already {why}");
                }
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let switch = Arc::new(Switch::default());
        let handler = Connection::new(
            daemon.clone(),
            peer,
            switch.clone(),
            ticket,
            gate.limits().max_sessions_per_key,
        );
        let config = config.clone();
        let limit = gate.limits().auth_timeout;
        tokio::spawn(async move {
            let watchdog = tokio::spawn({
                let switch = switch.clone();
                async move {
                    if switch.deadline(limit).await {
                        debug!(%peer, "ssh connection closed: not authenticated within {limit:?}");
                    }
                }
            });
            let stream = Guarded::new(stream, switch);
            match russh::server::run_stream(config, stream, handler).await {
                Ok(session) => {
                    if let Err(e) = session.await {
                        debug!(%peer, "ssh session ended: {e}");
                    }
                }
                Err(e) => debug!(%peer, "ssh handshake failed: {e}"),
            }
            watchdog.abort();
        });
    }
}

/// Pauses between failed accepts: short enough that the port answers again
/// soon after descriptors free up, long enough not to spin.
const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(10);
const ACCEPT_PAUSE_MAX: Duration = Duration::from_millis(500);
