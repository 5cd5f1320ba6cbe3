//! The `network` commands: the lockdown's state on every server
//! (`network [--json]`), `network:unlock` and `network:lock`; and the
//! refresh after a server joins or leaves. A child of `commands`; the work
//! is done by [`crate::lockdown`], which owns the tables and their records.

use serde::Serialize;

use super::{Res, fail, print_json, require_admin, table};
use crate::daemon::Daemon;
use crate::lockdown::{self, Record, TableState};
use crate::ssh::Output;
use crate::store::KeyRecord;

#[derive(Serialize)]
struct NetworkView {
    /// config.yml `network.lockdown`.
    lockdown: bool,
    /// Held off by `network:unlock`.
    unlocked: bool,
    servers: Vec<ServerRow>,
}

#[derive(Serialize)]
struct ServerRow {
    server: String,
    /// applied | failed | removed | skipped | none (never loaded).
    state: String,
    hash: Option<String>,
    at: Option<String>,
    error: Option<String>,
    /// The addresses its rules accept.
    fleet: Vec<String>,
}

fn state_name(s: TableState) -> &'static str {
    match s {
        TableState::Applied => "applied",
        TableState::Failed => "failed",
        TableState::Removed => "removed",
        TableState::Skipped => "skipped",
    }
}

pub(super) async fn show(d: &Daemon, key: &KeyRecord, json: bool, out: &Output) -> Res {
    require_admin(key, "viewing the network lockdown")?;
    let on = crate::cloud::Config::load(&d.store)
        .map_err(fail)?
        .network
        .lockdown;
    let records = lockdown::records(&d.store);
    let servers: Vec<ServerRow> = d
        .fleet
        .list()
        .into_iter()
        .map(|s| {
            let r = records.iter().find(|r| r.server == s.name);
            ServerRow {
                server: s.name.clone(),
                state: r.map_or("none", |r| state_name(r.state)).to_string(),
                hash: r.filter(|r| !r.hash.is_empty()).map(|r| r.hash.clone()),
                at: r.map(|r| r.at.clone()),
                error: r.and_then(|r| r.error.clone()),
                fleet: r.map(|r| r.fleet.clone()).unwrap_or_default(),
            }
        })
        .collect();
    let view = NetworkView {
        lockdown: on,
        unlocked: lockdown::unlocked(&d.store),
        servers,
    };
    if json {
        print_json(out, &view).await;
        return Ok(());
    }
    let headline = match (view.lockdown, view.unlocked) {
        (true, false) => "lockdown: on (table inet quarry on every server)",
        (true, true) => "lockdown: unlocked by network:unlock (network:lock loads it again)",
        (false, _) => "lockdown: off (config.yml network: { lockdown: true } turns it on)",
    };
    let rows: Vec<Vec<String>> = view
        .servers
        .iter()
        .map(|r| {
            vec![
                r.server.clone(),
                r.state.clone(),
                r.hash.clone().unwrap_or_else(|| "-".into()),
                r.at.clone().unwrap_or_else(|| "-".into()),
                r.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.out(format!(
        "{headline}\n{}",
        table(&["SERVER", "STATE", "RULES", "AT", "ERROR"], &rows)
    ))
    .await;
    Ok(())
}

/// `network:unlock` (`lock` false) and `network:lock`.
pub(super) async fn lock(d: &Daemon, key: &KeyRecord, lock: bool, out: &Output) -> Res {
    require_admin(
        key,
        if lock {
            "locking the network"
        } else {
            "unlocking the network"
        },
    )?;
    let records = lockdown::set_unlocked(&d.store, &d.fleet, &d.docker, !lock)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let failed = report(&records, out).await;
    let on = crate::cloud::Config::load(&d.store)
        .map_err(fail)?
        .network
        .lockdown;
    let text = match (lock, on) {
        (false, _) => format!(
            "unlocked: Quarry's table is gone from {} server(s); network:lock loads it again\n",
            records.len() - failed
        ),
        (true, true) => format!(
            "locked: rules loaded on {} server(s)\n",
            records.len() - failed
        ),
        (true, false) => {
            "nothing to load: config.yml has no network: { lockdown: true }\n".to_string()
        }
    };
    out.out(text).await;
    if failed > 0 {
        return Err(fail(format!("{failed} server(s) failed; see network")));
    }
    Ok(())
}

/// After a server joined or left: every server's rules again. A failure
/// is reported, not fatal: the server is in the fleet either way.
pub(super) async fn after_fleet_change(d: &Daemon, out: &Output) {
    let records = lockdown::refresh(&d.store, &d.fleet, &d.docker).await;
    let loaded = records
        .iter()
        .filter(|r| r.state == TableState::Applied)
        .count();
    let failed = report(&records, out).await;
    if loaded > 0 || failed > 0 {
        out.err(format!(
            "-----> Network lockdown: rules loaded on {loaded} server(s)\n"
        ))
        .await;
    }
}

async fn report(records: &[Record], out: &Output) -> usize {
    let mut failed = 0;
    for r in records {
        if let (TableState::Failed, Some(e)) = (r.state, &r.error) {
            failed += 1;
            out.err(format!("quarry: warning: lockdown: {e}\n")).await;
        }
    }
    failed
}
