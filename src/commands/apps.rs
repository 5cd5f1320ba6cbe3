//! `apps`, `apps:create`, `apps:destroy`: the list of apps, and an app's birth and end.
//! May touch: what the handlers in `commands` may (the db, the engines through
//! launch/deploy).

use super::*;

#[derive(Serialize)]
pub(super) struct AppRow {
    name: String,
    status: String,
    release: Option<u32>,
    url: String,
}

pub(super) async fn apps(d: &Daemon, key: &KeyRecord, json: bool, out: &Output) -> Res {
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

pub(super) async fn apps_create(d: &Daemon, key: &KeyRecord, app: &str, out: &Output) -> Res {
    if key.role != Role::Admin && !key.create {
        return Err(CommandError::Denied(format!(
            "permission denied: key {} may not create apps",
            key.name
        )));
    }
    if d.store.app_exists(app) {
        return Err(CommandError::Conflict(format!("app {app} exists already")));
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

pub(super) async fn apps_destroy(d: &Daemon, key: &KeyRecord, app: &str, out: &Output) -> Res {
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
        crate::buildpack::remove_deps_images(&docker, app, &Default::default()).await;
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
