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

use crate::command::{
    self, Cmd, EXIT_CONFLICT, EXIT_DENIED, EXIT_FAILURE, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE,
};
use crate::daemon::Daemon;
use crate::deploy;
use crate::launch;
use crate::progress::Progress;
use crate::ssh::{Closed, Input, Output, Terminal, read_input};
use crate::stack;
use crate::store::{self, KeyRecord, Release, ReleaseStatus, Role};

mod certs;
mod oneoff;
mod remote;

/// A failed command: message and exit code.
struct Fail(String, u32);

type Res = Result<(), Fail>;

fn fail(msg: impl Into<String>) -> Fail {
    Fail(msg.into(), EXIT_FAILURE)
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
            Err(Fail(msg, _)) => format!("{detail} failed: {msg}"),
        };
        // A destroyed app has no log left to write to: that goes to the fleet's.
        let app = app.filter(|a| d.store.app_exists(a));
        d.store.audit(app.as_deref(), key, action, outcome.trim());
    }
    match result {
        Ok(()) => EXIT_OK,
        // A one-off's own non-zero exit: it has said what it had to.
        Err(Fail(msg, code)) if msg.is_empty() => code,
        Err(Fail(msg, code)) => {
            out.err(format!("quarry: {msg}\n")).await;
            code
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
        Cmd::Stacks { json } => stacks(d, json, out).await,
        Cmd::Volumes { app, json } => volumes(d, key, &app, json, out).await,
        Cmd::VolumesRemove { app, service } => volumes_remove(d, key, &app, &service, out).await,
        Cmd::Certs { app, json } => certs::show_certs(d, key, &app, json, out).await,
        Cmd::CertsEnable { app } => certs::enable(d, key, &app, out).await,
        Cmd::CertsDisable { app } => certs::disable(d, key, &app, out).await,
        Cmd::CertsAdd { app } => certs::add(d, key, &app, input, out).await,
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

// ----- rights ---------------------------------------------------------------

fn require_admin(key: &KeyRecord, what: &str) -> Res {
    if key.role == Role::Admin {
        Ok(())
    } else {
        Err(Fail(
            format!(
                "permission denied: key {} is a deployer; {what} needs an admin key",
                key.name
            ),
            EXIT_DENIED,
        ))
    }
}

/// The app exists and `key` may manage it. An unknown app looks the same to
/// a key that has no right to it as to anyone else: not found.
fn require_app(d: &Daemon, key: &KeyRecord, app: &str) -> Res {
    if !d.store.app_exists(app) {
        return Err(Fail(format!("app {app} does not exist"), EXIT_NOT_FOUND));
    }
    if !key.may_manage(app) {
        return Err(Fail(
            format!(
                "permission denied: key {} may not manage app {app}",
                key.name
            ),
            EXIT_DENIED,
        ));
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

// ----- commands -------------------------------------------------------------

async fn help(topic: Option<String>, out: &Output) -> Res {
    match topic {
        None => out.out(command::overview()).await,
        Some(t) => match command::spec(&t) {
            Some(s) => out.out(command::command_help(s)).await,
            None => {
                return Err(Fail(
                    format!("no command {t:?}; run `help` to see the commands"),
                    EXIT_USAGE,
                ));
            }
        },
    }
    Ok(())
}

#[derive(Serialize)]
struct AppRow {
    name: String,
    status: String,
    release: Option<u32>,
    url: String,
}

async fn apps(d: &Daemon, key: &KeyRecord, json: bool, out: &Output) -> Res {
    let mut rows = Vec::new();
    for app in d.store.apps().map_err(io)? {
        if !key.may_manage(&app) {
            continue;
        }
        let live = d.store.live_release(&app).map_err(io)?;
        rows.push(AppRow {
            status: d.store.status(&app).as_str().to_string(),
            release: live.map(|r| r.number),
            url: format!(
                "http://{}:{}/",
                d.default_domain(&app),
                d.router.listen().port()
            ),
            name: app,
        });
    }
    let empty = "no apps yet: push one with git push ssh://git@HOST:PORT/APP main";
    show(
        out,
        json,
        &rows,
        Some(empty.into()),
        &["APP", "STATUS", "RELEASE", "URL"],
        |r| {
            vec![
                r.name.clone(),
                r.status.clone(),
                r.release.map_or("-".into(), |n| format!("v{n}")),
                r.url.clone(),
            ]
        },
    )
    .await;
    Ok(())
}

async fn apps_create(d: &Daemon, key: &KeyRecord, app: &str, out: &Output) -> Res {
    if key.role != Role::Admin && !key.create {
        return Err(Fail(
            format!("permission denied: key {} may not create apps", key.name),
            EXIT_DENIED,
        ));
    }
    if d.store.app_exists(app) {
        return Err(Fail(format!("app {app} exists already"), EXIT_CONFLICT));
    }
    crate::receive::create_app(&d.store, app).map_err(io)?;
    if key.role != Role::Admin {
        d.store.grant(&key.name, app).map_err(io)?;
    }
    out.out(format!(
        "created {app}; push with: git push ssh://git@HOST:PORT/{app} main\n"
    ))
    .await;
    Ok(())
}

async fn apps_destroy(d: &Daemon, key: &KeyRecord, app: &str, out: &Output) -> Res {
    require_app(d, key, app)?;
    require_admin(key, "destroying an app")?;
    let progress = Progress::silent();
    let _lock = d
        .locks
        .acquire(&d.store, app, &progress, std::time::Duration::from_secs(60))
        .await
        .map_err(fail)?;
    d.router.remove_app(app).await.map_err(fail)?;
    // A later app of the same name must not inherit its certificate and key.
    crate::tls::disable(d, app)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let containers = d.containers(Some(app)).await.map_err(fail)?;
    for c in &containers {
        launch::remove(&d.docker_on(&c.server), &c.id, 5)
            .await
            .map_err(fail)?;
    }
    // Its images, volumes and networks, on every server that answers.
    let releases = d.store.releases(app).map_err(io)?;
    for (server, docker) in d.fleet.answering() {
        d.networks
            .remove(&docker, &d.instance, &server.name, app)
            .await
            .map_err(fail)?;
        for r in &releases {
            let _ = docker
                .remove_image(
                    &r.image,
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                )
                .await;
        }
        for volume in launch::volumes(&docker, &d.instance, Some(app))
            .await
            .map_err(fail)?
        {
            launch::remove_volume(&docker, &volume.name)
                .await
                .map_err(fail)?;
        }
    }
    // Grants go with the app: whoever creates the name again starts with
    // no deployers of the old one.
    let revoked = d.store.revoke_app(app).map_err(io)?;
    if !revoked.is_empty() {
        d.store.audit(
            None,
            key,
            "keys:revoke",
            &format!("{app} from {}", revoked.join(", ")),
        );
    }
    // Move aside first so a half-removed app never looks like an app.
    let dir = d.store.app_dir(app);
    let trash = d
        .store
        .root()
        .join("stacks")
        .join(format!(".destroyed-{app}-{}", std::process::id()));
    std::fs::rename(&dir, &trash).map_err(io)?;
    std::fs::remove_dir_all(&trash).map_err(io)?;
    out.out(format!(
        "destroyed {app}: {} container(s) removed\n",
        containers.len()
    ))
    .await;
    Ok(())
}

async fn ps(d: &Daemon, key: &KeyRecord, app: &str, json: bool, out: &Output) -> Res {
    require_app(d, key, app)?;
    let found = d.containers(Some(app)).await.map_err(fail)?;
    if json {
        print_json(out, &found).await;
        return Ok(());
    }
    let waiting = d
        .store
        .live_release(app)
        .map_err(io)?
        .and_then(|r| stack::from_release(&r).ok())
        .map(|stack| deploy::waiting_services(d, app, &stack))
        .unwrap_or_default();
    for (service, server) in &waiting {
        out.out(format!(
            "{}\n",
            deploy::homes::degraded_line(service, server)
        ))
        .await;
    }
    if found.is_empty() {
        out.out(format!("{app} has no containers\n")).await;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.server.clone(),
                c.state.clone(),
                format!("v{}", c.release),
                c.address.map_or("-".into(), |a| a.to_string()),
                c.status.clone(),
            ]
        })
        .collect();
    out.out(table(
        &[
            "CONTAINER",
            "SERVER",
            "STATE",
            "RELEASE",
            "ADDRESS",
            "STATUS",
        ],
        &rows,
    ))
    .await;
    for o in crate::oneoff::list(d, app).await {
        out.out(format!(
            "one-off {} on {} ({} by {}, v{}): {} [{}]\n",
            o.name, o.server, o.kind, o.by, o.release, o.command, o.status
        ))
        .await;
    }
    let kept: Vec<VolumeView> = volume_views(d, app)
        .await?
        .into_iter()
        .filter(|v| !v.in_use)
        .collect();
    for v in kept {
        out.out(format!(
            "volume {} kept: service {} is no longer in quarry.yml (delete its data with volumes:remove {app} {})\n",
            v.name, v.service, v.service
        ))
        .await;
    }
    Ok(())
}

#[derive(Serialize)]
struct ReleaseView<'a> {
    number: u32,
    commit: &'a str,
    image: &'a str,
    created: &'a str,
    by: &'a str,
    fingerprint: &'a str,
    description: &'a str,
    status: &'a str,
    reason: Option<&'a str>,
    /// Names only: values are secrets and stay in `config`.
    env: Vec<&'a str>,
}

fn release_view(r: &Release) -> ReleaseView<'_> {
    ReleaseView {
        number: r.number,
        commit: &r.commit,
        image: &r.image,
        created: &r.created,
        by: &r.by,
        fingerprint: &r.fingerprint,
        description: &r.description,
        status: r.status.as_str(),
        reason: r.reason.as_deref(),
        env: r.env.keys().map(String::as_str).collect(),
    }
}

async fn releases(d: &Daemon, key: &KeyRecord, app: &str, json: bool, out: &Output) -> Res {
    require_app(d, key, app)?;
    let list = d.store.releases(app).map_err(io)?;
    let views: Vec<_> = list.iter().rev().map(release_view).collect();
    let header = [
        "RELEASE",
        "STATUS",
        "COMMIT",
        "CREATED",
        "BY",
        "DESCRIPTION",
    ];
    show(
        out,
        json,
        &views,
        Some(format!("{app} has no releases yet")),
        &header,
        |r| {
            vec![
                format!("v{}", r.number),
                r.status.to_string(),
                r.commit.chars().take(7).collect(),
                r.created.to_string(),
                r.by.to_string(),
                r.description.to_string(),
            ]
        },
    )
    .await;
    Ok(())
}

async fn releases_info(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    number: u32,
    json: bool,
    out: &Output,
) -> Res {
    require_app(d, key, app)?;
    let r = d
        .store
        .release(app, number)
        .map_err(io)?
        .ok_or_else(|| Fail(format!("{app} has no release v{number}"), EXIT_NOT_FOUND))?;
    let v = release_view(&r);
    if json {
        print_json(out, &v).await;
    } else {
        let mut text = format!(
            "release:     v{}\nstatus:      {}\ncommit:      {}\nimage:       {}\ncreated:     {}\nby:          {} ({})\ndescription: {}\nconfig vars: {}\n",
            v.number,
            v.status,
            v.commit,
            v.image,
            v.created,
            v.by,
            v.fingerprint,
            v.description,
            if v.env.is_empty() {
                "-".to_string()
            } else {
                v.env.join(", ")
            }
        );
        if let Some(reason) = v.reason {
            text.push_str(&format!("reason:      {reason}\n"));
        }
        out.out(text).await;
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

/// Make a new release from `base` with `env` and roll it out.
async fn rerelease(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    base: &Release,
    env: BTreeMap<String, String>,
    description: String,
    p: &Progress,
) -> Result<u32, String> {
    let stack = stack::from_release(base).map_err(|e| e.to_string())?;
    let number = d
        .store
        .next_release_number(app)
        .map_err(|e| e.to_string())?;
    let mut release = Release {
        number,
        commit: base.commit.clone(),
        image: base.image.clone(),
        env,
        global_env: d.store.global_env().map_err(|e| e.to_string())?,
        manifest: base.manifest.clone(),
        created: store::now_rfc3339(),
        by: key.name.clone(),
        fingerprint: key.fingerprint.clone(),
        description,
        status: ReleaseStatus::Deploying,
        reason: None,
    };
    d.store
        .write_release(app, &release)
        .map_err(|e| e.to_string())?;
    p.step(format!(
        "Releasing v{number} of {app}: {}",
        release.description
    ));
    let result = deploy::apply(d, app, &release, &stack, p).await;
    deploy::finish(d, app, &mut release, result, p)?;
    p.step(format!("Released v{number}"));
    Ok(number)
}

async fn rollback(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    target: Option<u32>,
    out: &Output,
) -> Res {
    require_app(d, key, app)?;
    let result = with_progress(out, |p| async move {
        let _lock = d
            .locks
            .acquire(&d.store, app, &p, std::time::Duration::from_secs(600))
            .await?;
        let all = d.store.releases(app).map_err(|e| e.to_string())?;
        let live = all
            .iter()
            .rev()
            .find(|r| r.status == ReleaseStatus::Live)
            .cloned();
        let target = match target {
            Some(n) => all
                .iter()
                .find(|r| r.number == n)
                .cloned()
                .ok_or(format!("{app} has no release v{n}"))?,
            None => {
                let below = live.as_ref().map_or(u32::MAX, |l| l.number);
                all.iter()
                    .rev()
                    .find(|r| {
                        r.number < below
                            && matches!(r.status, ReleaseStatus::Superseded | ReleaseStatus::Live)
                    })
                    .cloned()
                    .ok_or(format!(
                        "{app} has no earlier successful release to roll back to"
                    ))?
            }
        };
        if target.status == ReleaseStatus::Failed {
            return Err(format!(
                "v{} of {app} never served (it failed); pick a release that did",
                target.number
            ));
        }
        if d.docker.inspect_image(&target.image).await.is_err() {
            return Err(format!(
                "the image of v{} ({}) was pruned (quarry.yml releases.keep); push commit {} again instead",
                target.number,
                target.image,
                &target.commit[..7.min(target.commit.len())]
            ));
        }
        rerelease(
            d,
            key,
            app,
            &target,
            target.env.clone(),
            format!("rollback to v{}", target.number),
            &p,
        )
        .await
    })
    .await;
    result.map(|_| ()).map_err(fail)
}

async fn ps_restart(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    node: Option<String>,
    out: &Output,
) -> Res {
    require_app(d, key, app)?;
    if let Some(node) = node {
        // One node: fresh containers of the same release, rolled like a deploy.
        return change_and_apply(
            d,
            app,
            out,
            Some(&node),
            |stack| {
                if stack.manifest.nodes.contains_key(&node) {
                    return Ok(());
                }
                let known: Vec<&str> = stack.manifest.nodes.keys().map(String::as_str).collect();
                Err(format!(
                    "{app} has no node {node}; its nodes are {}",
                    known.join(", ")
                ))
            },
            || {},
        )
        .await;
    }
    let result = with_progress(out, |p| async move {
        let _lock = d
            .locks
            .acquire(&d.store, app, &p, std::time::Duration::from_secs(600))
            .await?;
        let live = d
            .store
            .live_release(app)
            .map_err(|e| e.to_string())?
            .ok_or(format!("{app} has no live release to restart"))?;
        rerelease(
            d,
            key,
            app,
            &live,
            live.env.clone(),
            format!("restart of v{}", live.number),
            &p,
        )
        .await
    })
    .await;
    result.map(|_| ()).map_err(fail)
}

#[allow(clippy::too_many_arguments)]
async fn logs(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    lines: usize,
    follow: bool,
    node: Option<String>,
    out: &Output,
    mut closed: Closed,
) -> Res {
    require_app(d, key, app)?;
    let mut containers = d.containers(Some(app)).await.map_err(fail)?;
    if let Some(n) = &node {
        containers.retain(|c| &c.node == n);
    }
    // Merge by the engine's timestamps, prefix each line with node.n.
    let mut merged: Vec<(String, String)> = Vec::new();
    for c in &containers {
        let options = bollard::query_parameters::LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .tail(&lines.to_string())
            .build();
        let docker = d.docker_on(&c.server);
        let mut stream = docker.logs(&c.id, Some(options));
        while let Some(Ok(chunk)) = stream.next().await {
            let text = String::from_utf8_lossy(&chunk.into_bytes()).into_owned();
            for line in text.lines() {
                let (ts, rest) = line.split_once(' ').unwrap_or(("", line));
                merged.push((ts.to_string(), format!("{}.{} {rest}\n", c.node, c.index)));
            }
        }
    }
    merged.sort_by(|a, b| a.0.cmp(&b.0));
    let skip = merged.len().saturating_sub(lines);
    for (_, line) in merged.into_iter().skip(skip) {
        out.out(line).await;
    }
    if !follow {
        return Ok(());
    }
    // Follow live until the client goes away. Containers come and go with
    // redeploys, scaling and restarts: look for new ones every second.
    // Bounded: a client that reads slowly slows the followers, which stop
    // reading the engine's stream (the engine keeps the log), instead of
    // lines piling up here.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(FOLLOW_QUEUE);
    let mut followed: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    // The first pass shows only what comes after the lines printed above.
    let mut since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.as_secs() as i32);
    let mut scan = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            line = rx.recv() => if let Some(l) = line { out.out(l).await },
            _ = closed.wait() => break,
            _ = scan.tick() => {
                followed.retain(|_, task| !task.is_finished());
                let Ok(mut now) = d.containers(Some(app)).await else { continue };
                if let Some(n) = &node {
                    now.retain(|c| &c.node == n);
                }
                for c in now.into_iter().filter(|c| c.state == "running") {
                    if followed.contains_key(&c.id) {
                        continue;
                    }
                    let task = tokio::spawn(follow_container(d.docker_on(&c.server), c.clone(), since, tx.clone()));
                    followed.insert(c.id, task);
                }
                // Later passes: containers new since the last pass show from their start
                // (minus a second, so no line falls between two passes).
                since = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |t| t.as_secs() as i32 - 1);
            }
        }
    }
    for task in followed.values() {
        task.abort();
    }
    Ok(())
}

/// Lines of `logs -f` between the followers and the client.
const FOLLOW_QUEUE: usize = 256;

/// Send a container's log lines from `since` (unix seconds) until it stops.
async fn follow_container(
    docker: bollard::Docker,
    c: launch::Found,
    since: i32,
    tx: tokio::sync::mpsc::Sender<String>,
) {
    let options = bollard::query_parameters::LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .follow(true)
        .since(since)
        .build();
    let mut stream = docker.logs(&c.id, Some(options));
    while let Some(Ok(chunk)) = stream.next().await {
        let text = String::from_utf8_lossy(&chunk.into_bytes()).into_owned();
        for line in text.lines() {
            if tx
                .send(format!("{}.{} {line}\n", c.node, c.index))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

async fn config(d: &Daemon, key: &KeyRecord, app: &str, json: bool, out: &Output) -> Res {
    require_app(d, key, app)?;
    let env = d.store.app_env(app).map_err(io)?;
    if json {
        print_json(out, &env).await;
    } else if env.is_empty() {
        out.out(format!("{app} has no config vars\n")).await;
    } else {
        let width = env.keys().map(String::len).max().unwrap_or(0);
        let mut text = String::new();
        for (k, v) in &env {
            text.push_str(&format!("{k:<width$}  {v}\n"));
        }
        out.out(text).await;
    }
    Ok(())
}

async fn config_get(d: &Daemon, key: &KeyRecord, app: &str, var: &str, out: &Output) -> Res {
    require_app(d, key, app)?;
    let env = d.store.app_env(app).map_err(io)?;
    match env.get(var) {
        Some(v) => {
            out.out(format!("{v}\n")).await;
            Ok(())
        }
        None => Err(Fail(
            format!("{app} has no config var {var}"),
            EXIT_NOT_FOUND,
        )),
    }
}

async fn config_change(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    set: BTreeMap<String, String>,
    unset: Vec<String>,
    out: &Output,
) -> Res {
    require_app(d, key, app)?;
    let result = with_progress(out, |p| async move {
        let _lock = d
            .locks
            .acquire(&d.store, app, &p, std::time::Duration::from_secs(600))
            .await?;
        let before = d.store.app_env(app).map_err(|e| e.to_string())?;
        for (k, v) in &set {
            d.store.set_app_env(app, k, v).map_err(|e| e.to_string())?;
        }
        for k in &unset {
            d.store.unset_app_env(app, k).map_err(|e| e.to_string())?;
        }
        let names: Vec<&str> = set
            .keys()
            .map(String::as_str)
            .chain(unset.iter().map(String::as_str))
            .collect();
        let what = if set.is_empty() {
            "config unset"
        } else {
            "config set"
        };
        let description = format!("{what} {}", names.join(" "));
        let Some(live) = d.store.live_release(app).map_err(|e| e.to_string())? else {
            p.step("Config saved; it applies from the first push");
            return Ok(0);
        };
        let env = d.store.app_env(app).map_err(|e| e.to_string())?;
        match rerelease(d, key, app, &live, env, description, &p).await {
            Ok(n) => Ok(n),
            Err(e) => {
                // The vars are part of what failed: put them back as they were.
                for k in set.keys().chain(unset.iter()) {
                    let _ = match before.get(k) {
                        Some(v) => d.store.set_app_env(app, k, v),
                        None => d.store.unset_app_env(app, k).map(|_| ()),
                    };
                }
                Err(e)
            }
        }
    })
    .await;
    result.map(|_| ()).map_err(fail)
}

#[derive(Serialize)]
struct KeyView<'a> {
    name: &'a str,
    role: String,
    apps: &'a [String],
    create: bool,
    fingerprint: &'a str,
    added: &'a str,
}

async fn keys(d: &Daemon, key: &KeyRecord, json: bool, out: &Output) -> Res {
    require_admin(key, "listing keys")?;
    let all = d.store.keys().map_err(io)?;
    let views: Vec<KeyView> = all
        .iter()
        .map(|k| KeyView {
            name: &k.name,
            role: k.role.to_string(),
            apps: &k.apps,
            create: k.create,
            fingerprint: &k.fingerprint,
            added: &k.added,
        })
        .collect();
    show(
        out,
        json,
        &views,
        None,
        &["NAME", "ROLE", "APPS", "FINGERPRINT"],
        |k| {
            let apps = if k.role == "admin" {
                "*".into()
            } else {
                k.apps.join(",")
            };
            vec![
                k.name.to_string(),
                k.role.clone(),
                apps,
                k.fingerprint.to_string(),
            ]
        },
    )
    .await;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn keys_add(
    d: &Daemon,
    key: &KeyRecord,
    name: String,
    role: Role,
    apps: Vec<String>,
    create: bool,
    mut input: Input,
    out: &Output,
) -> Res {
    require_admin(key, "adding keys")?;
    let text = read_input(&mut input, crate::validate::MAX_KEY_LEN)
        .await
        .map_err(|e| Fail(e, EXIT_USAGE))?;
    let text = String::from_utf8(text)
        .map_err(|_| Fail("the public key is not UTF-8".into(), EXIT_USAGE))?;
    let (public_key, fingerprint) =
        store::parse_public_key(&text).map_err(|e| Fail(e, EXIT_USAGE))?;
    let record = KeyRecord {
        name: name.clone(),
        role,
        apps,
        create,
        public_key,
        fingerprint: fingerprint.clone(),
        added: store::now_rfc3339(),
    };
    d.store
        .add_key(&record)
        .map_err(|e| Fail(e, EXIT_CONFLICT))?;
    out.out(format!("added key {name} ({role}) {fingerprint}\n"))
        .await;
    Ok(())
}

async fn keys_remove(d: &Daemon, key: &KeyRecord, name: &str, out: &Output) -> Res {
    require_admin(key, "removing keys")?;
    let keys = d.store.keys().map_err(io)?;
    let admins = keys.iter().filter(|k| k.role == Role::Admin).count();
    if keys.iter().any(|k| k.name == name && k.role == Role::Admin) && admins == 1 {
        return Err(Fail(
            format!("{name} is the last admin key; add another admin first"),
            EXIT_CONFLICT,
        ));
    }
    if !d.store.remove_key(name).map_err(io)? {
        return Err(Fail(format!("no key named {name}"), EXIT_NOT_FOUND));
    }
    out.out(format!("removed key {name}\n")).await;
    // Its open connections too, not only new ones.
    let closed = d.sessions.close_removed(&d.store).await;
    if closed > 0 {
        tracing::info!(
            key = name,
            connections = closed,
            "closed the connections of a removed key"
        );
    }
    Ok(())
}

// ----- changes that keep the release -----------------------------------------

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
    C: FnOnce(&crate::stack::Stack) -> Result<(), String>,
    U: FnOnce(),
{
    let result = with_progress(out, |p| async move {
        let _lock = d
            .locks
            .acquire(&d.store, app, &p, deploy::LOCK_WAIT)
            .await?;
        let live = d
            .store
            .live_release(app)
            .map_err(|e| e.to_string())?
            .ok_or(format!("{app} has no live release yet: push it first"))?;
        let stack = stack::from_release(&live).map_err(|e| e.to_string())?;
        change(&stack)?;
        match deploy::apply_restarting(d, app, &live, &stack, restart, &p).await {
            Ok(()) => {
                p.step("Done");
                Ok(())
            }
            Err(e) => {
                undo();
                Err(e)
            }
        }
    })
    .await;
    result.map_err(fail)
}

async fn ps_scale(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    scale: BTreeMap<String, u32>,
    out: &Output,
) -> Res {
    require_app(d, key, app)?;
    let before = d.store.formation(app).map_err(io)?;
    let restore = before.clone();
    change_and_apply(
        d,
        app,
        out,
        None,
        |stack| {
            for node in scale.keys() {
                if !stack.manifest.nodes.contains_key(node) {
                    let known: Vec<&str> =
                        stack.manifest.nodes.keys().map(String::as_str).collect();
                    return Err(format!(
                        "{app} has no node {node}; its nodes are {}",
                        known.join(", ")
                    ));
                }
            }
            let mut formation = before;
            formation.extend(scale.clone());
            d.store
                .set_formation(app, &formation)
                .map_err(|e| e.to_string())
        },
        || {
            let _ = d.store.set_formation(app, &restore);
        },
    )
    .await
}

async fn ps_stop_start(d: &Daemon, key: &KeyRecord, app: &str, stop: bool, out: &Output) -> Res {
    require_app(d, key, app)?;
    let before = d.store.status(app);
    change_and_apply(
        d,
        app,
        out,
        None,
        |_| {
            let status = if stop {
                store::AppStatus::Disabled
            } else {
                store::AppStatus::Live
            };
            d.store.set_status(app, status).map_err(|e| e.to_string())
        },
        || {
            let _ = d.store.set_status(app, before);
        },
    )
    .await
}

async fn plan(d: &Daemon, key: &KeyRecord, app: &str, json: bool, out: &Output) -> Res {
    require_app(d, key, app)?;
    let live = d
        .store
        .live_release(app)
        .map_err(io)?
        .ok_or_else(|| fail(format!("{app} has no live release yet: push it first")))?;
    let stack = stack::from_release(&live).map_err(|e| fail(e.to_string()))?;
    let desired = deploy::desired(d, app, &live, &stack).map_err(fail)?;
    let (current, _) = deploy::current(d, app).await.map_err(fail)?;
    let instructions = crate::plan::plan(&desired, &current);
    if json {
        print_json(out, &instructions).await;
    } else {
        out.out(crate::plan::render(&instructions)).await;
    }
    Ok(())
}

#[derive(Serialize)]
struct DomainView {
    domain: String,
    node: String,
    /// quarry.yml, domains:add, or the default `<app>.<root domain>`.
    source: &'static str,
}

async fn domains(d: &Daemon, key: &KeyRecord, app: &str, json: bool, out: &Output) -> Res {
    require_app(d, key, app)?;
    let mut views = Vec::new();
    let live = d.store.live_release(app).map_err(io)?;
    let stack = live
        .as_ref()
        .map(stack::from_release)
        .transpose()
        .map_err(|e| fail(e.to_string()))?;
    let main = stack
        .as_ref()
        .and_then(deploy::main_web_node)
        .unwrap_or_else(|| "web".into());
    views.push(DomainView {
        domain: d.default_domain(app),
        node: main.clone(),
        source: "default",
    });
    if let Some(stack) = &stack {
        for (name, node) in &stack.manifest.nodes {
            for domain in &node.domains {
                views.push(DomainView {
                    domain: domain.clone(),
                    node: name.clone(),
                    source: "quarry.yml",
                });
            }
        }
    }
    for domain in d.store.domains(app).map_err(io)? {
        views.push(DomainView {
            domain,
            node: main.clone(),
            source: "domains:add",
        });
    }
    show(out, json, &views, None, &["DOMAIN", "NODE", "FROM"], |v| {
        vec![v.domain.clone(), v.node.clone(), v.source.to_string()]
    })
    .await;
    Ok(())
}

async fn domains_change(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    list: Vec<String>,
    add: bool,
    out: &Output,
) -> Res {
    require_app(d, key, app)?;
    // The check and the write of the domains file are one step under the
    // routing lock: the file is the claim other apps are checked against.
    let routing = d.routing.lock().await;
    let before = d.store.domains(app).map_err(io)?;
    let mut after = before.clone();
    if add {
        for domain in &list {
            if domain == &d.default_domain(app) || after.contains(domain) {
                return Err(Fail(
                    format!("{domain} is routed to {app} already"),
                    EXIT_CONFLICT,
                ));
            }
        }
        let wanted: BTreeSet<String> = list.iter().cloned().collect();
        let claims = crate::domains::claims(&d.store, &d.root_domain, app).map_err(fail)?;
        crate::domains::check(
            app,
            &d.root_domain,
            &wanted,
            &claims,
            key.role == Role::Admin,
        )
        .map_err(|e| Fail(e.to_string(), EXIT_CONFLICT))?;
        after.extend(list.iter().cloned());
    } else {
        for domain in &list {
            if !after.contains(domain) {
                return Err(Fail(
                    format!("{domain} was not added to {app} with domains:add"),
                    EXIT_NOT_FOUND,
                ));
            }
            after.retain(|x| x != domain);
        }
    }
    if add {
        d.store.set_domains(app, &after).map_err(io)?;
    }
    drop(routing);
    change_and_apply(
        d,
        app,
        out,
        None,
        |_| d.store.set_domains(app, &after).map_err(|e| e.to_string()),
        || {
            let _ = d.store.set_domains(app, &before);
        },
    )
    .await
}

// ----- audit --------------------------------------------------------------------

/// For commands that change something: (app, action, detail) for the audit
/// log. Read commands are not audited. Config values are never logged.
fn audited(cmd: &Cmd) -> Option<(Option<String>, &'static str, String)> {
    let join = |v: &[String]| v.join(" ");
    Some(match cmd {
        Cmd::AppsCreate { app } => (Some(app.clone()), "apps:create", String::new()),
        Cmd::AppsDestroy { app } => (None, "apps:destroy", app.clone()),
        Cmd::PsScale { app, scale } => (
            Some(app.clone()),
            "ps:scale",
            scale
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Cmd::PsRestart { app, node } => (
            Some(app.clone()),
            "ps:restart",
            node.clone().unwrap_or_default(),
        ),
        Cmd::PsStop { app } => (Some(app.clone()), "ps:stop", String::new()),
        Cmd::PsStart { app } => (Some(app.clone()), "ps:start", String::new()),
        Cmd::ConfigSet { app, vars } => (
            Some(app.clone()),
            "config:set",
            join(&vars.keys().cloned().collect::<Vec<_>>()),
        ),
        Cmd::ConfigUnset { app, keys } => (Some(app.clone()), "config:unset", join(keys)),
        Cmd::DomainsAdd { app, domains } => (Some(app.clone()), "domains:add", join(domains)),
        Cmd::DomainsRemove { app, domains } => (Some(app.clone()), "domains:remove", join(domains)),
        Cmd::Rollback { app, release } => (
            Some(app.clone()),
            "rollback",
            release.map(|r| format!("v{r}")).unwrap_or_default(),
        ),
        Cmd::KeysAdd { name, role, .. } => (None, "keys:add", format!("{name} {role}")),
        Cmd::KeysRemove { name } => (None, "keys:remove", name.clone()),
        Cmd::ServersAdd(new) => (None, "servers:add", format!("{} {}", new.name, new.docker)),
        Cmd::ServersDrain { name } => (None, "servers:drain", name.clone()),
        Cmd::ProvisionersAdd { name } => (None, "provisioners:add", name.clone()),
        Cmd::ProvisionersRemove { name } => (None, "provisioners:remove", name.clone()),
        Cmd::ServersProvision { server, names } => (
            None,
            "servers:provision",
            format!("{server} {}", join(names)).trim().to_string(),
        ),
        Cmd::ServersRemove { name } => (None, "servers:remove", name.clone()),
        Cmd::VolumesRemove { app, service } => {
            (Some(app.clone()), "volumes:remove", service.clone())
        }
        // Audited as they start, by their handlers: a session may last hours.
        Cmd::Run(_) | Cmd::Enter { .. } => return None,
        Cmd::CronRun { app, job } => (Some(app.clone()), "cron:run", job.clone()),
        Cmd::CertsEnable { app } => (Some(app.clone()), "certs:enable", String::new()),
        Cmd::CertsDisable { app } => (Some(app.clone()), "certs:disable", String::new()),
        Cmd::CertsAdd { app } => (Some(app.clone()), "certs:add", String::new()),
        Cmd::CertsRemove { app } => (Some(app.clone()), "certs:remove", String::new()),
        Cmd::CertsRenew { app, force } => (
            Some(app.clone()),
            "certs:renew",
            if *force { "--force" } else { "" }.to_string(),
        ),
        Cmd::Help { .. }
        | Cmd::Cron { .. }
        | Cmd::CommandHelp { .. }
        | Cmd::Apps { .. }
        | Cmd::Ps { .. }
        | Cmd::Plan { .. }
        | Cmd::Config { .. }
        | Cmd::ConfigGet { .. }
        | Cmd::Domains { .. }
        | Cmd::Logs { .. }
        | Cmd::Releases { .. }
        | Cmd::ReleasesInfo { .. }
        | Cmd::Servers { .. }
        | Cmd::ServersInfo { .. }
        | Cmd::Grid { .. }
        | Cmd::Stacks { .. }
        | Cmd::Keys { .. }
        | Cmd::Events { .. }
        | Cmd::Volumes { .. }
        | Cmd::KeysHq
        | Cmd::Provisioners { .. }
        | Cmd::Hosts { .. }
        | Cmd::Certs { .. } => return None,
    })
}

async fn events(d: &Daemon, key: &KeyRecord, app: Option<String>, json: bool, out: &Output) -> Res {
    let list = match &app {
        Some(a) => {
            require_app(d, key, a)?;
            d.store.events(Some(a)).map_err(io)?
        }
        None if key.role == Role::Admin => d.store.events(None).map_err(io)?,
        // A deployer sees the events of its own apps.
        None => {
            let mut all = Vec::new();
            for a in d
                .store
                .apps()
                .map_err(io)?
                .iter()
                .filter(|a| key.may_manage(a))
            {
                all.extend(d.store.events(Some(a)).map_err(io)?);
            }
            all.sort_by(|a, b| a.time.cmp(&b.time));
            all
        }
    };
    let skip = list.len().saturating_sub(200);
    let list = &list[skip..];
    show(
        out,
        json,
        list,
        Some("no events yet".into()),
        &["TIME", "APP", "KEY", "ACTION", "DETAIL"],
        |e| {
            vec![
                e.time.clone(),
                e.app.clone().unwrap_or_else(|| "-".into()),
                e.key.clone(),
                e.action.clone(),
                e.detail.clone(),
            ]
        },
    )
    .await;
    Ok(())
}

// ----- servers and grid -----------------------------------------------------------

#[derive(Serialize)]
struct ServerView {
    name: String,
    docker: String,
    address: String,
    state: &'static str,
    memory_mib: u64,
    labels: BTreeMap<String, String>,
    engine: Option<String>,
    os: Option<String>,
    cpus: Option<i64>,
    /// Containers of this Quarry on it now.
    containers: usize,
    /// Whether the engine is reached over TLS.
    tls: bool,
    /// The provider that made it, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<crate::fleet::Origin>,
    /// How the engine is reached: `unix`, `tcp+tls`, `tcp` or `ssh`.
    transport: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ssh: Option<SshView>,
}

#[derive(Serialize)]
struct SshView {
    /// `user@host:port`.
    target: String,
    host_key: Option<String>,
    /// Why the session is down (or the server held), when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    provisioned: BTreeMap<String, crate::provision::Ran>,
}

fn ssh_view(d: &Daemon, s: &crate::fleet::Server) -> Option<SshView> {
    let t = s.ssh.as_ref()?;
    let link = d.fleet.link(&s.name);
    Some(SshView {
        target: t.display(),
        host_key: t
            .host_key
            .as_deref()
            .and_then(|k| crate::remote::parse_host_key(k).ok())
            .map(|k| crate::remote::fingerprint(&k)),
        error: link
            .as_ref()
            .and_then(|l| l.held().or_else(|| l.last_error().map(|e| e.to_string()))),
        provisioned: s.provisioned.clone(),
    })
}

async fn server_views(d: &Daemon) -> Result<Vec<ServerView>, Fail> {
    let containers = d.containers(None).await.map_err(fail)?;
    Ok(d.fleet
        .list()
        .into_iter()
        .map(|s| ServerView {
            ssh: ssh_view(d, &s),
            transport: match (&s.ssh, &s.tls, s.docker.starts_with("tcp://")) {
                (Some(_), _, _) => "ssh",
                (None, Some(_), _) => "tcp+tls",
                (None, None, true) => "tcp",
                (None, None, false) => "unix",
            },
            containers: containers.iter().filter(|c| c.server == s.name).count(),
            tls: s.tls.is_some(),
            origin: s.origin,
            state: s.state.as_str(),
            engine: s.facts.engine,
            os: s.facts.os,
            cpus: s.facts.cpus,
            memory_mib: s.memory,
            labels: s.labels,
            name: s.name,
            docker: s.docker,
            address: s.address,
        })
        .collect())
}

async fn servers(
    d: &Daemon,
    key: &KeyRecord,
    name: Option<String>,
    json: bool,
    out: &Output,
) -> Res {
    require_admin(key, "viewing servers")?;
    let mut views = server_views(d).await?;
    if let Some(n) = &name {
        views.retain(|v| &v.name == n);
        let Some(v) = views.first() else {
            return Err(Fail(format!("no server named {n}"), EXIT_NOT_FOUND));
        };
        if json {
            print_json(out, v).await;
        } else {
            let labels: Vec<String> = v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.out(format!(
                "name:       {}\ndocker:     {}{}\nprovider:   {}\naddress:    {}\nstate:      {}\nmemory:     {} MiB\nlabels:     {}\nengine:     {}\nos:         {}\ncpus:       {}\ncontainers: {}\n",
                v.name,
                v.docker,
                if v.tls {
                    " (TLS)"
                } else if v.docker.starts_with("tcp://") {
                    " (no TLS: --insecure)"
                } else {
                    ""
                },
                v.origin.as_ref().map_or("- (added by hand)".to_string(), |o| format!(
                    "{} (id {}{})",
                    o.provider,
                    o.id,
                    o.size.as_ref().map_or(String::new(), |s| format!(", size {s}"))
                )),
                v.address,
                v.state,
                v.memory_mib,
                if labels.is_empty() { "-".into() } else { labels.join(", ") },
                v.engine.as_deref().unwrap_or("-"),
                v.os.as_deref().unwrap_or("-"),
                v.cpus.map_or("-".into(), |c| c.to_string()),
                v.containers,
            ))
            .await;
            if let Some(ssh) = &v.ssh {
                let mut text = format!(
                    "ssh:        {} (host key {})\n",
                    ssh.target,
                    ssh.host_key.as_deref().unwrap_or("-")
                );
                if let Some(e) = &ssh.error {
                    text.push_str(&format!("error:      {e}\n"));
                }
                for (name, r) in &ssh.provisioned {
                    text.push_str(&format!(
                        "provisioned {name}: sha1 {} {} at {}\n",
                        r.sha1,
                        if r.ok { "ok" } else { "FAILED" },
                        r.at
                    ));
                }
                out.out(text).await;
            }
        }
        return Ok(());
    }
    let header = [
        "SERVER",
        "STATE",
        "ADDRESS",
        "MEMORY",
        "CONTAINERS",
        "DOCKER",
    ];
    show(out, json, &views, None, &header, |v| {
        vec![
            v.name.clone(),
            v.state.to_string(),
            v.address.clone(),
            format!("{} MiB", v.memory_mib),
            v.containers.to_string(),
            match &v.ssh {
                Some(ssh) => format!("ssh://{}", ssh.target),
                None => v.docker.clone(),
            },
        ]
    })
    .await;
    Ok(())
}

async fn servers_add(
    d: &Daemon,
    key: &KeyRecord,
    mut new: command::NewServer,
    out: &Output,
) -> Res {
    require_admin(key, "adding servers")?;
    if let Some(target) = &new.ssh {
        remote::check_new_target(d, target)?;
        new.docker = format!(
            "unix://{}",
            crate::remote::bridge::socket_path(d.store.root(), &new.name).display()
        );
    }
    crate::fleet::check_new(&d.fleet, &new.name, &new.docker)
        .map_err(|e| Fail(e, EXIT_CONFLICT))?;
    let provision = std::mem::take(&mut new.provision);
    let server = crate::fleet::register(d, new, None).await.map_err(fail)?;
    let facts = &server.facts;
    out.out(format!(
        "added server {}: Docker {} on {}, {} CPUs, {} MiB for the grid{}\n",
        server.name,
        facts.engine.as_deref().unwrap_or("?"),
        facts.os.as_deref().unwrap_or("?"),
        facts.cpus.unwrap_or(0),
        server.memory,
        if server.tls.is_some() {
            ", over TLS".to_string()
        } else if server.insecure {
            ", without TLS (--insecure)".to_string()
        } else if let Some(t) = &server.ssh {
            format!(
                ", over SSH to {} (host key {})",
                t.display(),
                t.host_key
                    .as_deref()
                    .and_then(|k| crate::remote::parse_host_key(k).ok())
                    .map_or("?".to_string(), |k| crate::remote::fingerprint(&k))
            )
        } else {
            String::new()
        }
    ))
    .await;
    remote::after_add(d, &server, &provision, out).await
}

fn require_server(d: &Daemon, name: &str) -> Res {
    match d.fleet.get(name) {
        Some(_) => Ok(()),
        None => Err(Fail(format!("no server named {name}"), EXIT_NOT_FOUND)),
    }
}

/// This instance's containers on server `name`.
async fn containers_on(d: &Daemon, name: &str) -> Result<Vec<launch::Found>, Fail> {
    let all = d.containers(None).await.map_err(fail)?;
    Ok(all.into_iter().filter(|c| c.server == name).collect())
}

/// Move every container off `name` (new ones boot elsewhere, routes switch,
/// then the old ones stop), app by app.
async fn servers_drain(d: &Daemon, key: &KeyRecord, name: &str, out: &Output) -> Res {
    require_admin(key, "draining servers")?;
    require_server(d, name)?;
    d.fleet
        .set_state(&d.store, name, crate::fleet::ServerState::Draining)
        .map_err(fail)?;
    let on_it: BTreeSet<String> = containers_on(d, name)
        .await?
        .into_iter()
        .map(|c| c.app)
        .collect();
    for app in on_it {
        // Applying the live release again replaces what sits on a draining server.
        out.err(format!("-----> Moving {app} off {name}\n")).await;
        change_and_apply(d, &app, out, None, |_| Ok(()), || {})
            .await
            .map_err(|Fail(e, code)| {
                Fail(
                    format!(
                        "draining {name}: {e}; the server stays draining, run servers:drain again"
                    ),
                    code,
                )
            })?;
    }
    out.out(format!(
        "{name} is drained: it holds no containers and takes no new ones\n"
    ))
    .await;
    Ok(())
}

async fn servers_remove(d: &Daemon, key: &KeyRecord, name: &str, out: &Output) -> Res {
    require_admin(key, "removing servers")?;
    require_server(d, name)?;
    let held = containers_on(d, name).await?.len();
    if held > 0 {
        return Err(Fail(
            format!(
                "{name} still holds {held} container(s); move them first with servers:drain {name}"
            ),
            EXIT_CONFLICT,
        ));
    }
    // Services that waited for it (it does not answer) start elsewhere now.
    let mut moving = Vec::new();
    for app in d.store.apps().map_err(io)? {
        if let Some(stack) = d
            .store
            .live_release(&app)
            .map_err(io)?
            .and_then(|r| stack::from_release(&r).ok())
        {
            for (service, _) in deploy::waiting_services(d, &app, &stack)
                .into_iter()
                .filter(|(_, at)| at == name)
            {
                moving.push(format!("{app}.{service}"));
            }
        }
    }
    remote::before_remove(d, name, out).await;
    d.fleet
        .remove(&d.store, name)
        .map_err(|e| Fail(e, EXIT_CONFLICT))?;
    out.out(format!("removed server {name}\n")).await;
    remote::sync_hosts(d, out).await;
    if !moving.is_empty() {
        out.out(format!(
            "services {} start on other servers with empty volumes; their data stays on {name}\n",
            moving.join(", ")
        ))
        .await;
    }
    Ok(())
}

/// The allocation of every node container (a slice) onto the servers
/// (blocks), written to `grid/grid.json`.
async fn grid(d: &Daemon, key: &KeyRecord, json: bool, out: &Output) -> Res {
    require_admin(key, "viewing the grid")?;
    let (grid, warnings) = deploy::persist_grid(d).await.map_err(fail)?;
    for w in warnings {
        out.err(format!("quarry: warning: {w}\n")).await;
    }
    if json {
        print_json(out, &grid).await;
    } else {
        out.out(grid.table()).await;
    }
    Ok(())
}

/// The stack images on the HQ's engine.
async fn stacks(d: &Daemon, json: bool, out: &Output) -> Res {
    let list = crate::stackimage::list(&d.docker).await.map_err(fail)?;
    show(
        out,
        json,
        &list,
        Some(format!(
            "no stack images yet: the first buildpack push builds {}",
            crate::stackimage::configured()
        )),
        &["STACK", "ID", "SIZE"],
        |s| {
            vec![
                s.name.clone(),
                s.id.clone(),
                format!("{} MB", s.size / 1_000_000),
            ]
        },
    )
    .await;
    Ok(())
}

// ----- volumes ------------------------------------------------------------------

#[derive(Serialize)]
struct VolumeView {
    name: String,
    service: String,
    /// Whether the live release still defines the service.
    in_use: bool,
    /// The server it lives on.
    server: String,
}

async fn volume_views(d: &Daemon, app: &str) -> Result<Vec<VolumeView>, Fail> {
    let services: Vec<String> = match d.store.live_release(app).map_err(io)? {
        Some(live) => stack::from_release(&live)
            .map(|s| s.manifest.services.keys().cloned().collect())
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let mut views = Vec::new();
    for (server, docker) in d.fleet.answering() {
        let here = launch::volumes(&docker, &d.instance, Some(app))
            .await
            .map_err(fail)?;
        views.extend(here.into_iter().map(|v| VolumeView {
            in_use: services.contains(&v.service),
            name: v.name,
            service: v.service,
            server: server.name.clone(),
        }));
    }
    Ok(views)
}

async fn volumes(d: &Daemon, key: &KeyRecord, app: &str, json: bool, out: &Output) -> Res {
    require_app(d, key, app)?;
    let views = volume_views(d, app).await?;
    show(
        out,
        json,
        &views,
        Some(format!("{app} has no volumes")),
        &["VOLUME", "SERVICE", "SERVER", "STATE"],
        |v| {
            let state = if v.in_use {
                "in use"
            } else {
                "kept (service removed)"
            };
            vec![
                v.name.clone(),
                v.service.clone(),
                v.server.clone(),
                state.to_string(),
            ]
        },
    )
    .await;
    Ok(())
}

async fn volumes_remove(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    service: &str,
    out: &Output,
) -> Res {
    require_app(d, key, app)?;
    let p = Progress::silent();
    let _lock = d
        .locks
        .acquire(&d.store, app, &p, deploy::LOCK_WAIT)
        .await
        .map_err(fail)?;
    let views: Vec<VolumeView> = volume_views(d, app)
        .await?
        .into_iter()
        .filter(|v| v.service == service)
        .collect();
    if views.is_empty() {
        return Err(Fail(
            format!("{app} has no volumes of a service {service}"),
            EXIT_NOT_FOUND,
        ));
    }
    if views.iter().any(|v| v.in_use) {
        return Err(Fail(
            format!(
                "service {service} is still in {app}'s quarry.yml; remove it there and push before deleting its data"
            ),
            EXIT_CONFLICT,
        ));
    }
    for v in &views {
        launch::remove_volume(&d.docker_on(&v.server), &v.name)
            .await
            .map_err(fail)?;
        out.out(format!("removed volume {} on {}\n", v.name, v.server))
            .await;
    }
    Ok(())
}
