//! The commands of servers over SSH: `keys:hq`, `provisioners*`,
//! `servers:provision`, `hosts`, and what `servers:add --ssh` and
//! `servers:remove` do besides registering (provisioners, hosts files).
//! A child of `commands` (its helpers and exit codes); the work is done by
//! [`crate::remote`], [`crate::provision`] and [`crate::hosts`].

use serde::Serialize;

use super::{CommandError, Fail, Res, fail, require_admin, show};
use crate::channel::{Input, Output, read_input};
use crate::daemon::Daemon;
use crate::provision;
use crate::store::KeyRecord;

pub(super) async fn keys_hq(d: &Daemon, key: &KeyRecord, out: &Output) -> Res {
    require_admin(key, "keys:hq")?;
    let hq = crate::remote::hq_key(d.store.root()).map_err(|e| fail(e.to_string()))?;
    out.out(crate::remote::hq_public_line(&hq)).await;
    Ok(())
}

#[derive(Serialize)]
struct ProvisionerView {
    name: String,
    sha1: String,
    bytes: usize,
    /// Servers whose last run of it succeeded with this very script.
    servers: Vec<String>,
    /// Servers that ran an older script, or whose last run failed.
    stale: Vec<String>,
}

pub(super) async fn provisioners(d: &Daemon, key: &KeyRecord, json: bool, out: &Output) -> Res {
    require_admin(key, "viewing provisioners")?;
    let stored = provision::list(d.store.root()).map_err(|e| fail(e.to_string()))?;
    let servers = d.fleet.list();
    let views: Vec<ProvisionerView> = stored
        .into_iter()
        .map(|p| {
            let ran = |ok: bool| {
                servers
                    .iter()
                    .filter(|s| {
                        s.provisioned
                            .get(&p.name)
                            .is_some_and(|r| (r.ok && r.sha1 == p.sha1) == ok)
                    })
                    .map(|s| s.name.clone())
                    .collect::<Vec<_>>()
            };
            ProvisionerView {
                servers: ran(true),
                stale: ran(false),
                name: p.name,
                sha1: p.sha1,
                bytes: p.bytes,
            }
        })
        .collect();
    let header = ["PROVISIONER", "SHA1", "BYTES", "SERVERS", "STALE"];
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(",")
        }
    };
    show(out, json, &views, None, &header, |v| {
        vec![
            v.name.clone(),
            v.sha1.clone(),
            v.bytes.to_string(),
            list(&v.servers),
            list(&v.stale),
        ]
    })
    .await;
    Ok(())
}

pub(super) async fn provisioners_add(
    d: &Daemon,
    key: &KeyRecord,
    name: &str,
    mut input: Input,
    out: &Output,
) -> Res {
    require_admin(key, "adding provisioners")?;
    let script = read_input(&mut input, provision::MAX_SCRIPT)
        .await
        .map_err(|e| fail(format!("provisioners:add {name}: {e}")))?;
    let sha1 = provision::add(d.store.root(), name, &script).map_err(|e| fail(e.to_string()))?;
    out.out(format!(
        "stored provisioner {name} ({} bytes, sha1 {sha1})\n",
        script.len()
    ))
    .await;
    Ok(())
}

pub(super) async fn provisioners_remove(
    d: &Daemon,
    key: &KeyRecord,
    name: &str,
    out: &Output,
) -> Res {
    require_admin(key, "removing provisioners")?;
    if !provision::remove(d.store.root(), name).map_err(|e| fail(e.to_string()))? {
        return Err(CommandError::NotFound(format!(
            "no provisioner named {name}"
        )));
    }
    out.out(format!("removed provisioner {name}\n")).await;
    Ok(())
}

/// Run `names` on `server` in order, output streamed to the caller
/// ([`crate::fleet::provision`]).
pub(super) async fn provision_server(
    d: &Daemon,
    server: &str,
    names: &[String],
    out: &Output,
) -> Res {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let run = crate::fleet::provision(&d.store, &d.fleet, server, names, tx);
    let relay = async {
        while let Some(chunk) = rx.recv().await {
            out.err(chunk).await;
        }
    };
    let (applied, ()) = tokio::join!(run, relay);
    match applied.map_err(|e| fail(e.to_string()))? {
        crate::fleet::Applied::Nothing => {
            out.out(format!("{server}: every provisioner is up to date\n"))
                .await
        }
        crate::fleet::Applied::Done => {
            out.out(format!("{server} is provisioned and takes containers\n"))
                .await
        }
    }
    Ok(())
}

pub(super) async fn servers_provision(
    d: &Daemon,
    key: &KeyRecord,
    server: &str,
    names: Vec<String>,
    out: &Output,
) -> Res {
    require_admin(key, "provisioning servers")?;
    let Some((record, _)) = d.fleet.get(server) else {
        return Err(CommandError::NotFound(format!("no server named {server}")));
    };
    let stored = provision::list(d.store.root()).map_err(|e| fail(e.to_string()))?;
    // Without names: the ones that ran there before and are due again.
    let known: Vec<provision::Provisioner> = stored
        .into_iter()
        .filter(|p| !names.is_empty() || record.provisioned.contains_key(&p.name))
        .collect();
    let due = provision::due(&known, &record.provisioned, &names);
    provision_server(d, server, &due, out).await
}

/// Why an SSH target cannot join: another server is reached there already.
pub(super) fn check_new_target(d: &Daemon, target: &crate::remote::SshTarget) -> Result<(), Fail> {
    match d.fleet.list().into_iter().find(|s| {
        s.ssh
            .as_ref()
            .is_some_and(|t| t.host == target.host && t.port == target.port)
    }) {
        Some(s) => Err(CommandError::Conflict(format!(
            "{}:{} is server {} already",
            target.host, target.port, s.name
        ))),
        None => Ok(()),
    }
}

/// After `servers:add`: the hosts files, then its provisioners.
pub(super) async fn after_add(
    d: &Daemon,
    server: &crate::fleet::Server,
    provision: &[String],
    out: &Output,
) -> Res {
    sync_hosts(d, out).await;
    if !provision.is_empty() {
        provision_server(d, &server.name, provision, out).await?;
    }
    Ok(())
}

/// Before `servers:remove`: an SSH server that leaves keeps an empty block.
pub(super) async fn before_remove(d: &Daemon, name: &str, out: &Output) {
    if let Some(link) = d.fleet.link(name)
        && let Err(e) = crate::hosts::write_remote(&link, &crate::hosts::render(&[])).await
    {
        out.err(format!("quarry: warning: hosts file on {name}: {e}\n"))
            .await;
    }
}

/// Rewrite the hosts block everywhere; failures are warnings.
pub(super) async fn sync_hosts(d: &Daemon, out: &Output) {
    for w in crate::hosts::sync(&d.fleet).await {
        out.err(format!("quarry: warning: {w}\n")).await;
    }
}

pub(super) async fn hosts(d: &Daemon, key: &KeyRecord, json: bool, out: &Output) -> Res {
    require_admin(key, "viewing the hosts file")?;
    let entries = crate::hosts::entries(&d.fleet.list());
    show(out, json, &entries, None, &["NAME", "ADDRESS"], |e| {
        vec![e.name.clone(), e.address.clone()]
    })
    .await;
    Ok(())
}
