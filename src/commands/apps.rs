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
                d.default_domain(&app).map_err(fail)?,
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
    let destroyed = deploy::destroy(d, app).await.map_err(fail)?;
    if !destroyed.revoked.is_empty() {
        d.store.audit(
            None,
            key,
            "keys:revoke",
            &format!("{app} from {}", destroyed.revoked.join(", ")),
        );
    }
    out.out(format!(
        "destroyed {app}: {} container(s) removed\n",
        destroyed.containers
    ))
    .await;
    Ok(())
}
