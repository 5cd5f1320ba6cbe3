//! Reconcile: make what runs on the engine equal to what the db says.
//!
//! At start ([`at_start`]): a release left `deploying` by a crash is marked
//! failed; containers of this instance that belong to no live release (the
//! leftovers of an interrupted deploy, or of a destroyed app) are removed;
//! a live app whose containers are gone is booted again from its live
//! release; every live app's route is rewritten from the containers found,
//! since their addresses may have changed while Quarry was down.

use std::collections::BTreeMap;

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

    let found = launch::list(&d.docker, &d.instance, None).await?;
    for c in &found {
        // Services outlive releases; node containers belong to the live one.
        let keep = live
            .get(&c.app)
            .is_some_and(|r| c.service.is_some() || r.number == c.release);
        if !keep {
            info!(container = %c.name, "removing orphan container");
            let _ = launch::remove(&d.docker, &c.id, 0).await;
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
