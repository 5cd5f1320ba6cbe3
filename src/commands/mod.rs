//! Executes control commands (`ssh … <command>`): checks the key's rights,
//! reads the db or the engine, and writes the answer to the channel.
//!
//! One function per command; [`run`] matches the closed [`Cmd`] enum with no
//! catch-all arm. Read commands print a table, or stable JSON with `--json`.
//! Errors are one line on stderr; the return value is the exit code.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use futures_util::StreamExt;
use serde::Serialize;

use crate::channel::{Closed, Input, Output, Terminal, read_input};
use crate::command::{self, Cmd, EXIT_OK};
use crate::daemon::Daemon;
use crate::deploy;
use crate::launch;
use crate::progress::Progress;
use crate::stack;
use crate::store::{self, KeyRecord, Release, Role};
use crate::validate::{AppName, Domain, EnvKey};

mod apps;
mod certs;
mod config;
mod domains;
mod error;
mod events;
mod keys;
mod logs;
mod network;
mod oneoff;
mod ps;
mod releases;
mod remote;
mod servers;
mod volumes;

use apps::*;
use config::*;
use domains::*;
use events::*;
use keys::*;
use logs::*;
use ps::*;
use releases::*;
use servers::*;
use volumes::*;

use error::CommandError;

/// A failed command (its kind decides the exit code).
type Fail = CommandError;

type Res = Result<(), Fail>;

/// Any failure of the work itself (exit 1), told by its own message.
fn fail(e: impl std::fmt::Display) -> Fail {
    CommandError::Failed(e.to_string())
}

/// Run one command; returns its exit code.
pub async fn run(
    d: &Arc<Daemon>,
    key: &KeyRecord,
    cmd: Cmd,
    input: Input,
    out: Output,
    closed: Closed,
    terminal: Option<Terminal>,
) -> u32 {
    let audit = audited(&cmd);
    let result = dispatch(d, key, cmd, input, &out, closed, terminal).await;
    if let Some((app, action, detail)) = audit {
        let outcome = match &result {
            Ok(()) => detail,
            Err(e) => format!("{detail} failed: {e}"),
        };
        // A destroyed app has no log left to write to: that goes to the fleet's.
        let app = app.filter(|a| d.store.app_exists(a));
        d.store.audit(app.as_deref(), key, action, outcome.trim());
    }
    match result {
        Ok(()) => EXIT_OK,
        Err(e) => {
            let msg = e.to_string();
            // A one-off's own non-zero exit: it has said what it had to.
            if !msg.is_empty() {
                out.err(format!("quarry: {msg}\n")).await;
            }
            e.exit_code()
        }
    }
}

async fn dispatch(
    d: &Arc<Daemon>,
    key: &KeyRecord,
    cmd: Cmd,
    input: Input,
    out: &Output,
    closed: Closed,
    terminal: Option<Terminal>,
) -> Res {
    match cmd {
        Cmd::Help { topic } => help(topic, out).await,
        Cmd::CommandHelp { name } => {
            let spec = command::spec(name).expect("parsed commands have a spec");
            out.out(command::command_help(spec)).await;
            Ok(())
        }
        Cmd::Apps { json } => apps(d, key, json, out).await,
        Cmd::AppsCreate { app } => apps_create(d, key, &app, out).await,
        Cmd::AppsDestroy { app } => apps_destroy(d, key, &app, out).await,
        Cmd::Ps { app, json } => ps(d, key, &app, json, out).await,
        Cmd::PsRestart { app, node } => ps_restart(d, key, &app, node, out).await,
        Cmd::Releases { app, json } => releases(d, key, &app, json, out).await,
        Cmd::ReleasesInfo { app, release, json } => {
            releases_info(d, key, &app, release, json, out).await
        }
        Cmd::Rollback { app, release } => rollback(d, key, &app, release, out).await,
        Cmd::Logs {
            app,
            lines,
            follow: _,
            node: _,
            cron: Some(job),
        } => oneoff::logs(d, key, &app, &job, lines, out).await,
        Cmd::Logs {
            app,
            lines,
            follow,
            node,
            cron: None,
        } => logs(d, key, &app, lines, follow, node, out, closed).await,
        Cmd::Run(args) => {
            oneoff::exit(oneoff::run(d, key, args, input, out, closed, terminal).await)
        }
        Cmd::Enter {
            app,
            node,
            index,
            command,
        } => oneoff::exit(
            oneoff::enter(
                d, key, &app, &node, index, command, input, out, closed, terminal,
            )
            .await,
        ),
        Cmd::Cron { app, json } => oneoff::list(d, key, &app, json, out).await,
        Cmd::CronRun { app, job } => oneoff::exit(oneoff::run_now(d, key, &app, &job, out).await),
        Cmd::Config { app, json } => config(d, key, &app, json, out).await,
        Cmd::ConfigGet { app, key: var } => config_get(d, key, &app, &var, out).await,
        Cmd::ConfigSet { app, vars } => config_change(d, key, &app, vars, Vec::new(), out).await,
        Cmd::ConfigUnset { app, keys } => {
            config_change(d, key, &app, BTreeMap::new(), keys, out).await
        }
        Cmd::Keys { json } => keys(d, key, json, out).await,
        Cmd::KeysAdd {
            name,
            role,
            apps,
            create,
        } => keys_add(d, key, name, role, apps, create, input, out).await,
        Cmd::KeysRemove { name } => keys_remove(d, key, &name, out).await,
        Cmd::PsScale { app, scale } => ps_scale(d, key, &app, scale, out).await,
        Cmd::PsStop { app } => ps_stop_start(d, key, &app, true, out).await,
        Cmd::PsStart { app } => ps_stop_start(d, key, &app, false, out).await,
        Cmd::Plan { app, json } => plan(d, key, &app, json, out).await,
        Cmd::Domains { app, json } => domains(d, key, &app, json, out).await,
        Cmd::DomainsAdd { app, domains } => {
            domains_change(d, key, &app, domains, true, out).await?;
            certs::after_domains_add(d, &app, out).await
        }
        Cmd::DomainsRemove { app, domains } => {
            domains_change(d, key, &app, domains, false, out).await
        }
        Cmd::Events { app, json } => events(d, key, app, json, out).await,
        Cmd::Servers { json } => servers(d, key, None, json, out).await,
        Cmd::ServersInfo { name, json } => servers(d, key, Some(name), json, out).await,
        Cmd::ServersAdd(new) => servers_add(d, key, new, out).await,
        Cmd::ServersDrain { name } => servers_drain(d, key, &name, out).await,
        Cmd::ServersRemove { name } => servers_remove(d, key, &name, out).await,
        Cmd::Grid { json } => grid(d, key, json, out).await,
        Cmd::Network { json } => network::show(d, key, json, out).await,
        Cmd::NetworkLock { lock } => network::lock(d, key, lock, out).await,
        Cmd::Stacks { json } => stacks(d, json, out).await,
        Cmd::Volumes { app, json } => volumes(d, key, &app, json, out).await,
        Cmd::VolumesRemove { app, service } => volumes_remove(d, key, &app, &service, out).await,
        Cmd::Certs { app, json } => certs::show_certs(d, key, &app, json, out).await,
        Cmd::CertsEnable { app } => certs::enable(d, key, &app, out).await,
        Cmd::CertsDisable { app } => certs::disable(d, key, &app, out).await,
        Cmd::CertsAdd { app, files } => certs::add(d, key, &app, files, input, out).await,
        Cmd::CertsRemove { app } => certs::remove(d, key, &app, out).await,
        Cmd::CertsRenew { app, force } => certs::renew(d, key, &app, force, out).await,
        Cmd::KeysHq => remote::keys_hq(d, key, out).await,
        Cmd::Provisioners { json } => remote::provisioners(d, key, json, out).await,
        Cmd::ProvisionersAdd { name } => remote::provisioners_add(d, key, &name, input, out).await,
        Cmd::ProvisionersRemove { name } => remote::provisioners_remove(d, key, &name, out).await,
        Cmd::ServersProvision { server, names } => {
            remote::servers_provision(d, key, &server, names, out).await
        }
        Cmd::Hosts { json } => remote::hosts(d, key, json, out).await,
    }
}

fn require_admin(key: &KeyRecord, what: &str) -> Res {
    if key.role == Role::Admin {
        Ok(())
    } else {
        Err(CommandError::Denied(format!(
            "permission denied: key {} is a deployer; {what} needs an admin key",
            key.name
        )))
    }
}

/// The app exists and `key` may manage it. An unknown app looks the same to
/// a key that has no right to it as to anyone else: not found.
fn require_app(d: &Daemon, key: &KeyRecord, app: &str) -> Res {
    if !d.store.app_exists(app) {
        return Err(CommandError::NotFound(format!("app {app} does not exist")));
    }
    if !key.may_manage(app) {
        return Err(CommandError::Denied(format!(
            "permission denied: key {} may not manage app {app}",
            key.name
        )));
    }
    Ok(())
}

fn io(e: impl std::fmt::Display) -> Fail {
    fail(e.to_string())
}

async fn print_json<T: Serialize>(out: &Output, value: &T) {
    let mut text = serde_json::to_string_pretty(value).expect("serializable");
    text.push('\n');
    out.out(text).await;
}

/// A read command's answer: `items` as JSON, `empty` when there are none
/// (when given), or a table with one row per item.
async fn show<T: Serialize>(
    out: &Output,
    json: bool,
    items: &[T],
    empty: Option<String>,
    header: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) {
    if json {
        print_json(out, &items).await;
    } else if let (true, Some(message)) = (items.is_empty(), empty) {
        out.out(format!("{message}\n")).await;
    } else {
        let rows: Vec<Vec<String>> = items.iter().map(row).collect();
        out.out(table(header, &rows)).await;
    }
}

/// Left-aligned columns.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

async fn help(topic: Option<String>, out: &Output) -> Res {
    match topic {
        None => out.out(command::overview()).await,
        Some(t) => match command::spec(&t) {
            Some(s) => out.out(command::command_help(s)).await,
            None => {
                return Err(CommandError::Usage(format!(
                    "no command {t:?}; run `help` to see the commands"
                )));
            }
        },
    }
    Ok(())
}

/// Stream progress lines of `work` to the client's stderr.
async fn with_progress<F, T>(out: &Output, work: impl FnOnce(Progress) -> F) -> T
where
    F: std::future::Future<Output = T>,
{
    let (progress, mut rx) = Progress::channel();
    let fut = work(progress);
    tokio::pin!(fut);
    loop {
        tokio::select! {
            line = rx.recv() => if let Some(line) = line { out.err(format!("{line}\n")).await },
            result = &mut fut => {
                while let Ok(line) = rx.try_recv() {
                    out.err(format!("{line}\n")).await;
                }
                return result;
            }
        }
    }
}

/// Under the app's lock: run `change` (which edits the db), then bring the
/// live release to the new desired state. When applying fails, `undo` puts
/// the db back.
async fn change_and_apply<C, U>(
    d: &Daemon,
    app: &str,
    out: &Output,
    restart: Option<&str>,
    change: C,
    undo: U,
) -> Res
where
    C: FnOnce(&crate::stack::Stack) -> Res,
    U: FnOnce(),
{
    with_progress(out, |p| async move {
        let _lock = d
            .locks
            .acquire(&d.store, app, &p, deploy::LOCK_WAIT)
            .await
            .map_err(io)?;
        let live = d
            .store
            .live_release(app)
            .map_err(io)?
            .ok_or_else(|| fail(format!("{app} has no live release yet: push it first")))?;
        let stack = stack::from_release(&live).map_err(io)?;
        change(&stack)?;
        match deploy::apply_restarting(d, app, &live, &stack, restart, &p).await {
            Ok(()) => {
                p.step("Done");
                Ok(())
            }
            Err(e) => {
                undo();
                Err(fail(e))
            }
        }
    })
    .await
}
