//! The bridge between git's pre-receive hook and the daemon.
//!
//! Client side ([`pre_receive`], run as `quarry hook pre-receive` by the hook
//! script): reads the ref updates git gives on stdin, sends them with the push
//! token and git's quarantine variables to the daemon over a Unix socket, and
//! copies the daemon's progress lines to stderr (the pusher's `remote:`
//! lines). Its exit status is the daemon's verdict.
//!
//! Server side ([`serve`]): accepts those requests, checks the token and the
//! refs, and runs the deploy pipeline.
//!
//! Wire format: one JSON [`HookRequest`] line from the hook; then JSON
//! [`HookReply`] lines from the daemon, the last one carrying `exit`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::daemon::Daemon;
use crate::progress::Progress;
use crate::receive::QUARANTINE_VARS;

#[derive(Debug, Serialize, Deserialize)]
pub struct RefUpdate {
    pub old: String,
    pub new: String,
    #[serde(rename = "ref")]
    pub refname: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HookRequest {
    pub token: String,
    pub updates: Vec<RefUpdate>,
    /// git's quarantine variables, so the daemon can read the new objects.
    pub git_env: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HookReply {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
}

use crate::receive::ZERO_SHA as ZERO;

/// `quarry hook pre-receive`: returns the process exit code.
pub fn pre_receive() -> i32 {
    let fail = |msg: &str| {
        eprintln!("quarry: {msg}");
        1
    };
    let (Ok(socket), Ok(token)) = (
        std::env::var("QUARRY_SOCKET"),
        std::env::var("QUARRY_PUSH_TOKEN"),
    ) else {
        return fail("push through the Quarry SSH endpoint (ssh://git@HOST:PORT/APP)");
    };
    let mut updates = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let parts: Vec<&str> = line.split_whitespace().collect();
        if let [old, new, refname] = parts[..] {
            updates.push(RefUpdate {
                old: old.into(),
                new: new.into(),
                refname: refname.into(),
            });
        }
    }
    let git_env = QUARANTINE_VARS
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    let request = HookRequest {
        token,
        updates,
        git_env,
    };
    let mut stream = match std::os::unix::net::UnixStream::connect(&socket) {
        Ok(s) => s,
        Err(e) => {
            return fail(&format!(
                "the Quarry daemon is not answering at {socket}: {e}"
            ));
        }
    };
    let mut line = serde_json::to_string(&request).expect("serializable");
    line.push('\n');
    if let Err(e) = stream.write_all(line.as_bytes()) {
        return fail(&format!("cannot talk to the Quarry daemon: {e}"));
    }
    let stderr = std::io::stderr();
    for reply in BufReader::new(stream).lines() {
        let Ok(reply) = reply else { break };
        let Ok(reply) = serde_json::from_str::<HookReply>(&reply) else {
            continue;
        };
        if let Some(text) = reply.line {
            let mut e = stderr.lock();
            let _ = writeln!(e, "{text}");
            let _ = e.flush();
        }
        if let Some(code) = reply.exit {
            return code;
        }
    }
    fail("the Quarry daemon went away before the deploy finished; the push was not applied")
}

/// A hook request is one line of JSON: a token, one ref update and a few
/// paths. Anything longer, or slower, is not from our hook.
const MAX_REQUEST: u64 = 64 * 1024;
const REQUEST_TIME: Duration = Duration::from_secs(10);

/// Accept hook connections until `shutdown`. Accept errors are logged and
/// retried after a pause, so a full descriptor table never ends the listener.
pub async fn serve(
    daemon: Arc<Daemon>,
    listener: UnixListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut errors = crate::ssh::gate::Throttle::new(Duration::from_secs(5));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => return,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                if let Some(n) = errors.hit(std::time::Instant::now()) {
                    warn!(
                        "hook socket: accept failed ({n} time(s) since the last report): {e}; retrying"
                    );
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
        };
        let daemon = daemon.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(daemon, stream).await {
                warn!("hook connection: {e}");
            }
        });
    }
}

async fn handle(daemon: Arc<Daemon>, stream: UnixStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = tokio::io::BufReader::new(read).take(MAX_REQUEST + 1);
    let mut line = String::new();
    match tokio::time::timeout(REQUEST_TIME, read.read_line(&mut line)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return reply_exit(&mut write, &format!("bad hook request: {e}"), 1).await,
        Err(_) => {
            let msg = format!(
                "bad hook request: no complete line within {}s",
                REQUEST_TIME.as_secs()
            );
            return reply_exit(&mut write, &msg, 1).await;
        }
    }
    if line.len() as u64 > MAX_REQUEST {
        let msg = format!("bad hook request: longer than {MAX_REQUEST} bytes");
        return reply_exit(&mut write, &msg, 1).await;
    }
    let request: HookRequest = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => return reply_exit(&mut write, &format!("bad hook request: {e}"), 1).await,
    };
    let Some(mut push) = daemon.pushes.lookup(&request.token) else {
        return reply_exit(&mut write, "this push is not known to the daemon", 1).await;
    };
    // The key as it is now: removed or ungranted while the pack uploaded,
    // it deploys nothing.
    match daemon.store.key_by_fingerprint(&push.key.fingerprint) {
        Ok(Some(k)) if k.may_manage(&push.app) => push.key = k,
        Ok(Some(k)) => {
            let msg = format!(
                "permission denied: key {} may not push to app {}",
                k.name, push.app
            );
            return reply_exit(&mut write, &msg, 1).await;
        }
        Ok(None) => {
            let msg = format!("key {} was removed", push.key.name);
            return reply_exit(&mut write, &msg, 1).await;
        }
        Err(e) => {
            let msg = format!("cannot read key {}: {e}", push.key.name);
            return reply_exit(&mut write, &msg, 1).await;
        }
    }
    let update = match check_updates(&request.updates) {
        Ok(u) => u,
        Err(e) => return reply_exit(&mut write, &e.to_string(), 1).await,
    };

    let (progress, mut rx) = Progress::channel();
    let app = push.app.clone();
    let (old, new, refname) = (
        update.old.clone(),
        update.new.clone(),
        update.refname.clone(),
    );
    info!(app = %app, key = %push.key.name, commit = %new, "push received");
    let work = {
        let daemon = daemon.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            let update = crate::deploy::PushUpdate {
                old: &old,
                new: &new,
                refname: &refname,
                token: &request.token,
            };
            let result = crate::deploy::push(
                &daemon,
                &app,
                &push.key,
                &update,
                &request.git_env,
                &progress,
            )
            .await;
            let outcome = match &result {
                Ok(n) => format!("deployed v{n}"),
                Err(e) => format!("rejected: {e}"),
            };
            daemon.store.audit(
                Some(&app),
                &push.key,
                "push",
                &format!("{} {outcome}", &new[..7]),
            );
            result
        })
    };
    drop(progress);
    // Stream progress while the pipeline runs; a pusher that disconnects
    // does not stop the deploy (its result is recorded either way).
    let mut client_gone = false;
    while let Some(text) = rx.recv().await {
        if client_gone {
            continue;
        }
        let mut json = serde_json::to_string(&HookReply {
            line: Some(text),
            exit: None,
        })?;
        json.push('\n');
        if write.write_all(json.as_bytes()).await.is_err() {
            client_gone = true;
        }
    }
    let (text, code) = match work.await {
        Ok(Ok(_)) => (None, 0),
        Ok(Err(e)) => (Some(format!(" !     {e}")), 1),
        Err(e) => (Some(format!(" !     the deploy task failed: {e}")), 1),
    };
    if !client_gone {
        let mut json = serde_json::to_string(&HookReply {
            line: text,
            exit: Some(code),
        })?;
        json.push('\n');
        write.write_all(json.as_bytes()).await?;
    }
    Ok(())
}

async fn reply_exit(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    message: &str,
    code: i32,
) -> std::io::Result<()> {
    for reply in [
        HookReply {
            line: Some(format!(" !     {message}")),
            exit: None,
        },
        HookReply {
            line: None,
            exit: Some(code),
        },
    ] {
        let mut json = serde_json::to_string(&reply)?;
        json.push('\n');
        write.write_all(json.as_bytes()).await?;
    }
    Ok(())
}

/// Why a push's ref updates do not deploy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum UpdateError {
    #[error("nothing was pushed")]
    Nothing,
    #[error("only main or master deploy; push with `git push quarry HEAD:main` (got {0})")]
    OtherBranch(String),
    #[error("deleting {0} is not allowed; destroy the app with apps:destroy")]
    Deletion(String),
    #[error("invalid commit id {0:?}")]
    BadCommit(String),
    #[error("push one branch at a time: main or master")]
    Several,
}

/// Exactly one update, of `main` or `master`, that is not a deletion.
fn check_updates(updates: &[RefUpdate]) -> Result<&RefUpdate, UpdateError> {
    match updates {
        [] => Err(UpdateError::Nothing),
        [u] => {
            if u.refname != "refs/heads/main" && u.refname != "refs/heads/master" {
                return Err(UpdateError::OtherBranch(u.refname.clone()));
            }
            if u.new == ZERO {
                return Err(UpdateError::Deletion(u.refname.clone()));
            }
            if u.new.len() != 40 || !u.new.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(UpdateError::BadCommit(u.new.clone()));
            }
            Ok(u)
        }
        _ => Err(UpdateError::Several),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(refname: &str, new: &str) -> RefUpdate {
        RefUpdate {
            old: ZERO.into(),
            new: new.into(),
            refname: refname.into(),
        }
    }

    #[test]
    fn only_main_or_master_deploys() {
        let sha = "a".repeat(40);
        assert!(check_updates(&[u("refs/heads/main", &sha)]).is_ok());
        assert!(check_updates(&[u("refs/heads/master", &sha)]).is_ok());
        assert!(
            check_updates(&[u("refs/heads/dev", &sha)])
                .unwrap_err()
                .to_string()
                .contains("only main or master")
        );
        assert!(
            check_updates(&[u("refs/heads/main", ZERO)])
                .unwrap_err()
                .to_string()
                .contains("deleting")
        );
        assert!(
            check_updates(&[u("refs/heads/main", &sha), u("refs/heads/master", &sha)]).is_err()
        );
        assert_eq!(
            check_updates(&[]).unwrap_err().to_string(),
            "nothing was pushed"
        );
        assert_eq!(
            check_updates(&[u("refs/heads/main", "xyz")]).unwrap_err(),
            UpdateError::BadCommit("xyz".into())
        );
    }
}
