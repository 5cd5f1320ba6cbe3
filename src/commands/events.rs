//! `events`, and which commands are written to the audit log.
//! May touch: what the handlers in `commands` may (the db, the engines through
//! launch/deploy).

use super::*;

/// For commands that change something: (app, action, detail) for the audit
/// log. Read commands are not audited. Config values are never logged.
pub(super) fn audited(cmd: &Cmd) -> Option<(Option<AppName>, &'static str, String)> {
    fn join<S: std::borrow::Borrow<str>>(v: &[S]) -> String {
        v.join(" ")
    }
    Some(match cmd {
        Cmd::AppsCreate { app } => (Some(app.clone()), "apps:create", String::new()),
        Cmd::AppsDestroy { app } => (None, "apps:destroy", app.to_string()),
        Cmd::PsScale { app, scale } => (
            Some(app.clone()),
            "ps:scale",
            scale
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Cmd::PsRestart { app, node } => (
            Some(app.clone()),
            "ps:restart",
            node.clone().unwrap_or_default(),
        ),
        Cmd::PsStop { app } => (Some(app.clone()), "ps:stop", String::new()),
        Cmd::PsStart { app } => (Some(app.clone()), "ps:start", String::new()),
        Cmd::ConfigSet { app, vars } => (
            Some(app.clone()),
            "config:set",
            join(&vars.keys().cloned().collect::<Vec<_>>()),
        ),
        Cmd::ConfigUnset { app, keys } => (Some(app.clone()), "config:unset", join(keys)),
        Cmd::DomainsAdd { app, domains } => (Some(app.clone()), "domains:add", join(domains)),
        Cmd::DomainsRemove { app, domains } => (Some(app.clone()), "domains:remove", join(domains)),
        Cmd::Rollback { app, release } => (
            Some(app.clone()),
            "rollback",
            release.map(|r| format!("v{r}")).unwrap_or_default(),
        ),
        Cmd::KeysAdd { name, role, .. } => (None, "keys:add", format!("{name} {role}")),
        Cmd::KeysRemove { name } => (None, "keys:remove", name.clone()),
        Cmd::ServersAdd(new) => (None, "servers:add", format!("{} {}", new.name, new.docker)),
        Cmd::ServersDrain { name } => (None, "servers:drain", name.clone()),
        Cmd::ProvisionersAdd { name } => (None, "provisioners:add", name.clone()),
        Cmd::ProvisionersRemove { name } => (None, "provisioners:remove", name.clone()),
        Cmd::ServersProvision { server, names } => (
            None,
            "servers:provision",
            format!("{server} {}", join(names)).trim().to_string(),
        ),
        Cmd::ServersRemove { name } => (None, "servers:remove", name.clone()),
        Cmd::NetworkLock { lock: true } => (None, "network:lock", String::new()),
        Cmd::NetworkLock { lock: false } => (None, "network:unlock", String::new()),
        Cmd::VolumesRemove { app, service } => {
            (Some(app.clone()), "volumes:remove", service.clone())
        }
        // Audited as they start, by their handlers: a session may last hours.
        Cmd::Run(_) | Cmd::Enter { .. } => return None,
        Cmd::CronRun { app, job } => (Some(app.clone()), "cron:run", job.clone()),
        Cmd::CertsEnable { app } => (Some(app.clone()), "certs:enable", String::new()),
        Cmd::CertsDisable { app } => (Some(app.clone()), "certs:disable", String::new()),
        Cmd::CertsAdd { app, .. } => (Some(app.clone()), "certs:add", String::new()),
        Cmd::CertsRemove { app } => (Some(app.clone()), "certs:remove", String::new()),
        Cmd::CertsRenew { app, force } => (
            Some(app.clone()),
            "certs:renew",
            if *force { "--force" } else { "" }.to_string(),
        ),
        Cmd::Help { .. }
        | Cmd::Cron { .. }
        | Cmd::CommandHelp { .. }
        | Cmd::Apps { .. }
        | Cmd::Ps { .. }
        | Cmd::Plan { .. }
        | Cmd::Config { .. }
        | Cmd::ConfigGet { .. }
        | Cmd::Domains { .. }
        | Cmd::Logs { .. }
        | Cmd::Releases { .. }
        | Cmd::ReleasesInfo { .. }
        | Cmd::Servers { .. }
        | Cmd::ServersInfo { .. }
        | Cmd::Grid { .. }
        | Cmd::Network { .. }
        | Cmd::Stacks { .. }
        | Cmd::Keys { .. }
        | Cmd::Events { .. }
        | Cmd::Volumes { .. }
        | Cmd::KeysHq
        | Cmd::Provisioners { .. }
        | Cmd::Hosts { .. }
        | Cmd::Certs { .. } => return None,
    })
}

pub(super) async fn events(
    d: &Daemon,
    key: &KeyRecord,
    app: Option<AppName>,
    json: bool,
    out: &Output,
) -> Res {
    let list = match &app {
        Some(a) => {
            require_app(d, key, a)?;
            d.store.events(Some(a)).map_err(io)?
        }
        None if key.role == Role::Admin => d.store.events(None).map_err(io)?,
        // A deployer sees the events of its own apps.
        None => {
            let mut all = Vec::new();
            for a in d
                .store
                .apps()
                .map_err(io)?
                .iter()
                .filter(|a| key.may_manage(a))
            {
                all.extend(d.store.events(Some(a)).map_err(io)?);
            }
            all.sort_by(|a, b| a.time.cmp(&b.time));
            all
        }
    };
    let skip = list.len().saturating_sub(200);
    let list = &list[skip..];
    show(
        out,
        json,
        list,
        Some("no events yet".into()),
        &["TIME", "APP", "KEY", "ACTION", "DETAIL"],
        |e| {
            vec![
                e.time.clone(),
                e.app.clone().unwrap_or_else(|| "-".into()),
                e.key.clone(),
                e.action.clone(),
                e.detail.clone(),
            ]
        },
    )
    .await;
    Ok(())
}
