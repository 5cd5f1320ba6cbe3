//! `domains`, `domains:add`, `domains:remove`: the names an app answers to.
//! May touch: what the handlers in `commands` may (the db, the engines through
//! launch/deploy).

use super::*;

#[derive(Serialize)]
pub(super) struct DomainView {
    domain: String,
    node: String,
    /// quarry.yml, domains:add, or the default `<app>.<root domain>`.
    source: &'static str,
}

pub(super) async fn domains(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    json: bool,
    out: &Output,
) -> Res {
    require_app(d, key, app)?;
    let mut views = Vec::new();
    let live = d.store.live_release(app).map_err(io)?;
    let stack = live
        .as_ref()
        .map(stack::from_release)
        .transpose()
        .map_err(|e| fail(e.to_string()))?;
    let main = stack
        .as_ref()
        .and_then(deploy::main_web_node)
        .unwrap_or_else(|| "web".into());
    views.push(DomainView {
        domain: d.default_domain(app).map_err(fail)?.to_string(),
        node: main.clone(),
        source: "default",
    });
    if let Some(stack) = &stack {
        for (name, node) in &stack.manifest.nodes {
            for domain in &node.domains {
                views.push(DomainView {
                    domain: domain.to_string(),
                    node: name.clone(),
                    source: "quarry.yml",
                });
            }
        }
    }
    for domain in d.store.domains(app).map_err(io)? {
        views.push(DomainView {
            domain,
            node: main.clone(),
            source: "domains:add",
        });
    }
    show(out, json, &views, None, &["DOMAIN", "NODE", "FROM"], |v| {
        vec![v.domain.clone(), v.node.clone(), v.source.to_string()]
    })
    .await;
    Ok(())
}

pub(super) async fn domains_change(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    list: Vec<Domain>,
    add: bool,
    out: &Output,
) -> Res {
    require_app(d, key, app)?;
    // Checked when parsed; the domains file and the claims hold text.
    let list: Vec<String> = list.into_iter().map(String::from).collect();
    // The check and the write of the domains file are one step under the
    // routing lock: the file is the claim other apps are checked against.
    let routing = d.routing.lock().await;
    let before = d.store.domains(app).map_err(io)?;
    let mut after = before.clone();
    if add {
        let own = d.default_domain(app).ok();
        for domain in &list {
            if own.as_ref().is_some_and(|o| o == domain) || after.contains(domain) {
                return Err(CommandError::Conflict(format!(
                    "{domain} is routed to {app} already"
                )));
            }
        }
        let wanted: BTreeSet<String> = list.iter().cloned().collect();
        let claims = crate::domains::claims(&d.store, &d.root_domain, app).map_err(fail)?;
        crate::domains::check(
            app,
            &d.root_domain,
            &wanted,
            &claims,
            key.role == Role::Admin,
        )
        .map_err(|e| CommandError::Conflict(e.to_string()))?;
        after.extend(list.iter().cloned());
    } else {
        for domain in &list {
            if !after.contains(domain) {
                return Err(CommandError::NotFound(format!(
                    "{domain} was not added to {app} with domains:add"
                )));
            }
            after.retain(|x| x != domain);
        }
    }
    if add {
        d.store.set_domains(app, &after).map_err(io)?;
    }
    drop(routing);
    change_and_apply(
        d,
        app,
        out,
        None,
        |_| d.store.set_domains(app, &after).map_err(io),
        || {
            let _ = d.store.set_domains(app, &before);
        },
    )
    .await
}
