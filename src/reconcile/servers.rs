//! Servers' health for the reconciler: each server is pinged; one that
//! misses pings becomes unknown (its nodes and stateless services are
//! re-placed by the sweep, its services with volumes wait, degraded, in
//! `events`), one that answers again has its stale containers removed.
//! May touch: the fleet's engines and states, the apps' audit logs.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{info, warn};

use crate::daemon::Daemon;
use crate::deploy::homes as deploy_homes;
use crate::launch;
use crate::stack;

/// How often every server is pinged, and how many misses make it unknown.
const PING_EVERY: Duration = Duration::from_secs(2);
const MISSES_TO_UNKNOWN: u32 = 2;

/// Keep each server's state current: one that misses pings becomes unknown
/// (its containers then count as gone and are re-placed by the sweep); one
/// that answers again has its stale containers removed — they were replaced
/// meanwhile — and takes containers again.
pub(super) async fn watch_servers(d: Arc<Daemon>, wake: Arc<Notify>) {
    let mut misses: HashMap<String, u32> = HashMap::new();
    // The hosts block may have been edited or lost while Quarry was down.
    let fleet = d.clone();
    tokio::spawn(async move { crate::hosts::sync_logged(&fleet.fleet, "at start").await });
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
                    // Services that waited for it run there still; the rest
                    // were replaced elsewhere meanwhile.
                    let waited: BTreeSet<(String, String)> = d
                        .store
                        .apps()
                        .unwrap_or_default()
                        .into_iter()
                        .flat_map(|app| {
                            waiting_for(&d, &app, &server.name)
                                .into_iter()
                                .map(move |s| (app.clone(), s))
                        })
                        .collect();
                    let stale: Vec<launch::Found> = crate::launch::list(&docker, &d.instance, None)
                        .await
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|c| {
                            !c.service
                                .as_ref()
                                .is_some_and(|s| waited.contains(&(c.app.clone(), s.clone())))
                        })
                        .collect();
                    for c in &stale {
                        let _ = crate::launch::remove(&docker, &c.id, 0).await;
                    }
                    for (app, service) in &waited {
                        d.store.audit_system(
                            app,
                            "degraded",
                            &format!(
                                "service {service}: server {} answers again; the service is back with its volumes",
                                server.name
                            ),
                        );
                    }
                    info!(server = %server.name, stale = stale.len(), "server answers again");
                    if let Err(e) = d.fleet.set_state(
                        &d.store,
                        &server.name,
                        crate::fleet::ServerState::Running,
                    ) {
                        warn!("{e}");
                    }
                    // It may have missed joins and leaves, or been rebuilt.
                    let fleet = d.clone();
                    tokio::spawn(async move {
                        crate::hosts::sync_logged(&fleet.fleet, "a server answers again").await
                    });
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
                    warn!(server = %server.name, "server does not answer; re-placing its stateless containers");
                    if let Err(e) = d.fleet.set_state(
                        &d.store,
                        &server.name,
                        crate::fleet::ServerState::Unknown,
                    ) {
                        warn!("{e}");
                    }
                    report_degraded(&d, &server.name);
                    wake.notify_one();
                }
            }
        }
    }
}

/// `app`'s services with volumes that wait for `server` (per its live
/// release's quarry.yml).
fn waiting_for(d: &Daemon, app: &str, server: &str) -> Vec<String> {
    let Some(stack) = d
        .store
        .live_release(app)
        .ok()
        .flatten()
        .and_then(|r| stack::from_release(&r).ok())
    else {
        return Vec::new();
    };
    crate::deploy::waiting_services(d, app, &stack)
        .into_iter()
        .filter(|(_, at)| at == server)
        .map(|(service, _)| service)
        .collect()
}

/// A server stopped answering: say so in the events of every app with a
/// service that now waits for it.
pub(super) fn report_degraded(d: &Daemon, server: &str) {
    for app in d.store.apps().unwrap_or_default() {
        for service in waiting_for(d, &app, server) {
            warn!(
                app,
                service, server, "service degraded: waiting for its server"
            );
            d.store.audit_system(
                &app,
                "degraded",
                &deploy_homes::degraded_line(&service, server),
            );
        }
    }
}
