//! `volumes`, `volumes:remove`: the app's services' data.
//! May touch: what the handlers in `commands` may (the db, the engines through
//! launch/deploy).

use super::*;

#[derive(Serialize)]
pub(super) struct VolumeView {
    pub(super) name: String,
    pub(super) service: String,
    /// Whether the live release still defines the service.
    pub(super) in_use: bool,
    /// The server it lives on.
    server: String,
}

pub(super) async fn volume_views(d: &Daemon, app: &str) -> Result<Vec<VolumeView>, Fail> {
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

pub(super) async fn volumes(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    json: bool,
    out: &Output,
) -> Res {
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

pub(super) async fn volumes_remove(
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
        return Err(CommandError::NotFound(format!(
            "{app} has no volumes of a service {service}"
        )));
    }
    if views.iter().any(|v| v.in_use) {
        return Err(CommandError::Conflict(format!(
            "service {service} is still in {app}'s quarry.yml; remove it there and push before deleting its data"
        )));
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
