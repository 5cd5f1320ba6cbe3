//! The live authenticated SSH connections, by key, so a removed key loses
//! the connections it already has (a `logs -f`, a long push, a multiplexed
//! master), not only new ones.
//!
//! Removal is noticed two ways: `keys:remove` over SSH closes the key's
//! connections at once ([`Sessions::close_removed`]), and since `quarry keys
//! remove` on the host only deletes the key's file, a sweep every
//! [`SWEEP_EVERY`] re-reads the keys while any connection is open. Every exec
//! also re-reads its key (see `ssh.rs`), so a removed key runs nothing more
//! even between sweeps.
//!
//! It touches memory and reads `keys/`; closing a connection throws its
//! [`Switch`], which fails the connection's stream.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Context;
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use russh::server::Handle;
use russh::{ChannelId, Disconnect};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::store::Store;

/// How often the keys are re-read while connections are open.
pub const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// One authenticated connection.
pub struct Live {
    pub key: String,
    pub fingerprint: String,
    switch: Arc<Switch>,
    /// Set at the first exec: where a closing notice can be written.
    handle: Mutex<Option<Handle>>,
    channels: Mutex<BTreeSet<ChannelId>>,
}

impl Live {
    /// Remember where to write a notice for `channel`.
    pub fn open_channel(&self, handle: &Handle, channel: ChannelId) {
        let mut h = self.handle.lock().expect("live");
        if h.is_none() {
            *h = Some(handle.clone());
        }
        self.channels.lock().expect("live").insert(channel);
    }

    pub fn close_channel(&self, channel: ChannelId) {
        self.channels.lock().expect("live").remove(&channel);
    }

    /// Tell every open channel why and end the session politely; fail the
    /// stream if that has not ended it within [`POLITE`] (a peer that reads
    /// nothing is closed all the same).
    pub async fn close(&self, why: &str) {
        let handle = self.handle.lock().expect("live").clone();
        let channels: Vec<ChannelId> = self
            .channels
            .lock()
            .expect("live")
            .iter()
            .copied()
            .collect();
        if let Some(handle) = handle {
            let notice = Bytes::from(format!("quarry: {why}; closing the connection\n"));
            let polite = async {
                for c in channels {
                    let _ = handle.extended_data(c, 1, notice.clone()).await;
                    let _ = handle
                        .exit_status_request(c, crate::command::EXIT_DENIED)
                        .await;
                    let _ = handle.eof(c).await;
                    let _ = handle.close(c).await;
                }
                let _ = handle
                    .disconnect(Disconnect::ByApplication, why.to_string(), String::new())
                    .await;
                self.switch.ended().await;
            };
            let _ = tokio::time::timeout(POLITE, polite).await;
        }
        self.switch.throw();
    }
}

/// How long a closing session may take to say why before its stream fails.
const POLITE: Duration = Duration::from_secs(2);

/// Every live connection, by an id of its own.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<u64, Arc<Live>>>,
    next: AtomicU64,
}

impl Sessions {
    /// Record an authenticated connection unless its key has `cap` already;
    /// keep the id to [`Sessions::remove`] it.
    pub fn add_within(
        &self,
        key: &str,
        fingerprint: &str,
        switch: Arc<Switch>,
        cap: Option<usize>,
    ) -> Option<(u64, Arc<Live>)> {
        let mut all = self.live.lock().expect("sessions");
        if let Some(cap) = cap
            && all
                .values()
                .filter(|l| l.fingerprint == fingerprint)
                .count()
                >= cap
        {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let live = Arc::new(Live {
            key: key.to_string(),
            fingerprint: fingerprint.to_string(),
            switch,
            handle: Mutex::default(),
            channels: Mutex::default(),
        });
        all.insert(id, live.clone());
        Some((id, live))
    }

    pub fn remove(&self, id: u64) {
        self.live.lock().expect("sessions").remove(&id);
    }

    pub fn len(&self) -> usize {
        self.live.lock().expect("sessions").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Close the connections of keys that are no longer in `keys/`; returns
    /// how many were closed. A key re-added with the same public key under
    /// the same fingerprint keeps its connections.
    pub async fn close_removed(&self, store: &Store) -> usize {
        if self.is_empty() {
            return 0;
        }
        let keys = match store.keys() {
            Ok(k) => k,
            Err(e) => {
                // Closing everything on a read error would turn a transient
                // fault into an outage; the next sweep tries again.
                warn!("cannot read the keys to check live connections: {e}");
                return 0;
            }
        };
        let known: BTreeSet<&str> = keys.iter().map(|k| k.fingerprint.as_str()).collect();
        let gone: Vec<(u64, Arc<Live>)> = {
            let mut live = self.live.lock().expect("sessions");
            let ids: Vec<u64> = live
                .iter()
                .filter(|(_, l)| !known.contains(l.fingerprint.as_str()))
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| live.remove(&id).map(|l| (id, l)))
                .collect()
        };
        for (_, l) in &gone {
            info!(key = %l.key, "closing a connection of a removed key");
            l.close(&format!("key {} was removed", l.key)).await;
        }
        gone.len()
    }

    /// Re-read the keys every [`SWEEP_EVERY`] until `shutdown`.
    pub async fn sweep_forever(self: Arc<Self>, store: Store, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_EVERY) => {}
                _ = shutdown.changed() => return,
            }
            self.close_removed(&store).await;
        }
    }
}

/// Thrown once, fails every later read and write of its guarded stream.
pub struct Switch {
    thrown: AtomicBool,
    authenticated: AtomicBool,
    pub(crate) read: AtomicWaker,
    pub(crate) write: AtomicWaker,
    /// Becomes true when the stream is dropped (the session is over).
    pub(crate) ended: tokio::sync::watch::Sender<bool>,
}

impl Default for Switch {
    fn default() -> Switch {
        Switch {
            thrown: AtomicBool::new(false),
            authenticated: AtomicBool::new(false),
            read: AtomicWaker::new(),
            write: AtomicWaker::new(),
            ended: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl Switch {
    /// Resolves when the stream has been dropped.
    pub async fn ended(&self) {
        let mut rx = self.ended.subscribe();
        let _ = rx.wait_for(|e| *e).await;
    }

    pub fn throw(&self) {
        self.thrown.store(true, Ordering::SeqCst);
        self.read.wake();
        self.write.wake();
    }

    pub fn set_authenticated(&self) {
        self.authenticated.store(true, Ordering::SeqCst);
    }

    pub fn authenticated(&self) -> bool {
        self.authenticated.load(Ordering::SeqCst)
    }

    pub(crate) fn check(
        &self,
        waker: &AtomicWaker,
        cx: &Context<'_>,
    ) -> Result<(), std::io::Error> {
        waker.register(cx.waker());
        if self.thrown.load(Ordering::SeqCst) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "connection closed by the endpoint",
            ));
        }
        Ok(())
    }

    /// Throw the switch after `limit` unless the connection authenticated.
    pub async fn deadline(self: Arc<Self>, limit: Duration) -> bool {
        tokio::time::sleep(limit).await;
        if self.authenticated() {
            return false;
        }
        self.throw();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capped_key_gets_no_more_sessions_and_others_are_not_counted() {
        let sessions = Sessions::default();
        let switch = || Arc::new(Switch::default());
        let (first, _) = sessions
            .add_within("dev", "SHA256:dev", switch(), Some(2))
            .unwrap();
        assert!(
            sessions
                .add_within("dev", "SHA256:dev", switch(), Some(2))
                .is_some()
        );
        assert!(
            sessions
                .add_within("dev", "SHA256:dev", switch(), Some(2))
                .is_none()
        );
        assert!(
            sessions
                .add_within("ops", "SHA256:ops", switch(), Some(2))
                .is_some()
        );
        assert!(
            sessions
                .add_within("root", "SHA256:root", switch(), None)
                .is_some()
        );
        sessions.remove(first);
        assert!(
            sessions
                .add_within("dev", "SHA256:dev", switch(), Some(2))
                .is_some()
        );
        assert_eq!(sessions.len(), 4);
    }
}
