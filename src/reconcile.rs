//! Reconcile: make what runs on the engine equal to what the db says.
//!
//! At start ([`at_start`]): torn release records are made whole
//! ([`repair`]: a release left `deploying` by a crash is failed, one release
//! is live); containers of destroyed apps and of apps that never served are
//! removed; each live app's live release is applied again beside whatever
//! runs (so an interrupted rollout's containers keep serving until the live
//! release's answer), its route rewritten from the containers found, since
//! their addresses may have changed while Quarry was down, and only then
//! are the other releases' containers removed. Running containers are never
//! removed because the records are unclear: an app whose releases cannot be
//! read is left alone.
//!
//! Always ([`run_forever`]): every few seconds, and at once when the engine
//! reports a container of ours died, each live app is checked: node or
//! service containers that stopped (a crash the engine gave up on, a
//! `docker kill`) are removed and the live release is applied again, which
//! boots replacements and reroutes nginx. Failures back off per app. A
//! server that misses two pings is unknown: its nodes and stateless
//! services are re-placed, but a service with volumes waits for it,
//! degraded (in `events` and `ps`), until it answers or the operator moves
//! it ([`crate::deploy::homes`]; the pinging is `servers`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{Notify, watch};

use tracing::{info, warn};

use crate::daemon::Daemon;
use crate::launch;
use crate::progress::Progress;
use crate::stack;
use crate::store::{AppStatus, Release};

mod repair;
mod servers;

use servers::{report_degraded, watch_servers};

/// Why a pass of the reconciler could not look at the apps.
#[derive(Debug, thiserror::Error)]
enum ReconcileError {
    #[error("cannot read the apps: {0}")]
    Apps(std::io::Error),
    #[error(transparent)]
    Engine(#[from] launch::LaunchError),
    #[error("app {app}: {source}")]
    Records { app: String, source: std::io::Error },
}

pub async fn at_start(d: &Daemon) {
    if let Err(e) = run(d).await {
        warn!("reconcile at start: {e}");
    }
}

async fn run(d: &Daemon) -> Result<(), ReconcileError> {
    let apps = d.store.apps().map_err(ReconcileError::Apps)?;
    let found = d.containers(None).await?;
    let mut live = BTreeMap::new();
    // Apps whose records cannot be read: nothing of theirs is touched.
    let mut unclear = BTreeSet::new();
    for app in &apps {
        match repair_records(d, app, &found) {
            Ok(Some(r)) => {
                live.insert(app.clone(), r);
            }
            Ok(None) => {}
            Err(e) => {
                warn!(
                    app,
                    "cannot read the releases, leaving its containers alone: {e}"
                );
                unclear.insert(app.clone());
            }
        }
    }

    // Servers that did not answer at start: their services with data wait.
    for server in d.fleet.list() {
        if server.state == crate::fleet::ServerState::Unknown {
            report_degraded(d, &server.name);
        }
    }

    for c in &found {
        if unclear.contains(&c.app) || live.contains_key(&c.app) {
            // A live app's other containers go only once its live release
            // runs again (below): they may be what serves now.
            continue;
        }
        let recorded =
            apps.contains(&c.app) && d.store.release(&c.app, c.release).ok().flatten().is_some();
        if apps.contains(&c.app) && c.service.is_none() && !recorded {
            warn!(app = %c.app, release = c.release, server = %c.server, container = %c.name, "keeping a container of a release with no record");
            continue;
        }
        info!(app = %c.app, release = c.release, server = %c.server, container = %c.name, "removing orphan container");
        let _ = launch::remove(&d.docker_on(&c.server), &c.id, 0).await;
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
        // Boot what is missing beside whatever runs (a zero-downtime switch
        // back from an interrupted rollout); then route to wherever the
        // containers are now.
        if let Err(e) = crate::deploy::apply(d, app, release, &stack, &Progress::silent()).await {
            warn!(
                app,
                "cannot restore v{}: {e}; its running containers are kept", release.number
            );
            continue;
        }
        if let Err(e) = crate::deploy::reroute(d, app, release, &stack).await {
            warn!(app, "cannot route: {e}");
            continue;
        }
        // Only now is what other releases left behind no longer needed.
        for c in d.containers(Some(app)).await.unwrap_or_default() {
            if c.service.is_none() && c.release != release.number {
                info!(app = %c.app, release = c.release, server = %c.server, container = %c.name, "removing a container of an earlier attempt");
                let _ = launch::remove(&d.docker_on(&c.server), &c.id, 0).await;
            }
        }
    }
    Ok(())
}

/// Make `app`'s release records whole again after a crash ([`repair`]) and
/// return the live release, if it has one.
fn repair_records(
    d: &Daemon,
    app: &str,
    found: &[launch::Found],
) -> Result<Option<Release>, ReconcileError> {
    let records = |source| ReconcileError::Records {
        app: app.to_string(),
        source,
    };
    let releases = d.store.releases(app).map_err(records)?;
    let running: BTreeSet<u32> = found
        .iter()
        .filter(|c| {
            c.app == app && c.service.is_none() && c.state == crate::launch::ContainerState::Running
        })
        .map(|c| c.release)
        .collect();
    let seen: Vec<repair::Seen> = releases
        .iter()
        .map(|r| repair::Seen {
            number: r.number,
            status: r.status,
        })
        .collect();
    let (fixes, live) = repair::repair(&seen, &running);
    for fix in fixes {
        let Some(mut r) = releases.iter().find(|r| r.number == fix.number).cloned() else {
            continue;
        };
        warn!(
            app,
            release = r.number,
            "{}; marking it {}",
            fix.why.as_str(),
            fix.status.as_str()
        );
        r.status = fix.status;
        match fix.why {
            repair::Why::Interrupted => r.reason = Some(fix.why.as_str().into()),
            repair::Why::NewerLive | repair::Why::ServedLast => d.store.audit_system(
                app,
                "repair",
                &format!(
                    "v{} marked {} at start: {}",
                    r.number,
                    fix.status.as_str(),
                    fix.why.as_str()
                ),
            ),
        }
        d.store.write_release(app, &r).map_err(records)?;
    }
    let Some(number) = live else {
        return Ok(None);
    };
    // A crash after the release went live but before the app did.
    if matches!(d.store.status(app), AppStatus::New | AppStatus::Failed) {
        d.store.set_status(app, AppStatus::Live).map_err(records)?;
    }
    d.store.release(app, number).map_err(records)
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
        match crate::deploy::scale::shrink(&d).await {
            Ok(removed) if !removed.is_empty() => info!("removed empty servers {removed:?}"),
            Ok(_) => {}
            Err(e) => warn!("cloud: {e}"),
        }
    }
    events.abort();
    servers.abort();
    certs.abort();
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

async fn sweep(
    d: &Daemon,
    backoff: &mut HashMap<String, (u32, Instant)>,
) -> Result<(), ReconcileError> {
    let found = d.containers(None).await?;
    for app in d.store.apps().map_err(ReconcileError::Apps)? {
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
            .filter(|c| c.app == app && !c.state.is_alive())
            .collect();
        let Some(live) = d
            .store
            .live_release(&app)
            .map_err(|source| ReconcileError::Records {
                app: app.clone(),
                source,
            })?
        else {
            continue;
        };
        // Only act when something is off; a deploy in progress owns the app.
        let running = found
            .iter()
            .filter(|c| c.app == app && c.state == crate::launch::ContainerState::Running)
            .count();
        let wanted = wanted_containers(d, &app, &live);
        if dead.is_empty() && running >= wanted {
            continue;
        }
        let Some(_lock) = d.locks.try_acquire(&d.store, &app) else {
            continue;
        };
        for c in &dead {
            info!(app = %c.app, release = c.release, server = %c.server, container = %c.name, state = %c.state, "replacing a stopped container");
            d.store.audit_system(
                &app,
                "heal",
                &format!("{} was {} ({}); replacing it", c.name, c.state, c.status),
            );
            let _ = launch::remove(&d.docker_on(&c.server), &c.id, 0).await;
        }
        let result = match stack::from_release(&live) {
            Ok(stack) => crate::deploy::apply(d, &app, &live, &stack, &Progress::silent()).await,
            Err(e) => Err(e.into()),
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

/// How many containers (nodes and services) the live release should run on
/// servers that answer: a service waiting for its server is not missing.
fn wanted_containers(d: &Daemon, app: &str, live: &crate::store::Release) -> usize {
    let Ok(stack) = stack::from_release(live) else {
        return 0;
    };
    let Ok(desired) = crate::deploy::desired(d, app, live, &stack) else {
        return 0;
    };
    let nodes: usize = desired.nodes.values().map(|n| n.scale as usize).sum();
    let waiting = crate::deploy::waiting_services(d, app, &stack).len();
    nodes + desired.services.len().saturating_sub(waiting)
}
