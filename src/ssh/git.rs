//! `git receive-pack` / `git upload-pack` for one app, bridged to an SSH
//! channel: permission checks, creating an app on its first push, the
//! child's environment (cleared but for PATH, HOME, the protocol and the
//! hook's socket and token), and the pumps that drain its output before
//! the exit status goes out.
//!
//! It may touch: the app's bare repo (through git), the store (app creation,
//! grants, audit), the daemon's push registry.

use std::process::Stdio;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::info;

use super::{Input, Output};
use crate::command::{self, GitService};
use crate::daemon::Daemon;
use crate::store::KeyRecord;

/// Run `git receive-pack` or `git upload-pack` for `app`, bridged to the channel.
pub(super) async fn git_service(
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
