//! `ps`, `ps:scale`, `ps:restart`, `ps:stop`, `ps:start`, `plan`: what runs, and changing it.
//! May touch: what the handlers in `commands` may (the db, the engines through
//! launch/deploy).

use super::*;

pub(super) async fn ps(d: &Daemon, key: &KeyRecord, app: &str, json: bool, out: &Output) -> Res {
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
                c.state.to_string(),
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

pub(super) async fn ps_restart(
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
                Err(fail(format!(
                    "{app} has no node {node}; its nodes are {}",
                    known.join(", ")
                )))
            },
            || {},
        )
        .await;
    }
    let result = with_progress(out, |p| async move {
        let _lock = d
            .locks
            .acquire(&d.store, app, &p, std::time::Duration::from_secs(600))
            .await
            .map_err(io)?;
        let live = d
            .store
            .live_release(app)
            .map_err(io)?
            .ok_or_else(|| fail(format!("{app} has no live release to restart")))?;
        deploy::rerelease(
            d,
            key,
            app,
            &live,
            live.env.clone(),
            format!("restart of v{}", live.number),
            &p,
        )
        .await
        .map_err(fail)
    })
    .await;
    result.map(|_| ())
}

pub(super) async fn ps_scale(
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
                    return Err(fail(format!(
                        "{app} has no node {node}; its nodes are {}",
                        known.join(", ")
                    )));
                }
            }
            let mut formation = before;
            formation.extend(scale.clone());
            d.store.set_formation(app, &formation).map_err(io)
        },
        || {
            let _ = d.store.set_formation(app, &restore);
        },
    )
    .await
}

pub(super) async fn ps_stop_start(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    stop: bool,
    out: &Output,
) -> Res {
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
            d.store.set_status(app, status).map_err(io)
        },
        || {
            let _ = d.store.restore_status(app, before);
        },
    )
    .await
}

pub(super) async fn plan(d: &Daemon, key: &KeyRecord, app: &str, json: bool, out: &Output) -> Res {
    require_app(d, key, app)?;
    let live = d
        .store
        .live_release(app)
        .map_err(io)?
        .ok_or_else(|| fail(format!("{app} has no live release yet: push it first")))?;
    let stack = stack::from_release(&live).map_err(|e| fail(e.to_string()))?;
    let desired = deploy::desired(d, app, &live, &stack).map_err(fail)?;
    let (current, _) = deploy::current(d, app, &stack).await.map_err(fail)?;
    let instructions = crate::plan::plan(&desired, &current);
    if json {
        print_json(out, &instructions).await;
    } else {
        out.out(crate::plan::render(&instructions)).await;
    }
    Ok(())
}
