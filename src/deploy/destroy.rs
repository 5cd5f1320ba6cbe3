//! Destroying an app: its routes, certificate, containers, images, volumes
//! and networks on every server that answers, its grants, then its data
//! directory. Under the app's lock, so no deploy runs meanwhile.
//! May touch: the router, tls, the engines of the fleet, the store.

use crate::daemon::Daemon;
use crate::launch;
use crate::progress::Progress;

use super::DeployError;

/// What [`destroy`] removed.
#[derive(Debug, Default)]
pub struct Destroyed {
    /// Containers removed, on every server.
    pub containers: usize,
    /// Keys that had a grant of the app.
    pub revoked: Vec<String>,
}

/// Remove `app` and everything Quarry made for it.
pub async fn destroy(d: &Daemon, app: &str) -> Result<Destroyed, DeployError> {
    let progress = Progress::silent();
    let _lock = d
        .locks
        .acquire(&d.store, app, &progress, std::time::Duration::from_secs(60))
        .await?;
    d.router
        .remove_app(app)
        .await
        .map_err(|source| DeployError::RoutingFailed {
            app: app.to_string(),
            source,
        })?;
    // A later app of the same name must not inherit its certificate and key.
    crate::tls::disable(d, app).await?;
    let containers = d.containers(Some(app)).await?;
    for c in &containers {
        launch::remove(&d.docker_on(&c.server), &c.id, 5).await?;
    }
    // Its images, volumes and networks, on every server that answers.
    let releases = d.store.releases(app)?;
    for (server, docker) in d.fleet.answering() {
        d.networks
            .remove(&docker, &d.instance, &server.name, app)
            .await?;
        for r in &releases {
            let _ = docker
                .remove_image(
                    &r.image,
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                )
                .await;
        }
        crate::buildpack::remove_deps_images(&docker, app, &Default::default()).await;
        for volume in launch::volumes(&docker, &d.instance, Some(app)).await? {
            launch::remove_volume(&docker, &volume.name).await?;
        }
    }
    // Grants go with the app: whoever creates the name again starts with
    // no deployers of the old one.
    let revoked = d.store.revoke_app(app)?;
    // Move aside first so a half-removed app never looks like an app.
    let dir = d.store.app_dir(app);
    let trash = d
        .store
        .root()
        .join("stacks")
        .join(format!(".destroyed-{app}-{}", std::process::id()));
    std::fs::rename(&dir, &trash).map_err(crate::store::at(&dir))?;
    std::fs::remove_dir_all(&trash).map_err(crate::store::at(&trash))?;
    Ok(Destroyed {
        containers: containers.len(),
        revoked,
    })
}
