//! Reconcile: make what runs on the engine equal to what the db says.
//!
//! At start ([`at_start`]): a release left `deploying` by a crash is marked
//! failed; containers of this instance that belong to no live release (the
//! leftovers of an interrupted deploy, or of a destroyed app) are removed;
//! a live app whose containers are gone is booted again from its live
//! release; every live app's route is rewritten from the containers found,
//! since their addresses may have changed while Quarry was down.
//!
//! Always ([`run_forever`]): every few seconds, and at once when the engine
//! reports a container of ours died, each live app is checked: node or
//! service containers that stopped (a crash the engine gave up on, a
//! `docker kill`) are removed and the live release is applied again, which
//! boots replacements and reroutes nginx. Failures back off per app.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{Notify, watch};

use tracing::{info, warn};

use crate::daemon::Daemon;
use crate::launch;
use crate::progress::Progress;
use crate::stack;
use crate::store::ReleaseStatus;

pub async fn at_start(d: &Daemon) {
    if let Err(e) = run(d).await {
        warn!("reconcile at start: {e}");
    }
}

async fn run(d: &Daemon) -> Result<(), String> {
    let apps = d.store.apps().map_err(|e| e.to_string())?;
    let mut live = BTreeMap::new();
    for app in &apps {
        for mut r in d.store.releases(app).map_err(|e| e.to_string())? {
            if r.status == ReleaseStatus::Deploying {
                warn!(
                    app,
                    release = r.number,
                    "deploy was interrupted; marking it failed"
                );
                r.status = ReleaseStatus::Failed;
                r.reason = Some("interrupted: the daemon stopped during the deploy".into());
                d.store.write_release(app, &r).map_err(|e| e.to_string())?;
            }
        }
        if let Some(r) = d.store.live_release(app).map_err(|e| e.to_string())? {
            live.insert(app.clone(), r);
        }
    }

    let found = d.containers(None).await?;
    for c in &found {
        // Services outlive releases; node containers belong to the live one.
        let keep = live
            .get(&c.app)
            .is_some_and(|r| c.service.is_some() || r.number == c.release);
        if !keep {
            info!(container = %c.name, "removing orphan container");
            let _ = launch::remove(&d.docker_on(&c.server), &c.id, 0).await;
        }
    }

    for (app, release) in &live {
        let _lock = match d
            .locks
            .acquire(
                &d.store,
                app,
                &Progress::silent(),
                std::time::Duration::from_secs(5),
            )
            .await
        {
            Ok(l) => l,
            Err(e) => {
                warn!(app, "{e}");
                continue;
            }
        };
        let stack = match stack::from_release(release) {
            Ok(s) => s,
            Err(e) => {
                warn!(app, "{e}");
                continue;
            }
        };
        // Boot what is missing; then route to wherever the containers are now.
        if let Err(e) = crate::deploy::apply(d, app, release, &stack, &Progress::silent()).await {
            warn!(app, "cannot restore v{}: {e}", release.number);
            continue;
        }
        if let Err(e) = crate::deploy::reroute(d, app, release, &stack).await {
            warn!(app, "cannot route: {e}");
        }
    }
    Ok(())
}

/// How often every app is checked even without engine events.
const SWEEP: Duration = Duration::from_secs(3);

/// The reconciler loop; ends when `shutdown` changes.
pub async fn run_forever(d: Arc<Daemon>, mut shutdown: watch::Receiver<bool>) {
    let wake = Arc::new(Notify::new());
    let events = tokio::spawn(watch_events(d.clone(), wake.clone()));
    let servers = tokio::spawn(watch_servers(d.clone(), wake.clone()));
    let certs = tokio::spawn(crate::tls::renew::run(d.clone(), shutdown.clone()));
    let mut backoff: HashMap<String, (u32, Instant)> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SWEEP) => {},
            _ = wake.notified() => {},
            _ = shutdown.changed() => break,
        }
        if let Err(e) = sweep(&d, &mut backoff).await {
            warn!("reconcile: {e}");
        }
        // The grid's destroy events: the provider's long-empty servers go.
        match crate::cloud::shrink(&d).await {
            Ok(removed) if !removed.is_empty() => info!("removed empty servers {removed:?}"),
            Ok(_) => {}
            Err(e) => warn!("cloud: {e}"),
        }
    }
    events.abort();
    servers.abort();
    certs.abort();
}

/// How often every server is pinged, and how many misses make it unknown.
const PING_EVERY: Duration = Duration::from_secs(2);
const MISSES_TO_UNKNOWN: u32 = 2;

/// Keep each server's state current: one that misses pings becomes unknown
/// (its containers then count as gone and are re-placed by the sweep); one
/// that answers again has its stale containers removed — they were replaced
/// meanwhile — and takes containers again.
async fn watch_servers(d: Arc<Daemon>, wake: Arc<Notify>) {
    let mut misses: HashMap<String, u32> = HashMap::new();
    loop {
        tokio::time::sleep(PING_EVERY).await;
        for (server, docker) in d.fleet.all() {
            if server.name == crate::fleet::LOCAL {
                continue;
            }
            let alive = tokio::time::timeout(Duration::from_secs(2), docker.ping())
                .await
                .is_ok_and(|r| r.is_ok());
            let state = server.state;
            if alive {
                misses.remove(&server.name);
                if state == crate::fleet::ServerState::Unknown {
                    let stale = crate::launch::list(&docker, &d.instance, None)
                        .await
                        .unwrap_or_default();
                    for c in &stale {
                        let _ = crate::launch::remove(&docker, &c.id, 0).await;
                    }
                    info!(server = %server.name, stale = stale.len(), "server answers again");
                    if let Err(e) = d.fleet.set_state(
                        &d.store,
                        &server.name,
                        crate::fleet::ServerState::Running,
                    ) {
                        warn!("{e}");
                    }
                    for app in stale
                        .iter()
                        .map(|c| c.app.as_str())
                        .collect::<std::collections::BTreeSet<_>>()
                    {
                        if d.store.app_exists(app) {
                            d.store.audit_system(
                                app,
                                "server",
                                &format!(
                                    "{} answers again; its {} stale container(s) were removed",
                                    server.name,
                                    stale.len()
                                ),
                            );
                        }
                    }
                    wake.notify_one();
                }
            } else {
                let n = misses.entry(server.name.clone()).or_insert(0);
                *n += 1;
                if *n >= MISSES_TO_UNKNOWN && state != crate::fleet::ServerState::Unknown {
                    warn!(server = %server.name, "server does not answer; re-placing its containers");
                    if let Err(e) = d.fleet.set_state(
                        &d.store,
                        &server.name,
                        crate::fleet::ServerState::Unknown,
                    ) {
                        warn!("{e}");
                    }
                    wake.notify_one();
                }
            }
        }
    }
}

/// Wake the loop when a container of this instance dies.
async fn watch_events(d: Arc<Daemon>, wake: Arc<Notify>) {
    loop {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("event".to_string(), vec!["die".to_string()]),
            (
                "label".to_string(),
                vec![format!("{}={}", launch::LABEL_INSTANCE, d.instance)],
            ),
        ]);
        let options = bollard::query_parameters::EventsOptionsBuilder::default()
            .filters(&filters)
            .build();
        let mut stream = d.docker.events(Some(options));
        while let Some(Ok(_)) = stream.next().await {
            wake.notify_one();
        }
        // The engine went away or restarted: try again shortly.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn sweep(d: &Daemon, backoff: &mut HashMap<String, (u32, Instant)>) -> Result<(), String> {
    let found = d.containers(None).await?;
    for app in d.store.apps().map_err(|e| e.to_string())? {
        if d.store.status(&app) != crate::store::AppStatus::Live {
            continue;
        }
        if backoff
            .get(&app)
            .is_some_and(|(_, until)| Instant::now() < *until)
        {
            continue;
        }
        let dead: Vec<&launch::Found> = found
            .iter()
            .filter(|c| {
                c.app == app
                    && c.state != "running"
                    && c.state != "restarting"
                    && c.state != "created"
            })
            .collect();
        let Some(live) = d.store.live_release(&app).map_err(|e| e.to_string())? else {
            continue;
        };
        // Only act when something is off; a deploy in progress owns the app.
        let running = found
            .iter()
            .filter(|c| c.app == app && c.state == "running")
            .count();
        let wanted = wanted_containers(d, &app, &live);
        if dead.is_empty() && running >= wanted {
            continue;
        }
        let Some(_lock) = d.locks.try_acquire(&d.store, &app) else {
            continue;
        };
        for c in &dead {
            info!(container = %c.name, state = %c.state, "replacing a stopped container");
            d.store.audit_system(
                &app,
                "heal",
                &format!("{} was {} ({}); replacing it", c.name, c.state, c.status),
            );
            let _ = launch::remove(&d.docker_on(&c.server), &c.id, 0).await;
        }
        let result = match stack::from_release(&live) {
            Ok(stack) => crate::deploy::apply(d, &app, &live, &stack, &Progress::silent()).await,
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => {
                backoff.remove(&app);
                let missing = wanted.saturating_sub(running);
                d.store.audit_system(
                    &app,
                    "heal",
                    &format!(
                        "v{} is running again ({} container(s) replaced)",
                        live.number,
                        missing.max(dead.len())
                    ),
                );
            }
            Err(e) => {
                let (tries, _) = backoff.get(&app).copied().unwrap_or((0, Instant::now()));
                let wait = Duration::from_secs((2u64 << tries.min(7)).min(300));
                warn!(
                    app,
                    "cannot restore v{}: {e}; trying again in {}s",
                    live.number,
                    wait.as_secs()
                );
                d.store.audit_system(
                    &app,
                    "heal",
                    &format!(
                        "restoring v{} failed: {e}; next try in {}s",
                        live.number,
                        wait.as_secs()
                    ),
                );
                backoff.insert(app.clone(), (tries + 1, Instant::now() + wait));
            }
        }
    }
    Ok(())
}

/// How many containers (nodes and services) the live release should run.
fn wanted_containers(d: &Daemon, app: &str, live: &crate::store::Release) -> usize {
    let Ok(stack) = stack::from_release(live) else {
        return 0;
    };
    let Ok(desired) = crate::deploy::desired(d, app, live, &stack) else {
        return 0;
    };
    let nodes: usize = desired.nodes.values().map(|n| n.scale as usize).sum();
    nodes + desired.services.len()
}
