//! Draining a server: mark it draining (the grid places nothing new there),
//! then apply each app's live release again, which boots its containers
//! elsewhere, switches the routes and stops the old ones, app by app.
//! May touch: the fleet registry, the engines through `apply_restarting`.

use std::collections::BTreeSet;

use crate::daemon::Daemon;
use crate::fleet::ServerState;
use crate::progress::Progress;
use crate::stack;

use super::{DeployError, LOCK_WAIT};

/// Move every container of this instance off `server`. On a failure the
/// server stays draining; running it again carries on.
pub async fn drain(d: &Daemon, server: &str, p: &Progress) -> Result<(), DeployError> {
    d.fleet.set_state(&d.store, server, ServerState::Draining)?;
    let apps: BTreeSet<String> = d
        .containers(None)
        .await?
        .into_iter()
        .filter(|c| c.server == server)
        .map(|c| c.app)
        .collect();
    for app in apps {
        p.step(format!("Moving {app} off {server}"));
        reapply(d, &app, p)
            .await
            .map_err(|source| DeployError::Drain {
                server: server.to_string(),
                source: Box::new(source),
            })?;
    }
    Ok(())
}

/// Apply `app`'s live release again, under its lock.
pub async fn reapply(d: &Daemon, app: &str, p: &Progress) -> Result<(), DeployError> {
    let _lock = d.locks.acquire(&d.store, app, p, LOCK_WAIT).await?;
    let live = d
        .store
        .live_release(app)?
        .ok_or_else(|| DeployError::NoLive {
            app: app.to_string(),
        })?;
    let stack = stack::from_release(&live)?;
    super::apply_restarting(d, app, &live, &stack, None, p).await?;
    p.step("Done");
    Ok(())
}
